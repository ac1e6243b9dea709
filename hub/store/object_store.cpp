// SPDX-License-Identifier: Apache-2.0
#include "hub/store/object_store.hpp"

#include <algorithm>
#include <cstdlib>
#include <iterator>
#include <optional>

#include "hub/store/sqlite_backend.hpp"
#include "hub/store/store_backend.hpp"
#include "shared/common/json_write.hpp"
#include "shared/common/log.hpp"
#include "shared/common/util.hpp"

namespace kflex::hub {
namespace {

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

ObjectPtr storedRecord(std::string resource, std::string name, int64_t revision, std::string bytes) {
  return makeRecord(std::move(resource), std::move(name), revision, std::move(bytes));
}

ObjectStore::ObjectStore(std::unique_ptr<StoreBackend> backend, StoreOptions options)
    : options_(options), backend_(std::move(backend)) {}

Result<std::unique_ptr<ObjectStore>> ObjectStore::open(const std::filesystem::path& db_path, StoreOptions options) {
  auto backend = SqliteBackend::open(db_path);
  if (!backend) {
    return backend.error();
  }
  return open(std::move(backend.value()), options);
}

Result<std::unique_ptr<ObjectStore>> ObjectStore::open(std::unique_ptr<StoreBackend> backend, StoreOptions options) {
  std::unique_ptr<ObjectStore> s(new ObjectStore(std::move(backend), options));
  if (auto r = s->load(); !r) {
    return r.error();
  }
  s->committed_ = s->revision_;
  s->known_ = s->revision_;
  s->disk_compacted_ = s->compacted_;
  s->published_ = s->revision_;
  s->signal_ = s->backend_->changeSignal();
  s->syncer_ = std::thread([p = s.get()] {
    setThreadName("store-sync");
    p->syncLoop();
  });
  s->writer_ = std::thread([p = s.get()] {
    setThreadName("store-writer");
    p->writerLoop();
  });
  if (s->signal_) {
    s->follower_ = std::thread([p = s.get()] {
      setThreadName("store-follow");
      p->followLoop();
    });
  }
  return s;
}

Result<void> ObjectStore::load() {
  auto loaded = backend_->load();
  if (!loaded) {
    return loaded.error();
  }
  for (auto& rec : loaded->objects) {
    objects_[rec->resource][rec->name] = std::move(rec);
  }
  events_ = std::move(loaded->events);
  revision_ = loaded->revision;
  compacted_ = loaded->compacted;
  return {};
}

ObjectStore::~ObjectStore() { stop(); }

void ObjectStore::submit(std::string resource, std::string name, int64_t fence, Mutation mutation,
                         std::function<void(WriteResult)> done) {
  {
    std::lock_guard lock(queue_mutex_);
    if (!stopping_) {
      queue_.push_back({std::move(resource), std::move(name), fence, std::move(mutation), std::move(done)});
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
  std::vector<std::function<void(bool)>> barriers;
  while (true) {
    bool catch_up = false;
    {
      std::unique_lock lock(queue_mutex_);
      queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty() || poked_; });
      if (queue_.empty() && stopping_) {
        barriers.swap(barriers_);
        break;
      }
      // (A group catches up anyway, first thing: a poke matters only when there is none.)
      catch_up = poked_ && queue_.empty();
      poked_ = false;
      barriers.swap(barriers_);
      while (!queue_.empty() && batch.size() < options_.max_batch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    // The fresh() callers taken now are answered after what this catch-up or group reads of the
    // database: everything committed before they asked.
    Committed group;
    if (!batch.empty()) {
      group = commitBatch(batch);
      batch.clear();
    } else if (catch_up) {
      group.read_database = catchUp();
    }
    if (!group.done.empty() || !barriers.empty()) {
      group.barriers = std::move(barriers);
      barriers.clear();
      handOver(std::move(group));
    }
  }
  std::lock_guard lock(sync_mutex_);
  if (!barriers.empty()) {
    Committed last;
    last.barriers = std::move(barriers);
    committed_groups_.push_back(std::move(last));
  }
  writer_done_ = true;
  sync_cv_.notify_one();
}

void ObjectStore::awaitFresh(std::function<void(bool)> done) {
  if (!signal_) {
    done(true);  // no other writers: memory has every acknowledged write
    return;
  }
  {
    std::lock_guard lock(queue_mutex_);
    if (!stopping_) {
      barriers_.push_back(std::move(done));
      poked_ = true;
      queue_cv_.notify_one();
      return;
    }
  }
  done(false);  // shutting down
}

void ObjectStore::handOver(Committed group) {
  std::lock_guard lock(sync_mutex_);
  committed_groups_.push_back(std::move(group));
  sync_cv_.notify_one();
}

void ObjectStore::waitPublished() {
  std::unique_lock lock(sync_mutex_);
  published_cv_.wait(lock, [&] { return published_.load(std::memory_order_acquire) >= committed_; });
}

void ObjectStore::adopt(Changes changes) {
  if (changes.empty()) {
    return;
  }
  Committed group;
  group.revision = changes.revision;
  group.compact_to = changes.compacted;
  if (changes.reload) {
    // Memory is replaced once it shows everything before; the writer's view is memory then.
    waitPublished();
    group.reload = std::move(changes.reload);
    committed_ = group.revision;
    handOver(std::move(group));
    waitPublished();
    unsynced_.clear();
    disk_compacted_ = changes.compacted;
  } else {
    for (const auto& e : changes.events) {
      unsynced_[e->object->resource + "\n" + e->object->name] =
          Unsynced{e->type == EventType::Deleted ? nullptr : e->object, e->revision};
    }
    committed_ = group.revision;
    disk_compacted_ = std::max(disk_compacted_, changes.compacted);
    group.events = std::move(changes.events);
    handOver(std::move(group));
  }
  known_.store(committed_, std::memory_order_release);
}

bool ObjectStore::catchUp() {
  auto changes = backend_->catchUp();
  if (!changes) {
    if (!catch_up_failing_) {
      log::warn("cannot read other replicas' writes from the datastore; retrying",
                {{"store", backend_->where()}, {"error", changes.error().message}});
      catch_up_failing_ = true;
    }
    return false;
  }
  if (catch_up_failing_) {
    log::info("reading other replicas' writes from the datastore again", {{"store", backend_->where()}});
    catch_up_failing_ = false;
  }
  adopt(std::move(changes.value()));
  return true;
}

void ObjectStore::followLoop() {
  // Between notifications, a catch-up every second: one lost (a reconnect) delays a change by a
  // second at most.
  constexpr std::chrono::milliseconds kPoll{1000};
  while (true) {
    int64_t notified = signal_->wait(kPoll);
    std::lock_guard lock(queue_mutex_);
    if (stopping_) {
      return;
    }
    if (notified == 0 || notified > known_.load(std::memory_order_acquire)) {
      poked_ = true;
      queue_cv_.notify_one();
    }
  }
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
  std::string storage_error;
  bool disk_full = false;    // storage_error says the storage is full
  bool unreachable = false;  // the storage could not be reached (a datastore's connection is lost)
  // (Any Result: only whether it failed, and how, counts here.)
  auto note = [&](const auto& r) {
    if (!r && storage_error.empty()) {
      storage_error = r.error().message;
      disk_full = r.error().code == Errc::NoSpace;
      unreachable = r.error().code == Errc::Unavailable;
    }
    return r.has_value();
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

  // Other replicas' groups since this store's last come first: this group's mutations are
  // decided against them.
  auto begun = backend_->begin();
  if (note(begun)) {
    adopt(std::move(begun.value()));
    group.read_database = true;
  }
  int64_t next = committed_;
  // Writes of the controllers' leader carry its term: another term now means it was deposed.
  int64_t term = 0;
  if (storage_error.empty() && std::any_of(batch.begin(), batch.end(), [](const PendingWrite& w) { return w.fence; })) {
    auto t = backend_->leaderTerm();
    if (note(t)) {
      term = t.value();
    }
  }
  std::vector<EventPtr> events;
  for (size_t i = 0; i < batch.size() && storage_error.empty(); ++i) {
    auto& w = batch[i];
    ObjectPtr cur = current(w);
    Decision d;
    try {
      if (w.fence != 0 && w.fence != term) {
        d.kind = Decision::Kind::Fail;
        d.code = Errc::Conflict;
        d.reason = "Conflict";
        d.message = "this hub replica no longer leads the controllers (its term " + std::to_string(w.fence) +
                    ", the datastore's " + std::to_string(term) + "); the leader's controllers do this now";
      } else {
        d = w.mutation(cur.get(), next + 1);
      }
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
    if (cur && cur->revision <= disk_compacted_ && !note(backend_->dropEvent(cur->revision))) {
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
      note(backend_->put(w.resource, w.name, next));
    } else {
      // Delete: the event carries the last state at the deletion revision.
      Json last = cur ? Json::parse(cur->bytes) : Json::object();
      last["metadata"]["resourceVersion"] = std::to_string(next);
      event->type = EventType::Deleted;
      event->object = makeRecord(w.resource, w.name, next, last);
      staged[w.resource + "\n" + w.name] = nullptr;
      note(backend_->remove(w.resource, w.name));
    }
    if (storage_error.empty()) {
      note(backend_->appendEvent(*event));
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
      note(backend_->compact(disk_compacted_, group.compact_to));
    }
    // The meta row (a page of its own) is written only with a compaction; otherwise the newest
    // event tells the revision at load.
    if (storage_error.empty() && group.compact_to > 0) {
      note(backend_->setMeta(next, group.compact_to));
    }
    if (storage_error.empty()) {
      note(backend_->commit());
    }
  }
  if (!storage_error.empty()) {
    // Nothing of this batch is stored (the transaction rolls back); fail every write of it.
    log::error("store write failed", {{"error", storage_error}, {"writes", std::to_string(batch.size())}});
    for (auto& r : group.results) {
      r = WriteResult{};
      r.decision.kind = Decision::Kind::Fail;
      r.decision.code = unreachable ? Errc::Unavailable : Errc::Internal;
      r.decision.reason = unreachable ? "ServiceUnavailable" : "InternalError";
      r.decision.message = "the write was not stored: " + storage_error;
      if (unreachable) {
        r.decision.message += " (the hub reconnects for the next write: retry)";
      }
      if (disk_full) {
        r.decision.message += " (the hub's data disk is full: free space there; reads keep working meanwhile)";
      }
    }
    group.compact_to = 0;
    backend_->rollback();
    return group;
  }
  if (next == committed_) {
    backend_->rollback();  // nothing was written: the group's transaction ends empty
  } else {
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
    if (stored) {
      if (auto synced = backend_->sync(); !synced) {
        // After a failed sync the kernel may have dropped the pages: what the store holds is no
        // longer known to be on disk. Stop, so a restart reads back what actually is (as
        // PostgreSQL does).
        log::error("cannot make the store's write-ahead log durable; stopping so a restart reloads what is on disk",
                   {{"store", backend_->where()}, {"error", synced.error().message}});
        std::_Exit(EXIT_FAILURE);
      }
    }
    apply(groups);
    groups.clear();
  }
}

void ObjectStore::apply(std::deque<Committed>& groups) {
  {
    std::lock_guard wlock(watch_mutex_);
    std::vector<EventPtr> events;
    bool reloaded = false;
    int64_t reloaded_at = 0;
    {
      std::unique_lock lock(mutex_);
      for (auto& g : groups) {
        if (g.revision == 0) {
          continue;
        }
        if (g.reload) {
          objects_.clear();
          for (const auto& rec : g.reload->objects) {
            objects_[rec->resource][rec->name] = rec;
          }
          events_ = g.reload->events;
          revision_ = g.reload->revision;
          compacted_ = g.reload->compacted;
          reloaded_at = revision_;
          events.clear();  // every watcher lists again instead
          reloaded = true;
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
    if (reloaded) {
      log::warn("this replica fell behind the datastore's compaction and read everything again; its watches are "
                "closed so that their watchers list again", {{"revision", std::to_string(reloaded_at)},
                                                            {"watches", std::to_string(watchers_.size())}});
      for (auto& [_, ch] : watchers_) {
        ch->close();
      }
      watchers_.clear();
    }
    if (!events.empty()) {
      publish(events);
    }
  }
  {
    std::lock_guard lock(sync_mutex_);
    published_cv_.notify_all();
  }
  for (auto& g : groups) {
    for (size_t i = 0; i < g.done.size(); ++i) {
      g.done[i](std::move(g.results[i]));
    }
    for (auto& b : g.barriers) {
      b(g.read_database);
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

std::unique_ptr<LeaderElection> ObjectStore::leaderElection(const std::string& holder, std::chrono::seconds lease) {
  return backend_ ? backend_->leaderElection(holder, lease) : nullptr;
}

void ObjectStore::stop() {
  {
    std::lock_guard lock(queue_mutex_);
    stopping_ = true;
    queue_cv_.notify_all();
  }
  if (follower_.joinable()) {
    signal_->interrupt();
    follower_.join();
  }
  if (writer_.joinable()) {
    writer_.join();
  }
  if (syncer_.joinable()) {
    syncer_.join();
  }
  // Reads go on from memory; the storage (a file, checkpointed by the close, and its lock) is
  // released.
  backend_.reset();
}

}  // namespace kflex::hub
