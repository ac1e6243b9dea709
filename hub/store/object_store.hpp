// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio/experimental/concurrent_channel.hpp>
#include <nlohmann/json.hpp>

#include "shared/common/json_write.hpp"
#include "shared/common/result.hpp"
#include "shared/net/asio.hpp"

namespace kflex::hub {

class StoreBackend;
class ChangeSignal;
class LeaderElection;
struct Changes;
struct LoadedState;

using Json = nlohmann::json;

/// One stored version of an object: its serialized JSON (resourceVersion included) and the
/// fields lists filter on, so that reads never parse.
struct ObjectRecord {
  std::string resource;  ///< "group/plural", the table key prefix.
  std::string name;
  int64_t revision = 0;  ///< The store revision of its last write (= metadata.resourceVersion).
  std::string bytes;     ///< Compact JSON of the whole object.
  std::map<std::string, std::string> labels;
};
using ObjectPtr = std::shared_ptr<const ObjectRecord>;

enum class EventType : uint8_t { Added = 0, Modified = 1, Deleted = 2 };

/// One change, as watch delivers it. Shared by every watcher; never copied per recipient.
struct Event {
  int64_t revision = 0;
  EventType type = EventType::Added;
  ObjectPtr object;  ///< The new version (for Deleted: the last version, at the deletion revision).
};
using EventPtr = std::shared_ptr<const Event>;

/// What a mutation decided, on the writer thread, given the current object.
struct Decision {
  enum class Kind { Put, Delete, Fail, Unchanged } kind = Kind::Fail;
  Json object;            ///< Put: the new object (its resourceVersion is filled in by the store).
  Errc code = Errc::Internal;  ///< Fail: what kind of error it is (callers branch on this).
  std::string reason;     ///< Fail: the Status reason the API reports (NotFound, AlreadyExists, Conflict, ...).
  std::string message;    ///< Fail: message.
  Json details;           ///< Fail: optional Status details.
  std::vector<std::string> warnings;  ///< Sent back as HTTP Warning headers (kubectl prints them).
  /// Put: `object` already serialized around its resourceVersion value (ObjectStore::encode), so
  /// the writer thread only splices the revision in.
  struct Encoded {
    std::string head;  ///< Up to and including the opening quote of the resourceVersion value.
    std::string tail;  ///< From its closing quote on.
    std::map<std::string, std::string> labels;
  };
  std::optional<Encoded> encoded;

  Decision() = default;
  Decision(const Decision&) = default;
  Decision(Decision&&) noexcept = default;
  Decision& operator=(const Decision&) = default;
  Decision& operator=(Decision&&) noexcept = default;
  /// Every create and update ends by freeing an object tree here: the cheaper way.
  ~Decision() { releaseJson(object); }
};

/// The outcome of a write, delivered to the requester.
struct WriteResult {
  Decision decision;  ///< Fail decisions carry the error; storage failures are Errc::Internal.
  ObjectPtr object;   ///< The stored version (Put), the last version (Delete) or current (Unchanged).
};

/// Computes the next version of one object. `current` is nullptr when absent. Runs on the writer
/// thread (or the caller's, for dry runs): must not block.
using Mutation = std::function<Decision(const ObjectRecord* current, int64_t next_revision)>;

/// Options of the store.
struct StoreOptions {
  size_t event_retention = 10000;  ///< Events kept for watch resume (memory and disk).
  size_t max_batch = 256;          ///< Most writes committed in one transaction.
  size_t watch_queue = 4096;       ///< Events buffered per watcher before it is closed as too slow.
};

/// A live watch: events arrive on `channel`; the store closes it when the watcher falls behind.
struct WatchSubscription {
  using Channel = net::experimental::concurrent_channel<void(boost::system::error_code, EventPtr)>;
  std::shared_ptr<Channel> channel;
  std::vector<EventPtr> replay;  ///< Events after the requested revision, to send first.
  int64_t revision = 0;          ///< The store revision when subscribed.
  uint64_t id = 0;
};

/**
 * The hub's object store: every object and an ordered event log in SQLite or PostgreSQL, one
 * revision counter for the whole store bumped by each write in the same transaction. Reads are
 * served from memory.
 * Writes go through one writer thread that commits them in groups (group commit). A second thread
 * makes each committed group durable (fdatasync of the write-ahead log) while the writer commits
 * the next one; only then does the group reach memory, watchers and its requesters, so nothing
 * anyone sees can be lost to a crash. On a database several hub replicas share, the writer also
 * takes in the other replicas' groups, in revision order, before its own and whenever a follower
 * thread hears of them, so memory and watches show every replica's writes.
 * Thread safety: every public method may be called from any thread.
 */
class ObjectStore {
 public:
  /// Opens or creates DIR/hub.db (SQLite), loads objects and retained events.
  static Result<std::unique_ptr<ObjectStore>> open(const std::filesystem::path& db_path, StoreOptions options);
  /// The same on another backend (where() names it in messages).
  static Result<std::unique_ptr<ObjectStore>> open(std::unique_ptr<StoreBackend> backend, StoreOptions options);
  ~ObjectStore();

