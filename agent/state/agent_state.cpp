// SPDX-License-Identifier: Apache-2.0
#include "agent/state/agent_state.hpp"

#include <algorithm>
#include <chrono>

#include <nlohmann/json.hpp>

#include "shared/common/log.hpp"

namespace kflex::agent {
namespace {

namespace fs = std::filesystem;
constexpr int kSchemaVersion = 2;

Result<void> migrate(store::Database& db) {
  auto v = db.userVersion();
  if (!v) {
    return v.error();
  }
  if (v.value() > kSchemaVersion) {
    return fail(db.path().string() + ": schema version " + std::to_string(v.value()) +
                " is newer than this kflex-agent understands; run a newer kflex-agent");
  }
  if (v.value() < 1) {
    auto r = db.exec(R"(
      BEGIN;
      CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
      PRAGMA user_version = 1;
      COMMIT;)");
    if (!r) {
      (void)db.exec("ROLLBACK");
      return r;
    }
  }
  if (v.value() < 2) {
    auto r = db.exec(R"(
      BEGIN;
      CREATE TABLE desired (name TEXT PRIMARY KEY, revision INTEGER NOT NULL, body TEXT NOT NULL,
                            reported TEXT NOT NULL DEFAULT '') WITHOUT ROWID;
      CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, body TEXT NOT NULL);
      PRAGMA user_version = 2;
      COMMIT;)");
    if (!r) {
      (void)db.exec("ROLLBACK");
      return r;
    }
  }
  return {};
}

// Opens and checks the file; an error means SQLite cannot use it.
Result<std::unique_ptr<store::Database>> openChecked(const fs::path& path, bool read_only) {
  auto db = store::Database::open(path, read_only);
  if (!db) {
    return db.error();
  }
  auto check = store::Statement::prepare(*db.value(), "PRAGMA quick_check");
  if (!check) {
    return check.error();
  }
  auto row = check->step();
  if (!row) {
    return row.error();
  }
  std::string verdict = row.value() ? check->columnText(0) : "no answer";
  if (verdict != "ok") {
    return fail(path.string() + ": integrity check failed: " + verdict);
  }
  return db;
}

}  // namespace

Result<std::unique_ptr<AgentState>> AgentState::open(const fs::path& data_dir, bool read_only) {
  fs::path path = data_dir / "agent.db";
  std::string moved;
  auto db = openChecked(path, read_only);
  if (!db && !read_only) {
    std::error_code ec;
    if (fs::exists(path, ec)) {
      // Keep the evidence, start fresh: desired state comes back with the hub's full resync.
      auto stamp = std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count());
      moved = path.string() + ".corrupt-" + stamp;
      fs::rename(path, moved, ec);
      if (ec) {
        return fail(path.string() + " is unusable (" + db.error().message + ") and cannot be moved aside: " + ec.message());
      }
      for (const char* suffix : {"-wal", "-shm"}) {
        fs::rename(path.string() + suffix, moved + suffix, ec);
      }
      log::error("agent.db was unusable and has been moved aside; starting with a fresh one (the hub resyncs it)",
                 {{"error", db.error().message}, {"moved_to", moved}});
      db = openChecked(path, false);
    }
  }
  if (!db) {
    return db.error();
  }
  if (!read_only) {
    if (auto r = migrate(*db.value()); !r) {
      return r.error();
    }
  }
  std::unique_ptr<AgentState> s(new AgentState(std::move(db.value())));
  s->moved_aside_ = moved;
  return s;
}

std::optional<std::string> AgentState::get(const std::string& key) {
  auto st = store::Statement::prepare(*db_, "SELECT value FROM meta WHERE key = ?");
  if (!st) {
    return std::nullopt;
  }
  st->bind(1, key);
  auto row = st->step();
  if (!row || !row.value()) {
    return std::nullopt;
  }
  return st->columnText(0);
}

Result<void> AgentState::set(const std::string& key, const std::string& value) { return set({{key, value}}); }

Result<void> AgentState::set(const std::vector<std::pair<std::string, std::string>>& values) {
  auto txn = store::Transaction::begin(*db_);
  if (!txn) {
    return txn.error();
  }
  auto st = store::Statement::prepare(*db_, "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)");
  if (!st) {
    return st.error();
  }
  for (const auto& [k, v] : values) {
    if (auto r = st->bind(1, k).bind(2, v).run(); !r) {
      return r;
    }
  }
  return txn->commit();
}

