// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hub/store/object_store.hpp"
#include "shared/common/result.hpp"

namespace kflex::hub {

/// An object as the store keeps it, from its stored body (labels parsed out of it).
ObjectPtr storedRecord(std::string resource, std::string name, int64_t revision, std::string bytes);

/// What a backend holds when the store opens: every object and the retained events.
struct LoadedState {
  std::vector<ObjectPtr> objects;
  std::deque<EventPtr> events;  ///< After `compacted`, in revision order.
  int64_t revision = 0;         ///< The store revision.
  int64_t compacted = 0;        ///< Events at or below this revision are gone.
};

/// What other writers (hub replicas on the same database) committed since this store's last
/// group or catch-up, in the order they committed it.
struct Changes {
  std::vector<EventPtr> events;  ///< Every event after the store's revision, none missing.
  int64_t revision = 0;          ///< The store revision they bring memory to; 0: nothing new.
  int64_t compacted = 0;         ///< The database's compacted revision.
  /// Set instead of `events` when some of them are compacted away already (this store fell
  /// too far behind): everything, read anew.
  std::shared_ptr<LoadedState> reload;
  bool empty() const { return revision == 0 && !reload; }
};

/// Tells the store that another writer may have committed (PostgreSQL's LISTEN/NOTIFY).
class ChangeSignal {
 public:
  virtual ~ChangeSignal() = default;
  /// Blocks until a notification, `timeout` or interrupt(); the highest revision notified, or 0
  /// when none came (timeout, interrupt, a lost connection: the caller catches up anyway).
  virtual int64_t wait(std::chrono::milliseconds timeout) = 0;
  /// Makes a wait() in progress, or the next one, return at once. Any thread.
  virtual void interrupt() = 0;
};

/// The lead of the controllers among the replicas of one database (docs/dev/replicas.md).
class LeaderElection {
 public:
  virtual ~LeaderElection() = default;
  /// Takes the lead when no one holds it or its holder stopped renewing, renews it when held:
  /// the term held, or 0 when another replica leads.
  virtual Result<int64_t> campaign() = 0;
  /// Gives the lead up at once (a clean shutdown), so that another replica takes it.
  virtual void resign() = 0;
};

/**
 * Where the ObjectStore keeps its objects and event log durably. The store keeps everything in
 * memory and decides every write itself; a backend only stores a group of changes as one
 * transaction and reads it all back at open: SQLite in the hub's data dir (SqliteBackend, the only
 * writer of its file), or PostgreSQL (PostgresBackend), where several hub replicas write and each
 * learns of the others' groups through begin(), catchUp() and changeSignal()
 * (docs/dev/replicas.md).
 *
 * A group, on the store's writer thread: begin(), then put/remove/appendEvent/dropEvent/compact/
 * setMeta in any number, then commit(), or rollback() after a failure. Errors carry
 * Errc::NoSpace when the storage is full. sync() runs on the store's syncer thread and makes
 * every committed group durable before anyone hears of it.
 * Thread safety: load() before the threads start; the group calls and catchUp() from one thread;
 * sync() from one other; changeSignal()'s object from a third.
 */
class StoreBackend {
 public:
  virtual ~StoreBackend() = default;
  /// Where it is, for messages (a file, a redacted address).
  virtual const std::string& where() const = 0;
  /// Brings the schema up to date and reads everything back.
  virtual Result<LoadedState> load() = 0;

  /// Starts a group. On a database other writers share, it first waits for their groups to end
  /// and returns what they committed since this backend's last group or catch-up.
  virtual Result<Changes> begin() = 0;
  /// An object's current version is the event at `revision` (its body is the event's).
  virtual Result<void> put(const std::string& resource, const std::string& name, int64_t revision) = 0;
  virtual Result<void> remove(const std::string& resource, const std::string& name) = 0;
  virtual Result<void> appendEvent(const Event& event) = 0;
  /// Deletes the event at `revision` (a superseded version kept only as an object's body).
  virtual Result<void> dropEvent(int64_t revision) = 0;
  /// Deletes the events in (from, to] that hold no object's current version.
  virtual Result<void> compact(int64_t from, int64_t to) = 0;
  /// Records the store revision and the compacted revision.
  virtual Result<void> setMeta(int64_t revision, int64_t compacted) = 0;
  virtual Result<void> commit() = 0;
  virtual void rollback() = 0;

  /// Makes the committed groups durable; an error is fatal to the process (what is stored is
  /// no longer known).
  virtual Result<void> sync() = 0;

  /// What other writers committed since this backend's last group or catch-up, read without
  /// starting a group (on the writer thread, between groups). Nothing where there are none.
  virtual Result<Changes> catchUp() { return Changes{}; }
  /// A signal of other writers' commits, for a follower thread; nullptr when there are none.
  virtual std::unique_ptr<ChangeSignal> changeSignal() { return nullptr; }
  /// Within a group: the term of the controllers' lead as the database has it now (fenced writes
  /// of another term fail). Where there are no other writers this hub always leads, term 1.
  virtual Result<int64_t> leaderTerm() { return int64_t(1); }
  /// The election among replicas, for `holder` (this replica's unique name), each lead lasting
  /// `lease` unless renewed; nullptr where there are no other writers (the hub leads, term 1).
  virtual std::unique_ptr<LeaderElection> leaderElection(const std::string& holder, std::chrono::seconds lease) {
    (void)holder;
    (void)lease;
    return nullptr;
  }
};

}  // namespace kflex::hub
