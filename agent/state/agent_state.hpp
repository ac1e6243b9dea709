// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "agent/state/control_plane_state.hpp"
#include "agent/state/outbox.hpp"
#include "shared/common/result.hpp"
#include "shared/store/sqlite.hpp"

namespace kflex::agent {

/**
 * The agent's local state in DATA_DIR/agent.db (SQLite, WAL): what it was told and what it saw,
 * so that it keeps working without the hub and resyncs afterwards. A file that SQLite cannot use
 * is moved aside (agent.db.corrupt-TIME, with a log line) and a fresh one started: the hub's full
 * resync refills it. The link stores what the hub wants here; the reconciler reads it, and
 * hands each runtime the typed state of its own control plane (controlPlane()).
 * Thread safety: one thread at a time.
 */
class AgentState {
 public:
  /// Opens or creates DATA_DIR/agent.db. read_only: for `kflex-agent status` (never moves anything).
  static Result<std::unique_ptr<AgentState>> open(const std::filesystem::path& data_dir, bool read_only = false);

  /// A value of the key-value table, or nullopt.
  std::optional<std::string> get(const std::string& key);
  /// Sets a value (durable when it returns).
  Result<void> set(const std::string& key, const std::string& value);
  /// Sets several values in one transaction.
  Result<void> set(const std::vector<std::pair<std::string, std::string>>& values);
  /// One desired control plane, as the hub sent it.
  struct Desired {
    std::string name;
    int64_t revision = 0;  ///< The hub revision of the message that last changed it.
    std::string body;      ///< The ControlPlane object (JSON).
    std::string reported;  ///< The last status body put in the outbox for it ("" = none yet).
  };
  /// Replaces every desired control plane (a snapshot: a full resync, so every one is reported
  /// again) and records `revision` as acknowledged-to-be; then tells the listener (setOnChange).
  Result<void> applySnapshot(int64_t revision, const std::vector<std::pair<std::string, std::string>>& objects);
  /// Applies changes (a delta) and records `revision`; then tells the listener.
  Result<void> applyDelta(int64_t revision, const std::vector<std::pair<std::string, std::string>>& upserts,
                          const std::vector<std::string>& deletes);
  /// The desired control planes, by name.
  std::vector<Desired> desired();
  /// The hub revision of the last stored snapshot or delta (0 = none).
  int64_t acknowledgedRevision();
  /// Forgets what was reported (a fresh link: the hub may have marked it Unknown meanwhile); then
  /// tells the listener, so that everything is reported again.
  Result<void> clearReported();
  /// The reports waiting for the hub (the same file).
  Outbox& outbox() { return outbox_; }
  /// What the agent keeps for control plane `name` besides its desired object (ports, ...).
  ControlPlaneState controlPlane(const std::string& name) { return ControlPlaneState(*db_, name); }
  /// What changed, for the listener.
  enum class Change {
    Desired,   ///< Desired control planes were stored.
    Reported,  ///< What was reported was forgotten.
  };
  /// Who is told, on the caller's thread once the change is durable: the reconciler, whose cue
  /// it is (nullptr: nobody).
  void setOnChange(std::function<void(Change)> on_change) { on_change_ = std::move(on_change); }
  /// Where a corrupt file was moved to on open, if it was.
  const std::string& movedAside() const { return moved_aside_; }

 private:
  explicit AgentState(std::unique_ptr<store::Database> db) : db_(std::move(db)), outbox_(*db_) {}
  Result<void> applyChanges(int64_t revision, const std::vector<std::pair<std::string, std::string>>& upserts,
                            const std::vector<std::string>& deletes);
  /// Commits desired state, then tells on_change_.
  Result<void> commitChange(store::Transaction& txn);
  /// Tells on_change_ (after a durable change).
  void changed(Change change) const;
  std::unique_ptr<store::Database> db_;
  Outbox outbox_;
  std::function<void(Change)> on_change_;
  std::string moved_aside_;
};

}  // namespace kflex::agent
