// SPDX-License-Identifier: Apache-2.0
#include "hub/store/object_store.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <optional>

#include "shared/common/json_write.hpp"
#include "shared/common/log.hpp"
#include "shared/common/util.hpp"

namespace kflex::hub {
namespace {

// 1: objects in a WITHOUT ROWID table. 2: objects in a rowid table with a unique key index (a
// stored object, about 1.4 KB, is larger than a WITHOUT ROWID row keeps in its page: each one
// spilled into an overflow page of its own, 4 KB more to write per version). 3: each version's
// body is stored once, in its event row; an object row names the revision of its current version
// (before, the body was written twice: to the object row and to the event row). Compaction keeps
// the events that hold current versions.
constexpr int kSchemaVersion = 3;

std::map<std::string, std::string> labelsOf(const Json& obj) {
  std::map<std::string, std::string> out;
  auto meta = obj.find("metadata");
  if (meta == obj.end() || !meta->is_object()) {
    return out;
  }
  auto labels = meta->find("labels");
  if (labels == meta->end() || !labels->is_object()) {
    return out;
  }
  for (auto it = labels->begin(); it != labels->end(); ++it) {
    if (it.value().is_string()) {
      out.emplace(it.key(), it.value().get<std::string>());
    }
  }
  return out;
}

ObjectPtr makeRecord(std::string resource, std::string name, int64_t revision, const Json& obj) {
  auto rec = std::make_shared<ObjectRecord>();
  rec->resource = std::move(resource);
  rec->name = std::move(name);
  rec->revision = revision;
  rec->labels = labelsOf(obj);
  rec->bytes = dumpJson(obj);
  return rec;
}

ObjectPtr makeRecord(std::string resource, std::string name, int64_t revision, std::string bytes) {
  auto rec = std::make_shared<ObjectRecord>();
  rec->resource = std::move(resource);
  rec->name = std::move(name);
  rec->revision = revision;
  rec->labels = labelsOf(Json::parse(bytes, nullptr, false));
  rec->bytes = std::move(bytes);
  return rec;
}

ObjectPtr makeRecord(std::string resource, std::string name, int64_t revision, Decision::Encoded encoded) {
  auto rec = std::make_shared<ObjectRecord>();
  rec->resource = std::move(resource);
  rec->name = std::move(name);
  rec->revision = revision;
  rec->labels = std::move(encoded.labels);
  std::string rv = std::to_string(revision);
  rec->bytes.reserve(encoded.head.size() + rv.size() + encoded.tail.size());
  rec->bytes.append(encoded.head).append(rv).append(encoded.tail);
  return rec;
}

// Stands in for the resourceVersion while an object is serialized ahead of its write. Random per
// process, so no client can put it anywhere in an object.
const std::string& revisionPlaceholder() {
  static const std::string token = "kflex-revision-" + newUuid();
  return token;
}

}  // namespace

Result<std::unique_ptr<ObjectStore::Statements>> ObjectStore::Statements::prepare(store::Database& db) {
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

void ObjectStore::encode(Decision& d) {
  if (d.kind != Decision::Kind::Put || !d.object.is_object()) {
    return;
  }
  const std::string& token = revisionPlaceholder();
  d.object["metadata"]["resourceVersion"] = token;
  std::string bytes = dumpJson(d.object);
  size_t at = bytes.find(token);
  if (at == std::string::npos || bytes.find(token, at + 1) != std::string::npos) {
    return;  // cannot happen: the writer serializes it then
  }
  Decision::Encoded e;
  e.tail = bytes.substr(at + token.size());
  bytes.resize(at);
  e.head = std::move(bytes);
  e.labels = labelsOf(d.object);
  d.encoded = std::move(e);
}

Result<std::unique_ptr<ObjectStore>> ObjectStore::open(const std::filesystem::path& db_path, StoreOptions options) {
  std::unique_ptr<ObjectStore> s(new ObjectStore(db_path, options));
  // The hub alone uses its file: a second hub on the same data dir is refused at start, and no
  // transaction pays for file locks.
  auto db = store::Database::open(db_path, false, true);
  if (!db) {
    return db.error();
  }
  s->db_ = std::move(db.value());
  if (auto r = s->migrate(); !r) {
    return r.error();
  }
  if (auto r = s->load(); !r) {
    return r.error();
  }
  auto statements = Statements::prepare(*s->db_);
  if (!statements) {
    return statements.error();
  }
  s->statements_ = std::move(statements.value());
  // Commits write the log without waiting for the disk (synchronous=NORMAL: SQLite still syncs
  // around every checkpoint and when the log is reused); the syncer's fdatasync of the log makes
  // each group durable before anyone hears of it, which is synchronous=FULL's guarantee with the
  // wait moved off the writer.
  if (auto r = s->db_->exec("PRAGMA synchronous=NORMAL"); !r) {
    return r.error();
  }
  std::string wal = db_path.string() + "-wal";
  s->wal_fd_ = ::open(wal.c_str(), O_RDONLY | O_CLOEXEC);
  if (s->wal_fd_ < 0) {
    return fail(wal + ": cannot open the write-ahead log: " + std::strerror(errno));
  }
  s->committed_ = s->revision_;
  s->disk_compacted_ = s->compacted_;
  s->published_ = s->revision_;
  s->syncer_ = std::thread([p = s.get()] {
    setThreadName("store-sync");
    p->syncLoop();
  });
  s->writer_ = std::thread([p = s.get()] {
    setThreadName("store-writer");
    p->writerLoop();
  });
  return s;
}

ObjectStore::~ObjectStore() { stop(); }

Result<void> ObjectStore::migrate() {
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

Result<void> ObjectStore::load() {
  auto meta = store::Statement::prepare(*db_, "SELECT key, value FROM meta");
  if (!meta) {
    return meta.error();
  }
  auto read = meta->forEachRow([&](store::Statement& r) {
    std::string key = r.columnText(0);
    if (key == "revision") {
      revision_ = r.columnInt(1);
    } else if (key == "compacted") {
      compacted_ = r.columnInt(1);
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
  revision_ = std::max(revision_, newest->columnInt(0));
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
    auto rec = makeRecord(objs->columnText(0), objs->columnText(1), objs->columnInt(2), objs->columnText(3));
    by_key[rec->resource + "\n" + rec->name] = rec;
    objects_[rec->resource][rec->name] = rec;
  }
  auto evs = store::Statement::prepare(*db_,
      "SELECT revision, type, resource, name, body FROM events WHERE revision > ? ORDER BY revision");
  if (!evs) {
    return evs.error();
  }
  evs->bind(1, compacted_);
  return evs->forEachRow([&](store::Statement& r) {
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
      ev->object = makeRecord(std::move(resource), std::move(name), ev->revision, r.columnText(4));
    }
    events_.push_back(std::move(ev));
  });
}

void ObjectStore::submit(std::string resource, std::string name, Mutation mutation,
                         std::function<void(WriteResult)> done) {
  {
    std::lock_guard lock(queue_mutex_);
    if (!stopping_) {
      queue_.push_back({std::move(resource), std::move(name), std::move(mutation), std::move(done)});
      queue_cv_.notify_one();
      return;
    }
  }
  WriteResult r;
  r.decision.code = Errc::Unavailable;
  r.decision.reason = "ServiceUnavailable";
  r.decision.message = "the hub is shutting down";
  done(std::move(r));
}

void ObjectStore::writerLoop() {
  std::vector<PendingWrite> batch;
  while (true) {
    {
      std::unique_lock lock(queue_mutex_);
      queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty() && stopping_) {
        break;
      }
      while (!queue_.empty() && batch.size() < options_.max_batch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    Committed group = commitBatch(batch);
    batch.clear();
    std::lock_guard lock(sync_mutex_);
    committed_groups_.push_back(std::move(group));
    sync_cv_.notify_one();
  }
  std::lock_guard lock(sync_mutex_);
  writer_done_ = true;
  sync_cv_.notify_one();
}

ObjectStore::Committed ObjectStore::commitBatch(std::vector<PendingWrite>& batch) {
  Committed group;
  group.results.resize(batch.size());
  group.done.reserve(batch.size());
  for (auto& w : batch) {
    group.done.push_back(std::move(w.done));
  }
  // Forget what memory shows by now.
  if (int64_t published = published_.load(std::memory_order_acquire); published > pruned_at_) {
    std::erase_if(unsynced_, [published](const auto& kv) { return kv.second.revision <= published; });
    pruned_at_ = published;
  }
  std::unordered_map<std::string, ObjectPtr> staged;  // key -> new version (nullptr: deleted)
  int64_t next = committed_;
  std::string storage_error;
  bool disk_full = false;  // storage_error says the disk is full (a later statement resets SQLite's code)
  auto noteStorageError = [&] {
    storage_error = db_->lastError();
    disk_full = (db_->lastErrorCode() & 0xff) == SQLITE_FULL;  // (of the last error, as its message)
  };

  auto current = [&](const PendingWrite& w) -> ObjectPtr {
    std::string key = w.resource + "\n" + w.name;
    if (auto it = staged.find(key); it != staged.end()) {
      return it->second;
    }
    if (auto it = unsynced_.find(key); it != unsynced_.end()) {
      return it->second.object;
    }
    return get(w.resource, w.name);
  };

  std::optional<store::Transaction> txn;
  if (auto t = store::Transaction::begin(*db_); t) {
    txn.emplace(std::move(t.value()));
  } else {
    storage_error = t.error().message;
  }
  store::Statement* put = &statements_->put;
  store::Statement* del = &statements_->del;
  store::Statement* ev = &statements_->event;
  std::vector<EventPtr> events;
  for (size_t i = 0; i < batch.size() && storage_error.empty(); ++i) {
    auto& w = batch[i];
    ObjectPtr cur = current(w);
    Decision d;
    try {
      d = w.mutation(cur.get(), next + 1);
      if (d.kind == Decision::Kind::Put && !d.encoded) {
        encode(d);  // serialized here, so that an object that cannot be (not UTF-8) fails alone
      }
    } catch (const Json::type_error& e) {
      d = Decision{};
      d.kind = Decision::Kind::Fail;
      d.code = Errc::Invalid;
      d.reason = "BadRequest";
      d.message = std::string("the object cannot be stored: ") + e.what();
    } catch (const std::exception& e) {
      d.kind = Decision::Kind::Fail;
      d.code = Errc::Internal;
      d.reason = "InternalError";
      d.message = std::string("internal error: ") + e.what();
    }
    auto& out = group.results[i];
    if (d.kind == Decision::Kind::Fail) {
      out.decision = std::move(d);
      continue;
    }
    if (d.kind == Decision::Kind::Unchanged) {
      out.object = cur;
      out.decision = std::move(d);
      continue;
    }
    ++next;
    // A current version at or below the compacted revision was kept only as the object's body;
    // superseded now, it goes (compaction never visits that range again).
    if (cur && cur->revision <= disk_compacted_ && !statements_->drop_event.bind(1, cur->revision).run()) {
      noteStorageError();
      break;
    }
    auto event = std::make_shared<Event>();
    event->revision = next;
    if (d.kind == Decision::Kind::Put) {
      d.object["metadata"]["resourceVersion"] = std::to_string(next);
      ObjectPtr rec;
      if (d.encoded) {
        rec = makeRecord(w.resource, w.name, next, std::move(*d.encoded));
        d.encoded.reset();
      } else {
        rec = makeRecord(w.resource, w.name, next, d.object);
      }
      event->type = cur ? EventType::Modified : EventType::Added;
      event->object = rec;
      staged[w.resource + "\n" + w.name] = rec;
      if (!put->bind(1, w.resource).bind(2, w.name).bind(3, next).run()) {
        noteStorageError();
      }
    } else {
      // Delete: the event carries the last state at the deletion revision.
      Json last = cur ? Json::parse(cur->bytes) : Json::object();
      last["metadata"]["resourceVersion"] = std::to_string(next);
      event->type = EventType::Deleted;
      event->object = makeRecord(w.resource, w.name, next, last);
      staged[w.resource + "\n" + w.name] = nullptr;
      if (!del->bind(1, w.resource).bind(2, w.name).run()) {
        noteStorageError();
      }
    }
    if (storage_error.empty() &&
        !ev->bind(1, next).bind(2, int64_t(event->type)).bind(3, w.resource).bind(4, w.name)
             .bindBlob(5, event->object->bytes).run()) {
      noteStorageError();
    }
    out.decision = std::move(d);
    out.object = event->object;
    events.push_back(std::move(event));
  }
  if (storage_error.empty() && next > committed_) {
    // Compact in steps so the delete is amortised over many writes.
    int64_t keep_from = next - int64_t(options_.event_retention);
    if (keep_from > disk_compacted_ + int64_t(options_.event_retention / 10 + 1)) {
      group.compact_to = keep_from;
      if (!statements_->compact.bind(1, disk_compacted_).bind(2, group.compact_to).run()) {
        noteStorageError();
      }
    }
    // The meta row (a page of its own) is written only with a compaction; otherwise the newest
    // event tells the revision at load.
    store::Statement* m = &statements_->meta;
    if (storage_error.empty() && group.compact_to > 0 &&
        (!m->bind(1, next).bind(2, std::string_view("revision")).run() ||
         !m->bind(1, group.compact_to).bind(2, std::string_view("compacted")).run())) {
      noteStorageError();
    }
    if (storage_error.empty()) {
      if (auto r = txn->commit(); !r) {
        storage_error = r.error().message;
        disk_full = r.error().code == Errc::NoSpace;
      }
    }
  }
  if (!storage_error.empty()) {
    // Nothing of this batch is stored (the transaction rolls back); fail every write of it.
    log::error("store write failed", {{"error", storage_error}, {"writes", std::to_string(batch.size())}});
    for (auto& r : group.results) {
      r = WriteResult{};
      r.decision.kind = Decision::Kind::Fail;
      r.decision.code = Errc::Internal;
      r.decision.reason = "InternalError";
      r.decision.message = "the write was not stored: " + storage_error;
      if (db_->lastErrorCode() == SQLITE_FULL || disk_full) {
        r.decision.message += " (the hub's data disk is full: free space there; reads keep working meanwhile)";
      }
    }
    group.compact_to = 0;
    txn.reset();  // rolls back
    return group;
  }
  if (next > committed_) {
    for (auto& [key, obj] : staged) {
      unsynced_[key] = Unsynced{std::move(obj), next};
    }
    committed_ = next;
    group.revision = next;
    group.events = std::move(events);
    disk_compacted_ = std::max(disk_compacted_, group.compact_to);
  }
  return group;
}

void ObjectStore::syncLoop() {
  std::deque<Committed> groups;
  while (true) {
    {
      std::unique_lock lock(sync_mutex_);
      sync_cv_.wait(lock, [&] { return writer_done_ || !committed_groups_.empty(); });
      if (committed_groups_.empty()) {
        return;  // the writer is done and everything is answered
      }
      groups.swap(committed_groups_);
    }
    // Groups that stored nothing need no sync, but an earlier one they read from may; those are
    // in this same take, ahead of them, or already synced.
    bool stored = std::any_of(groups.begin(), groups.end(), [](const Committed& g) { return g.revision > 0; });
    if (stored && ::fdatasync(wal_fd_) != 0) {
      // After a failed sync the kernel may have dropped the pages: what SQLite holds is no longer
      // known to be on disk. Stop, so a restart reads back what actually is (as PostgreSQL does).
      std::string error = std::strerror(errno);
      log::error("cannot make the store's write-ahead log durable; stopping so a restart reloads what is on disk",
                 {{"file", path_.string() + "-wal"}, {"error", error}});
      std::_Exit(EXIT_FAILURE);
    }
    apply(groups);
    groups.clear();
  }
}

void ObjectStore::apply(std::deque<Committed>& groups) {
  {
    std::lock_guard wlock(watch_mutex_);
    std::vector<EventPtr> events;
    {
      std::unique_lock lock(mutex_);
      for (auto& g : groups) {
        if (g.revision == 0) {
          continue;
        }
        for (const auto& e : g.events) {
          auto& bucket = objects_[e->object->resource];
          if (e->type == EventType::Deleted) {
            bucket.erase(e->object->name);
          } else {
            bucket[e->object->name] = e->object;
          }
          events_.push_back(e);
          events.push_back(e);
        }
        revision_ = g.revision;
        compacted_ = std::max(compacted_, g.compact_to);
      }
      while (events_.size() > options_.event_retention) {
        compacted_ = std::max(compacted_, events_.front()->revision);
        events_.pop_front();
      }
      published_.store(revision_, std::memory_order_release);
    }
    if (!events.empty()) {
      publish(events);
    }
  }
  for (auto& g : groups) {
    for (size_t i = 0; i < g.done.size(); ++i) {
      g.done[i](std::move(g.results[i]));
    }
  }
}

void ObjectStore::publish(const std::vector<EventPtr>& events) {
  // Caller holds watch_mutex_.
  std::vector<uint64_t> slow;
  for (auto& [id, ch] : watchers_) {
    for (const auto& e : events) {
      if (!ch->try_send(boost::system::error_code{}, e)) {
        slow.push_back(id);
        break;
      }
    }
  }
  for (uint64_t id : slow) {
    log::warn("closing a watch that fell behind", {{"watch", std::to_string(id)}});
    watchers_[id]->close();
    watchers_.erase(id);
  }
}

WriteResult ObjectStore::dryRun(const std::string& resource, const std::string& name, const Mutation& mutation) {
  ObjectPtr cur = get(resource, name);
  WriteResult r;
  r.decision = mutation(cur.get(), revision() + 1);
  if (r.decision.kind == Decision::Kind::Put) {
    r.decision.object["metadata"]["resourceVersion"] = cur ? std::to_string(cur->revision) : "";
    if (!cur) {
      r.decision.object["metadata"].erase("resourceVersion");
    }
    r.object = makeRecord(resource, name, 0, r.decision.object);
  } else {
    r.object = cur;
  }
  return r;
}

ObjectPtr ObjectStore::get(const std::string& resource, const std::string& name) const {
  std::shared_lock lock(mutex_);
  auto b = objects_.find(resource);
  if (b == objects_.end()) {
    return nullptr;
  }
  auto it = b->second.find(name);
  return it == b->second.end() ? nullptr : it->second;
}

std::pair<std::vector<ObjectPtr>, int64_t> ObjectStore::list(const std::string& resource) const {
  std::shared_lock lock(mutex_);
  std::vector<ObjectPtr> out;
  auto b = objects_.find(resource);
  if (b != objects_.end()) {
    out.reserve(b->second.size());
    for (const auto& [_, obj] : b->second) {
      out.push_back(obj);
    }
  }
  return {std::move(out), revision_};
}

std::pair<std::vector<ObjectPtr>, int64_t> ObjectStore::listPrefix(const std::string& prefix) const {
  std::shared_lock lock(mutex_);
  std::vector<std::pair<std::string, const std::map<std::string, ObjectPtr>*>> buckets;
  for (const auto& [key, objects] : objects_) {
    if (key.rfind(prefix, 0) == 0) {
      buckets.emplace_back(key, &objects);
    }
  }
  std::sort(buckets.begin(), buckets.end());
  std::vector<ObjectPtr> out;
  for (const auto& [_, objects] : buckets) {
    for (const auto& [__, obj] : *objects) {
      out.push_back(obj);
    }
  }
  return {std::move(out), revision_};
}

int64_t ObjectStore::revision() const {
  std::shared_lock lock(mutex_);
  return revision_;
}

size_t ObjectStore::size() const {
  std::shared_lock lock(mutex_);
  size_t n = 0;
  for (const auto& [_, b] : objects_) {
    n += b.size();
  }
  return n;
}

Result<WatchSubscription> ObjectStore::watch(int64_t since, const net::any_io_executor& executor, size_t queue,
                                             const std::function<bool(const ObjectRecord&)>& replay_filter) {
  std::lock_guard wlock(watch_mutex_);
  std::shared_lock lock(mutex_);
  WatchSubscription sub;
  sub.revision = revision_;
  if (since > 0) {
    if (since < compacted_) {
      return fail("too old resource version: " + std::to_string(since) + " (" + std::to_string(compacted_ + 1) + ")");
    }
    auto it = std::upper_bound(events_.begin(), events_.end(), since,
                               [](int64_t rv, const EventPtr& e) { return rv < e->revision; });
    if (!replay_filter) {
      sub.replay.assign(it, events_.end());
    } else {
      std::copy_if(it, events_.end(), std::back_inserter(sub.replay),
                   [&](const EventPtr& e) { return replay_filter(*e->object); });
    }
  } else {
    for (const auto& [_, bucket] : objects_) {
      for (const auto& [name, obj] : bucket) {
        if (replay_filter && !replay_filter(*obj)) {
          continue;
        }
        auto e = std::make_shared<Event>();
        e->revision = obj->revision;
        e->type = EventType::Added;
        e->object = obj;
        sub.replay.push_back(std::move(e));
      }
    }
  }
  sub.channel = std::make_shared<WatchSubscription::Channel>(executor, queue != 0 ? queue : options_.watch_queue);
  sub.id = next_watch_id_++;
  watchers_[sub.id] = sub.channel;
  return sub;
}

void ObjectStore::unwatch(uint64_t id) {
  std::lock_guard wlock(watch_mutex_);
  auto it = watchers_.find(id);
  if (it != watchers_.end()) {
    it->second->close();
    watchers_.erase(it);
  }
}

void ObjectStore::closeWatches() {
  std::lock_guard wlock(watch_mutex_);
  for (auto& [_, ch] : watchers_) {
    ch->close();
  }
  watchers_.clear();
}

void ObjectStore::stop() {
  {
    std::lock_guard lock(queue_mutex_);
    stopping_ = true;
    queue_cv_.notify_all();
  }
  if (writer_.joinable()) {
    writer_.join();
  }
  if (syncer_.joinable()) {
    syncer_.join();
  }
  if (wal_fd_ >= 0) {
    ::close(wal_fd_);
    wal_fd_ = -1;
  }
  // Reads go on from memory; the file (checkpointed by the close) and its lock are released.
  statements_.reset();
  db_.reset();
}

}  // namespace kflex::hub
