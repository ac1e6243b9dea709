// SPDX-License-Identifier: Apache-2.0
#include "agent/state/outbox.hpp"

namespace kflex::agent {

Result<void> Outbox::enqueue(const std::vector<std::pair<std::string, std::string>>& reports) {
  if (reports.empty()) {
    return {};
  }
  auto txn = store::Transaction::begin(db_);
  if (!txn) {
    return txn.error();
  }
  auto del = store::Statement::prepare(db_, "DELETE FROM outbox WHERE name = ?");
  auto ins = store::Statement::prepare(db_, "INSERT INTO outbox (name, body) VALUES (?, ?)");
  auto mark = store::Statement::prepare(db_, "UPDATE desired SET reported = ? WHERE name = ?");
  if (!del || !ins || !mark) {
    return fail(db_.lastError());
  }
  for (const auto& [name, body] : reports) {
    if (auto r = del->bind(1, name).run(); !r) {
      return r;
    }
    if (auto r = ins->bind(1, name).bind(2, body).run(); !r) {
      return r;
    }
    if (auto r = mark->bind(1, body).bind(2, name).run(); !r) {
      return r;
    }
  }
  if (auto r = txn->commit(); !r) {
    return r;
  }
  if (on_queued_) {
    on_queued_();
  }
  return {};
}

std::vector<Outbox::Report> Outbox::pending(size_t limit) {
  std::vector<Report> out;
  auto st = store::Statement::prepare(db_, "SELECT seq, name, body FROM outbox ORDER BY seq LIMIT ?");
  if (!st) {
    return out;
  }
  st->bind(1, int64_t(limit));
  (void)st->forEachRow([&](store::Statement& r) { out.push_back({r.columnInt(0), r.columnText(1), r.columnText(2)}); });
  return out;
}

Result<void> Outbox::ack(int64_t seq) {
  auto st = store::Statement::prepare(db_, "DELETE FROM outbox WHERE seq = ?");
  if (!st) {
    return st.error();
  }
  return st->bind(1, seq).run();
}

}  // namespace kflex::agent