  /// Submits a mutation; the handler runs on its associated executor after the commit.
  template <class Token>
  auto write(std::string resource, std::string name, Mutation mutation, Token&& token) {
    return write(std::move(resource), std::move(name), 0, std::move(mutation), std::forward<Token>(token));
  }
  /// The same, fenced by the term of the controllers' lead it was decided under (> 0): it fails
  /// (Conflict) when the database's term is another by the time it is stored (Leadership).
  template <class Token>
  auto write(std::string resource, std::string name, int64_t fence, Mutation mutation, Token&& token) {
    return net::async_initiate<Token, void(WriteResult)>(
        [this, fence](auto handler, std::string r, std::string n, Mutation m) {
          // Complete on the requester's executor, never on the writer thread.
          auto ex = net::get_associated_executor(handler);
          auto shared = std::make_shared<decltype(handler)>(std::move(handler));
          submit(std::move(r), std::move(n), fence, std::move(m), [shared, ex](WriteResult result) {
            net::post(ex, [shared, result = std::move(result)]() mutable { std::move(*shared)(std::move(result)); });
          });
        },
        token, std::move(resource), std::move(name), std::move(mutation));
  }
  /// Completes once memory shows every write committed before the call by any replica of this
  /// store's database: what a consistent read (a list or get without resourceVersion) waits for.
  /// At once where this store is its database's only writer. Completes with false when the
  /// database could not be read: memory may then lack another replica's latest writes, and a
  /// consistent read must not be answered from it.
  template <class Token>
  auto fresh(Token&& token) {
    return net::async_initiate<Token, void(bool)>(
        [this](auto handler) {
          auto ex = net::get_associated_executor(handler);
          auto shared = std::make_shared<decltype(handler)>(std::move(handler));
          awaitFresh([shared, ex](bool current) {
            net::post(ex, [shared, current]() mutable { std::move(*shared)(current); });
          });
        },
        token);
  }
  /// Whether other replicas write to this store's database (fresh() has something to wait for).
  bool shared() const { return signal_ != nullptr; }
  /// Serializes a Put decision's object ahead of the write, off the writer thread (a no-op for
  /// other decisions). The object must not change afterwards.
  static void encode(Decision& d);
  /// Runs a mutation against current state without storing it (dryRun=All).
  WriteResult dryRun(const std::string& resource, const std::string& name, const Mutation& mutation);

  /// The current version of one object, or nullptr.
  ObjectPtr get(const std::string& resource, const std::string& name) const;
  /// All objects of a resource sorted by name, and the revision they reflect.
  std::pair<std::vector<ObjectPtr>, int64_t> list(const std::string& resource) const;
  /// All objects of every resource key starting with `prefix` (a namespaced kind's namespaces),
  /// sorted by key then name.
  std::pair<std::vector<ObjectPtr>, int64_t> listPrefix(const std::string& prefix) const;
  /// The current store revision.
  int64_t revision() const;
  /// Number of stored objects (all resources).
  size_t size() const;

  /// Subscribes to events of all resources. With `since` > 0, replays the retained events after
  /// it (an error naming the oldest kept revision when `since` is older: the caller answers 410);
  /// with `since` == 0, replays the current state as synthetic Added events.
  /// `queue`: events buffered before the watcher is closed as too slow (0: options' watch_queue);
  /// the hub's own controllers ask for more, to ride out bursts such as a fleet reconnecting.
  /// `replay_filter`, when set, keeps only the replayed events of objects it accepts (a watch of
  /// one object does not copy the whole store); live events are not filtered.
  Result<WatchSubscription> watch(int64_t since, const net::any_io_executor& executor, size_t queue = 0,
                                  const std::function<bool(const ObjectRecord&)>& replay_filter = {});
  /// Ends a subscription (closes its channel).
  void unwatch(uint64_t id);
  /// Closes every watch channel (shutdown).
  void closeWatches();
  /// Stops the writer after it drains its queue.
  void stop();
  /// The election for the controllers' lead among the replicas of this store's database, for
  /// `holder` (this replica's unique name); nullptr when this hub is the database's only writer.
  std::unique_ptr<LeaderElection> leaderElection(const std::string& holder, std::chrono::seconds lease);

