// SPDX-License-Identifier: Apache-2.0
#include "hub/store/postgres_backend.hpp"

#include <unordered_map>

namespace kflex::hub {
namespace {

using Params = std::vector<std::optional<std::string>>;

std::string num(int64_t v) { return std::to_string(v); }

int64_t toInt(const std::optional<std::string>& v) { return v ? std::stoll(*v) : 0; }

// Schema version 1 of the kflex schema (meta row 'schema').
constexpr const char* kSchema = R"(
  CREATE SCHEMA IF NOT EXISTS kflex;
  CREATE TABLE IF NOT EXISTS kflex.meta (key text PRIMARY KEY, value bigint NOT NULL);
  INSERT INTO kflex.meta VALUES ('revision', 0), ('compacted', 0), ('schema', 1) ON CONFLICT (key) DO NOTHING;
  CREATE TABLE IF NOT EXISTS kflex.objects (resource text NOT NULL, name text NOT NULL, revision bigint NOT NULL,
                                            PRIMARY KEY (resource, name));
  CREATE TABLE IF NOT EXISTS kflex.events (revision bigint PRIMARY KEY, type smallint NOT NULL, resource text NOT NULL,
                                           name text NOT NULL, body text NOT NULL);
)";
constexpr int64_t kSchemaVersion = 1;

}  // namespace

Result<std::unique_ptr<PostgresBackend>> PostgresBackend::open(const store::PostgresTarget& target) {
  // Acknowledged means committed and flushed, whatever the server's default says (set on every
  // connection, reconnections included).
  auto conn = store::Connection::open(target, std::chrono::seconds(10), "-c synchronous_commit=on");
  if (!conn) {
    return conn.error();
  }
  return std::unique_ptr<PostgresBackend>(new PostgresBackend(store::redacted(target.dsn), std::move(conn.value())));
}

Error PostgresBackend::abort(const Error& e) {
  rollback();
  return e;
}

Result<void> PostgresBackend::migrate() {
  // (Several statements in one simple query run as one transaction.)
  if (auto r = conn_->exec(std::string("BEGIN;") + kSchema + "COMMIT;"); !r) {
    (void)conn_->exec("ROLLBACK");
    return r.error();
  }
  auto v = conn_->query("SELECT value FROM kflex.meta WHERE key = 'schema'");
  if (!v) {
    return v.error();
  }
  if (!v->empty() && toInt(v->front()[0]) > kSchemaVersion) {
    return fail(where_ + ": schema version " + num(toInt(v->front()[0])) +
                " is newer than this kflex-hub understands (" + num(kSchemaVersion) + "); run a newer kflex-hub");
  }
  return {};
}

Result<LoadedState> PostgresBackend::load() {
  if (auto r = migrate(); !r) {
    return r.error();
  }
  LoadedState out;
  // One snapshot for all the reads.
  if (auto r = conn_->exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); !r) {
    return r.error();
  }
  struct End {
    store::Connection& c;
    ~End() { (void)c.exec("COMMIT"); }
  } end{*conn_};
  auto meta = conn_->query("SELECT key, value FROM kflex.meta");
  if (!meta) {
    return meta.error();
  }
  for (const auto& row : *meta) {
    if (row[0] == "revision") {
      out.revision = toInt(row[1]);
    } else if (row[0] == "compacted") {
      out.compacted = toInt(row[1]);
    }
  }
  auto objs = conn_->query(
      "SELECT o.resource, o.name, o.revision, e.body FROM kflex.objects o "
      "LEFT JOIN kflex.events e ON e.revision = o.revision");
  if (!objs) {
    return objs.error();
  }
  std::unordered_map<std::string, ObjectPtr> by_key;
  for (auto& row : *objs) {
    if (!row[3]) {
      return fail(where_ + ": the stored object " + row[0].value_or("") + " " + row[1].value_or("") +
                  " has no body (revision " + row[2].value_or("") + "); the database is damaged: restore a backup");
    }
    auto rec = storedRecord(*row[0], *row[1], toInt(row[2]), std::move(*row[3]));
    by_key[rec->resource + "\n" + rec->name] = rec;
    out.objects.push_back(std::move(rec));
  }
  auto evs = conn_->query(
      "SELECT revision, type, resource, name, body FROM kflex.events WHERE revision > $1 ORDER BY revision",
      Params{num(out.compacted)});
  if (!evs) {
    return evs.error();
  }
  for (auto& row : *evs) {
    auto ev = std::make_shared<Event>();
    ev->revision = toInt(row[0]);
    ev->type = static_cast<EventType>(toInt(row[1]));
    // Share the bytes with the live object when this event wrote its current version.
    auto live = by_key.find(*row[2] + "\n" + *row[3]);
    if (live != by_key.end() && live->second->revision == ev->revision) {
      ev->object = live->second;
    } else {
      ev->object = storedRecord(*row[2], *row[3], ev->revision, std::move(*row[4]));
    }
    out.events.push_back(std::move(ev));
  }
  revision_ = out.revision;
  return out;
}

