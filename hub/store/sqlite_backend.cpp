// SPDX-License-Identifier: Apache-2.0
#include "hub/store/sqlite_backend.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <unordered_map>

#include "shared/common/log.hpp"

namespace kflex::hub {
namespace {

// 1: objects in a WITHOUT ROWID table. 2: objects in a rowid table with a unique key index (a
// stored object, about 1.4 KB, is larger than a WITHOUT ROWID row keeps in its page: each one
// spilled into an overflow page of its own, 4 KB more to write per version). 3: each version's
// body is stored once, in its event row; an object row names the revision of its current version
// (before, the body was written twice: to the object row and to the event row). Compaction keeps
// the events that hold current versions.
constexpr int kSchemaVersion = 3;

}  // namespace

struct SqliteBackend::Statements {
  static Result<std::unique_ptr<Statements>> prepare(store::Database& db);
  store::Statement put;
  store::Statement del;
  store::Statement event;
  store::Statement compact;
  store::Statement drop_event;
  store::Statement meta;
};

Result<std::unique_ptr<SqliteBackend::Statements>> SqliteBackend::Statements::prepare(store::Database& db) {
  auto put = store::Statement::prepare(db,
      "INSERT INTO objects (resource, name, revision) VALUES (?, ?, ?) "
      "ON CONFLICT (resource, name) DO UPDATE SET revision = excluded.revision");
  auto del = store::Statement::prepare(db, "DELETE FROM objects WHERE resource = ? AND name = ?");
  auto event = store::Statement::prepare(db, "INSERT INTO events VALUES (?, ?, ?, ?, ?)");
  // Compaction deletes the events of one revision range that are no longer an object's current
  // version (those hold the object's body), looking each one up by its key: the cost follows the
  // range, not the store. Older kept versions go when they are superseded (drop_event).
  auto compact = store::Statement::prepare(db,
      "DELETE FROM events WHERE revision > ?1 AND revision <= ?2 AND revision IS NOT "
      "(SELECT o.revision FROM objects o WHERE o.resource = events.resource AND o.name = events.name)");
  auto drop_event = store::Statement::prepare(db, "DELETE FROM events WHERE revision = ?");
  auto meta = store::Statement::prepare(db, "UPDATE meta SET value = ? WHERE key = ?");
  for (auto* r : {&put, &del, &event, &compact, &drop_event, &meta}) {
    if (!*r) {
      return r->error();
    }
  }
  return std::unique_ptr<Statements>(new Statements{std::move(put.value()), std::move(del.value()),
                                                    std::move(event.value()), std::move(compact.value()),
                                                    std::move(drop_event.value()), std::move(meta.value())});
}

SqliteBackend::SqliteBackend(std::filesystem::path path, std::unique_ptr<store::Database> db)
    : path_(std::move(path)), where_(path_.string()), db_(std::move(db)) {}

SqliteBackend::~SqliteBackend() {
  txn_.reset();
  statements_.reset();  // before the database
  if (wal_fd_ >= 0) {
    ::close(wal_fd_);
  }
}

Result<std::unique_ptr<SqliteBackend>> SqliteBackend::open(const std::filesystem::path& path) {
  // The hub alone uses its file: a second hub on the same data dir is refused at start, and no
  // transaction pays for file locks.
  auto db = store::Database::open(path, false, true);
  if (!db) {
    return db.error();
  }
  return std::unique_ptr<SqliteBackend>(new SqliteBackend(path, std::move(db.value())));
}

Result<void> SqliteBackend::migrate() {
  auto version = db_->userVersion();
  if (!version) {
    return version.error();
  }
  if (version.value() > kSchemaVersion) {
    return fail(path_.string() + ": schema version " + std::to_string(version.value()) +
                " is newer than this kflex-hub understands (" + std::to_string(kSchemaVersion) +
                "); run a newer kflex-hub or restore a backup");
  }
  auto run = [this](const char* sql) -> Result<void> {
    if (auto r = db_->exec(sql); !r) {
      (void)db_->exec("ROLLBACK");
      return r.error();
    }
    return {};
  };
  if (version.value() < 1) {
    return run(R"(
      BEGIN;
      CREATE TABLE objects (id INTEGER PRIMARY KEY, resource TEXT NOT NULL, name TEXT NOT NULL,
                            revision INTEGER NOT NULL);
      CREATE UNIQUE INDEX objects_key ON objects (resource, name);
      CREATE TABLE events (revision INTEGER PRIMARY KEY, type INTEGER NOT NULL, resource TEXT NOT NULL,
                           name TEXT NOT NULL, body BLOB NOT NULL);
      CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
      INSERT INTO meta VALUES ('revision', 0), ('compacted', 0);
      PRAGMA user_version = 3;
      COMMIT;)");
  }
  if (version.value() < 2) {
    log::info("migrating the store to schema version 2", {{"file", path_.string()}});
    auto r = run(R"(
      BEGIN;
      CREATE TABLE objects_v2 (id INTEGER PRIMARY KEY, resource TEXT NOT NULL, name TEXT NOT NULL,
                               revision INTEGER NOT NULL, body BLOB NOT NULL);
      INSERT INTO objects_v2 (resource, name, revision, body) SELECT resource, name, revision, body FROM objects;
      DROP TABLE objects;
      ALTER TABLE objects_v2 RENAME TO objects;
      CREATE UNIQUE INDEX objects_key ON objects (resource, name);
      PRAGMA user_version = 2;
      COMMIT;)");
    if (!r) {
      return r.error();
    }
  }
  if (version.value() < 3) {
    // A current version whose event was compacted away gets its event row back (its type does not
    // matter: events at or below the compacted revision are never replayed).
    log::info("migrating the store to schema version 3", {{"file", path_.string()}});
    return run(R"(
      BEGIN;
      INSERT OR IGNORE INTO events (revision, type, resource, name, body)
        SELECT revision, 1, resource, name, body FROM objects;
      CREATE TABLE objects_v3 (id INTEGER PRIMARY KEY, resource TEXT NOT NULL, name TEXT NOT NULL,
                               revision INTEGER NOT NULL);
      INSERT INTO objects_v3 (resource, name, revision) SELECT resource, name, revision FROM objects;
      DROP TABLE objects;
      ALTER TABLE objects_v3 RENAME TO objects;
      CREATE UNIQUE INDEX objects_key ON objects (resource, name);
      PRAGMA user_version = 3;
      COMMIT;)");
  }
  return {};
}

Result<LoadedState> SqliteBackend::load() {
  if (auto r = migrate(); !r) {
    return r.error();
  }
  LoadedState out;
  if (auto r = readAll(out); !r) {
    return r.error();
  }
  // (After the reads' statements are gone.)
  if (auto r = prepareWrites(); !r) {
    return r.error();
  }
  return out;
}

Result<void> SqliteBackend::readAll(LoadedState& out) {
  auto meta = store::Statement::prepare(*db_, "SELECT key, value FROM meta");
  if (!meta) {
    return meta.error();
  }
  auto read = meta->forEachRow([&](store::Statement& r) {
    std::string key = r.columnText(0);
    if (key == "revision") {
      out.revision = r.columnInt(1);
    } else if (key == "compacted") {
      out.compacted = r.columnInt(1);
    }
  });
  if (!read) {
    return read;
  }
  // The newest event is never compacted, so it carries the store revision; the meta row is
  // written only when events are compacted.
  auto newest = store::Statement::prepare(*db_, "SELECT coalesce(max(revision), 0) FROM events");
  if (!newest) {
    return newest.error();
  }
  if (auto row = newest->step(); !row) {
    return row.error();
  }
  out.revision = std::max(out.revision, newest->columnInt(0));
  auto objs = store::Statement::prepare(*db_,
      "SELECT o.resource, o.name, o.revision, e.body, e.revision IS NULL FROM objects o "
      "LEFT JOIN events e ON e.revision = o.revision");
  if (!objs) {
    return objs.error();
  }
  std::unordered_map<std::string, ObjectPtr> by_key;
  while (true) {
    auto row = objs->step();
    if (!row) {
      return row.error();
    }
    if (!row.value()) {
      break;
    }
    if (objs->columnInt(4) != 0) {
      return fail(path_.string() + ": the stored object " + objs->columnText(0) + " " + objs->columnText(1) +
                  " has no body (revision " + std::to_string(objs->columnInt(2)) +
                  "); the file is damaged: restore a backup");
    }
    auto rec = storedRecord(objs->columnText(0), objs->columnText(1), objs->columnInt(2), objs->columnText(3));
    by_key[rec->resource + "\n" + rec->name] = rec;
    out.objects.push_back(rec);
  }
  auto evs = store::Statement::prepare(*db_,
      "SELECT revision, type, resource, name, body FROM events WHERE revision > ? ORDER BY revision");
  if (!evs) {
    return evs.error();
  }
  evs->bind(1, out.compacted);
  auto events = evs->forEachRow([&](store::Statement& r) {
    auto ev = std::make_shared<Event>();
    ev->revision = r.columnInt(0);
    ev->type = static_cast<EventType>(r.columnInt(1));
    std::string resource = r.columnText(2);
    std::string name = r.columnText(3);
    // Share the bytes with the live object when this event wrote its current version.
    auto live = by_key.find(resource + "\n" + name);
    if (live != by_key.end() && live->second->revision == ev->revision) {
      ev->object = live->second;
    } else {
      ev->object = storedRecord(std::move(resource), std::move(name), ev->revision, r.columnText(4));
    }
    out.events.push_back(std::move(ev));
  });
  return events;
}

Error SqliteBackend::failed(const Error& e) const {
  // (Of the last error, as its message: read before anything else runs on the connection.)
  if (e.code == Errc::NoSpace || (db_->lastErrorCode() & 0xff) == SQLITE_FULL) {
    return fail(Errc::NoSpace, e.message);
  }
  return e;
}

Result<void> SqliteBackend::prepareWrites() {
  auto statements = Statements::prepare(*db_);
  if (!statements) {
    return statements.error();
  }
  statements_ = std::move(statements.value());
  // Commits write the log without waiting for the disk; sync() makes them durable.
  if (auto r = db_->exec("PRAGMA synchronous=NORMAL"); !r) {
    return r.error();
  }
  std::string wal = path_.string() + "-wal";
  wal_fd_ = ::open(wal.c_str(), O_RDONLY | O_CLOEXEC);
  if (wal_fd_ < 0) {
    return fail(wal + ": cannot open the write-ahead log: " + std::strerror(errno));
  }
  return {};
}

Result<Changes> SqliteBackend::begin() {
  // (The file is this hub's alone: no one else's groups to catch up on.)
  auto t = store::Transaction::begin(*db_);
  if (!t) {
    return failed(t.error());
  }
  txn_.emplace(std::move(t.value()));
  return Changes{};
}

Result<void> SqliteBackend::put(const std::string& resource, const std::string& name, int64_t revision) {
  if (auto r = statements_->put.bind(1, resource).bind(2, name).bind(3, revision).run(); !r) {
    return failed(r.error());
  }
  return {};
}

Result<void> SqliteBackend::remove(const std::string& resource, const std::string& name) {
  if (auto r = statements_->del.bind(1, resource).bind(2, name).run(); !r) {
    return failed(r.error());
  }
  return {};
}

Result<void> SqliteBackend::appendEvent(const Event& e) {
  auto r = statements_->event.bind(1, e.revision)
               .bind(2, int64_t(e.type))
               .bind(3, e.object->resource)
               .bind(4, e.object->name)
               .bindBlob(5, e.object->bytes)
               .run();
  if (!r) {
    return failed(r.error());
  }
  return {};
}

Result<void> SqliteBackend::dropEvent(int64_t revision) {
  if (auto r = statements_->drop_event.bind(1, revision).run(); !r) {
    return failed(r.error());
  }
  return {};
}

Result<void> SqliteBackend::compact(int64_t from, int64_t to) {
  if (auto r = statements_->compact.bind(1, from).bind(2, to).run(); !r) {
    return failed(r.error());
  }
  return {};
}

Result<void> SqliteBackend::setMeta(int64_t revision, int64_t compacted) {
  store::Statement& m = statements_->meta;
  if (auto r = m.bind(1, revision).bind(2, std::string_view("revision")).run(); !r) {
    return failed(r.error());
  }
  if (auto r = m.bind(1, compacted).bind(2, std::string_view("compacted")).run(); !r) {
    return failed(r.error());
  }
  return {};
}

Result<void> SqliteBackend::commit() {
  auto r = txn_->commit();
  txn_.reset();
  return r;
}

void SqliteBackend::rollback() { txn_.reset(); }

Result<void> SqliteBackend::sync() {
  if (wal_fd_ >= 0 && ::fdatasync(wal_fd_) != 0) {
    return fail(path_.string() + "-wal: " + std::strerror(errno));
  }
  return {};
}

}  // namespace kflex::hub
