// SPDX-License-Identifier: Apache-2.0
#include "agent/agent_state.hpp"

#include <chrono>

#include "shared/common/log.hpp"

namespace kflex::agent {
namespace {

namespace fs = std::filesystem;
constexpr int kSchemaVersion = 1;

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

}  // namespace kflex::agent