Result<void> PostgresBackend::begin() {
  auto started = conn_->ok() ? conn_->exec("BEGIN") : Result<void>(fail(Errc::Unavailable, "not connected"));
  if (!started && started.error().code == Errc::Unavailable) {
    // The server restarted or the network broke since the last group (libpq notices only on
    // use): connect again, once.
    if (auto r = conn_->reconnect(); !r) {
      return r;
    }
    started = conn_->exec("BEGIN");
  }
  if (!started) {
    return started;
  }
  in_transaction_ = true;
  group_last_ = revision_;
  // Groups of every writer commit one at a time, in revision order (docs/dev/replicas.md).
  auto rev = conn_->query("SELECT value FROM kflex.meta WHERE key = 'revision' FOR UPDATE");
  if (!rev) {
    return abort(rev.error());
  }
  int64_t stored = rev->empty() ? 0 : toInt(rev->front()[0]);
  if (stored != revision_) {
    return abort(fail(Errc::Conflict, where_ + ": another kflex-hub has written to this database (revision " +
                                          num(stored) + ", this hub's " + num(revision_) +
                                          "); one hub per database until replicas are supported: stop the other one "
                                          "and restart this one"));
  }
  return {};
}

Result<void> PostgresBackend::put(const std::string& resource, const std::string& name, int64_t revision) {
  auto r = conn_->exec(
      "INSERT INTO kflex.objects (resource, name, revision) VALUES ($1, $2, $3) "
      "ON CONFLICT (resource, name) DO UPDATE SET revision = excluded.revision",
      Params{resource, name, num(revision)});
  return r ? r : Result<void>(abort(r.error()));
}

Result<void> PostgresBackend::remove(const std::string& resource, const std::string& name) {
  auto r = conn_->exec("DELETE FROM kflex.objects WHERE resource = $1 AND name = $2", Params{resource, name});
  return r ? r : Result<void>(abort(r.error()));
}

Result<void> PostgresBackend::appendEvent(const Event& e) {
  auto r = conn_->exec("INSERT INTO kflex.events VALUES ($1, $2, $3, $4, $5)",
                       Params{num(e.revision), num(int64_t(e.type)), e.object->resource, e.object->name,
                              e.object->bytes});
  if (!r) {
    return abort(r.error());
  }
  group_last_ = std::max(group_last_, e.revision);
  return {};
}

Result<void> PostgresBackend::dropEvent(int64_t revision) {
  auto r = conn_->exec("DELETE FROM kflex.events WHERE revision = $1", Params{num(revision)});
  return r ? r : Result<void>(abort(r.error()));
}

Result<void> PostgresBackend::compact(int64_t from, int64_t to) {
  auto r = conn_->exec(
      "DELETE FROM kflex.events WHERE revision > $1 AND revision <= $2 AND revision IS DISTINCT FROM "
      "(SELECT o.revision FROM kflex.objects o WHERE o.resource = events.resource AND o.name = events.name)",
      Params{num(from), num(to)});
  return r ? r : Result<void>(abort(r.error()));
}

Result<void> PostgresBackend::setMeta(int64_t revision, int64_t compacted) {
  auto r = conn_->exec("UPDATE kflex.meta SET value = $1 WHERE key = 'compacted'", Params{num(compacted)});
  if (!r) {
    return abort(r.error());
  }
  group_last_ = std::max(group_last_, revision);
  return {};
}

Result<void> PostgresBackend::commit() {
  // The revision row moves with every group: it is what the next group of any writer locks and reads.
  if (auto r = conn_->exec("UPDATE kflex.meta SET value = $1 WHERE key = 'revision'", Params{num(group_last_)}); !r) {
    return abort(r.error());
  }
  auto r = conn_->exec("COMMIT");
  in_transaction_ = false;
  if (!r && r.error().code == Errc::Unavailable) {
    // The connection went during COMMIT: whether the server committed is unknown until asked. The
    // revision row moved in the same transaction, so it tells.
    auto committed = committedAfterLoss();
    if (!committed) {
      return committed.error();
    }
    if (!committed.value()) {
      return r;
    }
  } else if (!r) {
    return r;
  }
  revision_ = group_last_;
  return {};
}

Result<bool> PostgresBackend::committedAfterLoss() {
  if (auto r = conn_->reconnect(); !r) {
    return fail(Errc::Internal, where_ + ": the connection was lost while committing and cannot be made again, so "
                                         "whether the last writes were stored is unknown: " + r.error().message);
  }
  auto rev = conn_->query("SELECT value FROM kflex.meta WHERE key = 'revision'");
  int64_t stored = rev && !rev->empty() ? toInt(rev->front()[0]) : -1;
  if (stored == group_last_) {
    return true;
  }
  if (stored == revision_) {
    return false;
  }
  return fail(Errc::Internal, where_ + ": the connection was lost while committing, and the database's revision (" +
                                  num(stored) + ") is neither this hub's nor the one it committed");
}

void PostgresBackend::rollback() {
  if (in_transaction_) {
    (void)conn_->exec("ROLLBACK");
    in_transaction_ = false;
  }
}

}  // namespace kflex::hub