Result<void> AgentState::applySnapshot(int64_t revision,
                                       const std::vector<std::pair<std::string, std::string>>& objects) {
  auto txn = store::Transaction::begin(*db_);
  if (!txn) {
    return txn.error();
  }
  // Keep what was reported for objects that stay, so an unchanged snapshot reports nothing new.
  std::vector<std::string> names;
  for (const auto& [n, b] : objects) {
    names.push_back(n);
  }
  auto all = store::Statement::prepare(*db_, "SELECT name FROM desired");
  if (!all) {
    return all.error();
  }
  std::vector<std::string> gone;
  while (true) {
    auto row = all->step();
    if (!row) {
      return row.error();
    }
    if (!row.value()) {
      break;
    }
    std::string n = all->columnText(0);
    if (std::find(names.begin(), names.end(), n) == names.end()) {
      gone.push_back(n);
    }
  }
  if (auto r = applyChanges(revision, objects, gone); !r) {
    return r;
  }
  return txn->commit();
}

Result<void> AgentState::applyDelta(int64_t revision, const std::vector<std::pair<std::string, std::string>>& upserts,
                                    const std::vector<std::string>& deletes) {
  auto txn = store::Transaction::begin(*db_);
  if (!txn) {
    return txn.error();
  }
  if (auto r = applyChanges(revision, upserts, deletes); !r) {
    return r;
  }
  return txn->commit();
}

Result<void> AgentState::applyChanges(int64_t revision, const std::vector<std::pair<std::string, std::string>>& upserts,
                                      const std::vector<std::string>& deletes) {
  auto put = store::Statement::prepare(
      *db_, "INSERT INTO desired (name, revision, body) VALUES (?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET revision = excluded.revision, body = excluded.body");
  auto del = store::Statement::prepare(*db_, "DELETE FROM desired WHERE name = ?");
  auto meta = store::Statement::prepare(*db_, "INSERT OR REPLACE INTO meta (key, value) VALUES ('acknowledged_revision', ?)");
  if (!put || !del || !meta) {
    return fail(db_->lastError());
  }
  for (const auto& [name, body] : upserts) {
    if (auto r = put->bind(1, name).bind(2, revision).bind(3, body).run(); !r) {
      return r;
    }
  }
  for (const auto& name : deletes) {
    if (auto r = del->bind(1, name).run(); !r) {
      return r;
    }
  }
  return meta->bind(1, std::to_string(revision)).run();
}

std::vector<AgentState::Desired> AgentState::desired() {
  std::vector<Desired> out;
  auto st = store::Statement::prepare(*db_, "SELECT name, revision, body, reported FROM desired ORDER BY name");
  if (!st) {
    return out;
  }
  while (true) {
    auto row = st->step();
    if (!row || !row.value()) {
      break;
    }
    out.push_back({st->columnText(0), st->columnInt(1), st->columnText(2), st->columnText(3)});
  }
  return out;
}

int64_t AgentState::acknowledgedRevision() {
  auto v = get("acknowledged_revision");
  try {
    return v ? std::stoll(*v) : 0;
  } catch (const std::exception&) {
    return 0;
  }
}

Result<void> AgentState::enqueueStatus(const std::string& name, const std::string& body) {
  auto txn = store::Transaction::begin(*db_);
  if (!txn) {
    return txn.error();
  }
  auto del = store::Statement::prepare(*db_, "DELETE FROM outbox WHERE name = ?");
  auto ins = store::Statement::prepare(*db_, "INSERT INTO outbox (name, body) VALUES (?, ?)");
  auto mark = store::Statement::prepare(*db_, "UPDATE desired SET reported = ? WHERE name = ?");
  if (!del || !ins || !mark) {
    return fail(db_->lastError());
  }
  if (auto r = del->bind(1, name).run(); !r) {
    return r;
  }
  if (auto r = ins->bind(1, name).bind(2, body).run(); !r) {
    return r;
  }
  if (auto r = mark->bind(1, body).bind(2, name).run(); !r) {
    return r;
  }
  return txn->commit();
}

Result<void> AgentState::clearReported() { return db_->exec("UPDATE desired SET reported = ''"); }

std::vector<AgentState::Report> AgentState::outbox(size_t limit) {
  std::vector<Report> out;
  auto st = store::Statement::prepare(*db_, "SELECT seq, name, body FROM outbox ORDER BY seq LIMIT ?");
  if (!st) {
    return out;
  }
  st->bind(1, int64_t(limit));
  while (true) {
    auto row = st->step();
    if (!row || !row.value()) {
      break;
    }
    out.push_back({st->columnInt(0), st->columnText(1), st->columnText(2)});
  }
  return out;
}

Result<void> AgentState::ackStatus(int64_t seq) {
  auto st = store::Statement::prepare(*db_, "DELETE FROM outbox WHERE seq = ?");
  if (!st) {
    return st.error();
  }
  return st->bind(1, seq).run();
}

}  // namespace kflex::agent
