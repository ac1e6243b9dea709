// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <deque>
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

/**
 * Where the ObjectStore keeps its objects and event log durably. The store keeps everything in
 * memory and decides every write itself; a backend only stores a group of changes as one
 * transaction and reads it all back at open. SQLite in the hub's data dir today
 * (SqliteBackend); docs/dev/replicas.md has the PostgreSQL plan.
 *
 * A group, on the store's writer thread: begin(), then put/remove/appendEvent/dropEvent/compact/
 * setMeta in any number, then commit(), or rollback() after a failure. Errors carry
 * Errc::NoSpace when the storage is full. sync() runs on the store's syncer thread and makes
 * every committed group durable before anyone hears of it.
 * Thread safety: load() before the threads start; the group calls from one thread; sync() from
 * one other.
 */
class StoreBackend {
 public:
  virtual ~StoreBackend() = default;
  /// Where it is, for messages (a file, a redacted address).
  virtual const std::string& where() const = 0;
  /// Brings the schema up to date and reads everything back.
  virtual Result<LoadedState> load() = 0;

  virtual Result<void> begin() = 0;
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
};

}  // namespace kflex::hub
