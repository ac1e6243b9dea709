// SPDX-License-Identifier: Apache-2.0
#include "agent/state/agent_state.hpp"

#include <algorithm>
#include <chrono>

#include <nlohmann/json.hpp>

#include "shared/common/log.hpp"

namespace kflex::agent {
namespace {

namespace fs = std::filesystem;
constexpr int kSchemaVersion = 3;

// One schema step: a transaction that ends by setting user_version; rolled back when it fails.
Result<void> migrationStep(store::Database& db, std::string_view sql) {
  auto r = db.exec(sql);
  if (!r) {
    (void)db.exec("ROLLBACK");
  }
  return r;
}

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
    if (auto r = migrationStep(db, R"(
      BEGIN;
      CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
      PRAGMA user_version = 1;
      COMMIT;)"); !r) {
      return r;
    }
  }
  if (v.value() < 2) {
    if (auto r = migrationStep(db, R"(
      BEGIN;
      CREATE TABLE desired (name TEXT PRIMARY KEY, revision INTEGER NOT NULL, body TEXT NOT NULL,
                            reported TEXT NOT NULL DEFAULT '') WITHOUT ROWID;
      CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, body TEXT NOT NULL);
      PRAGMA user_version = 2;
      COMMIT;)"); !r) {
      return r;
    }
  }
  if (v.value() < 3) {
    // What runtimes kept per control plane moves from string keys of the meta table
    // (cp/NAME/port, cp/NAME/kcm-port, cp/NAME/scheduler-port, cp/NAME/node-agent, hooks/NAME) to
    // typed columns (ControlPlaneState). "" meant forgotten: 0 for a port, NULL for the node agent.
    if (auto r = migrationStep(db, R"(
      BEGIN;
      CREATE TABLE control_plane_local (name TEXT PRIMARY KEY, port INTEGER NOT NULL DEFAULT 0,
                                        kcm_port INTEGER NOT NULL DEFAULT 0,
                                        scheduler_port INTEGER NOT NULL DEFAULT 0, node_agent INTEGER,
                                        hook_records TEXT NOT NULL DEFAULT '') WITHOUT ROWID;
      INSERT INTO control_plane_local (name, port)
        SELECT substr(key, 4, length(key) - 8), CAST(value AS INTEGER) FROM meta
        WHERE key LIKE 'cp/%/port' AND length(key) > 8
        ON CONFLICT(name) DO UPDATE SET port = excluded.port;
      INSERT INTO control_plane_local (name, kcm_port)
        SELECT substr(key, 4, length(key) - 12), CAST(value AS INTEGER) FROM meta
        WHERE key LIKE 'cp/%/kcm-port' AND length(key) > 12
        ON CONFLICT(name) DO UPDATE SET kcm_port = excluded.kcm_port;
      INSERT INTO control_plane_local (name, scheduler_port)
        SELECT substr(key, 4, length(key) - 18), CAST(value AS INTEGER) FROM meta
        WHERE key LIKE 'cp/%/scheduler-port' AND length(key) > 18
        ON CONFLICT(name) DO UPDATE SET scheduler_port = excluded.scheduler_port;
      INSERT INTO control_plane_local (name, node_agent)
        SELECT substr(key, 4, length(key) - 14), CASE value WHEN '1' THEN 1 WHEN '0' THEN 0 END FROM meta
        WHERE key LIKE 'cp/%/node-agent' AND length(key) > 14
        ON CONFLICT(name) DO UPDATE SET node_agent = excluded.node_agent;
      INSERT INTO control_plane_local (name, hook_records)
        SELECT substr(key, 7), value FROM meta WHERE key LIKE 'hooks/%' AND length(key) > 6
        ON CONFLICT(name) DO UPDATE SET hook_records = excluded.hook_records;
      DELETE FROM meta WHERE key LIKE 'cp/%' OR key LIKE 'hooks/%';
      PRAGMA user_version = 3;
      COMMIT;)"); !r) {
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
  // A full resync: report every control plane again (the hub may have lost what it was told).
  if (auto r = db_->exec("UPDATE desired SET reported = ''"); !r) {
    return r;
  }
  std::vector<std::string> names;
  for (const auto& [n, b] : objects) {
    names.push_back(n);
  }
  auto all = store::Statement::prepare(*db_, "SELECT name FROM desired");
  if (!all) {
    return all.error();
  }
  std::vector<std::string> gone;
  auto listed = all->forEachRow([&](store::Statement& r) {
    std::string n = r.columnText(0);
    if (std::find(names.begin(), names.end(), n) == names.end()) {
      gone.push_back(std::move(n));
    }
  });
  if (!listed) {
    return listed;
  }
  if (auto r = applyChanges(revision, objects, gone); !r) {
    return r;
  }
  return commitChange(*txn);
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
  return commitChange(*txn);
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
  (void)st->forEachRow([&](store::Statement& r) {
    out.push_back({r.columnText(0), r.columnInt(1), r.columnText(2), r.columnText(3)});
  });
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

Result<void> AgentState::clearReported() {
  if (auto r = db_->exec("UPDATE desired SET reported = ''"); !r) {
    return r;
  }
  changed(Change::Reported);
  return {};
}

Result<void> AgentState::commitChange(store::Transaction& txn) {
  if (auto r = txn.commit(); !r) {
    return r;
  }
  changed(Change::Desired);
  return {};
}

void AgentState::changed(Change change) const {
  if (on_change_) {
    on_change_(change);
  }
}

}  // namespace kflex::agent