 private:
  struct PendingWrite {
    std::string resource;
    std::string name;
    int64_t fence = 0;
    Mutation mutation;
    std::function<void(WriteResult)> done;
  };
  ObjectStore(std::unique_ptr<StoreBackend> backend, StoreOptions options);
  void submit(std::string resource, std::string name, int64_t fence, Mutation mutation,
              std::function<void(WriteResult)> done);
  void awaitFresh(std::function<void(bool)> done);
  /// A group the writer has committed (or failed), waiting for the syncer.
  struct Committed {
    std::vector<std::function<void(WriteResult)>> done;
    std::vector<WriteResult> results;
    std::vector<EventPtr> events;
    int64_t revision = 0;    ///< The store revision after this group; 0 when it stored nothing.
    int64_t compact_to = 0;  ///< Events at or below this revision were deleted by this group.
    /// Other replicas' groups this store fell too far behind to follow event by event:
    /// memory is replaced by this, and every watch is closed (its watcher lists again).
    std::shared_ptr<LoadedState> reload;
    /// fresh() callers, answered once this group and everything before it are in memory.
    std::vector<std::function<void(bool)>> barriers;
    /// Whether this group read the database (false: it could not be reached; the barriers
    /// are told memory may be behind).
    bool read_database = false;
  };
  void writerLoop();
  Committed commitBatch(std::vector<PendingWrite>& batch);
  /// Takes other replicas' groups into the writer's view and hands them to the syncer, ahead
  /// of anything this store commits after them.
  void adopt(Changes changes);
  /// Between groups, when the follower says others may have committed.
  /// Returns whether the database could be read.
  bool catchUp();
  void followLoop();
  /// Waits until memory shows every group handed to the syncer.
  void waitPublished();
  void handOver(Committed group);
  void syncLoop();
  /// Applies durable groups to memory and the watchers, then answers their requesters.
  void apply(std::deque<Committed>& groups);
  Result<void> load();
  void publish(const std::vector<EventPtr>& events);

  StoreOptions options_;
  std::unique_ptr<StoreBackend> backend_;  // the writer's (groups) and the syncer's (sync)

  // Writer thread only: what it has committed that memory does not show yet (key -> version,
  // nullptr object when deleted), so the next group's mutations see it.
  struct Unsynced {
    ObjectPtr object;
    int64_t revision = 0;
  };
  std::unordered_map<std::string, Unsynced> unsynced_;
  int64_t committed_ = 0;        // the revision of the last committed group
  int64_t disk_compacted_ = 0;   // events at or below this are deleted on disk
  int64_t pruned_at_ = 0;        // unsynced_ holds nothing at or below this
  std::atomic<int64_t> published_{0};  // memory shows every group up to this revision
  std::atomic<int64_t> known_{0};      // committed_, for the follower
  bool catch_up_failing_ = false;      // writer thread: the last catch-up failed (logged once)

  mutable std::shared_mutex mutex_;  // guards objects_, revision_, events_
  std::unordered_map<std::string, std::map<std::string, ObjectPtr>> objects_;
  int64_t revision_ = 0;
  std::deque<EventPtr> events_;
  int64_t compacted_ = 0;  // events at or below this revision are gone

  std::mutex watch_mutex_;
  uint64_t next_watch_id_ = 1;
  std::unordered_map<uint64_t, std::shared_ptr<WatchSubscription::Channel>> watchers_;

  std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  std::deque<PendingWrite> queue_;
  bool stopping_ = false;
  bool poked_ = false;  // the follower says other replicas may have committed
  std::vector<std::function<void(bool)>> barriers_;  // fresh() callers waiting for a catch-up
  std::thread writer_;
  std::unique_ptr<ChangeSignal> signal_;  // other replicas' commits (PostgreSQL), or nullptr
  std::thread follower_;

  std::mutex sync_mutex_;
  std::condition_variable sync_cv_;
  std::deque<Committed> committed_groups_;
  bool writer_done_ = false;
  std::thread syncer_;
  std::condition_variable published_cv_;  // with sync_mutex_: apply() published a take
};

}  // namespace kflex::hub
