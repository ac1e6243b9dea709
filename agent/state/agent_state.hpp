// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "shared/common/result.hpp"
#include "shared/store/sqlite.hpp"

namespace kflex::agent {

/**
 * The agent's local state in DATA_DIR/agent.db (SQLite, WAL): what it was told and what it saw,
 * so that it keeps working without the hub and resyncs afterwards. A file that SQLite cannot use
 * is moved aside (agent.db.corrupt-TIME, with a log line) and a fresh one started: the hub's full
 * resync refills it.
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
  /// Replaces every desired control plane (a snapshot) and records `revision` as acknowledged-to-be.
  Result<void> applySnapshot(int64_t revision, const std::vector<std::pair<std::string, std::string>>& objects);
  /// Applies changes (a delta) and records `revision`.
  Result<void> applyDelta(int64_t revision, const std::vector<std::pair<std::string, std::string>>& upserts,
                          const std::vector<std::string>& deletes);
  /// The desired control planes, by name.
  std::vector<Desired> desired();
  /// The hub revision of the last stored snapshot or delta (0 = none).
  int64_t acknowledgedRevision();
  /// Puts a status report in the outbox (replacing an unsent older one for the same control
  /// plane) and remembers it as reported.
  Result<void> enqueueStatus(const std::string& name, const std::string& body);
  /// Forgets what was reported, so the next reconcile reports everything again.
  Result<void> clearReported();
  /// Outbox entries in order: (seq, name, body).
  struct Report {
    int64_t seq = 0;
    std::string name;
    std::string body;
  };
  std::vector<Report> outbox(size_t limit);
  /// Removes an acknowledged outbox entry.
  Result<void> ackStatus(int64_t seq);
  /// Where a corrupt file was moved to on open, if it was.
  const std::string& movedAside() const { return moved_aside_; }

 private:
  explicit AgentState(std::unique_ptr<store::Database> db) : db_(std::move(db)) {}
  Result<void> applyChanges(int64_t revision, const std::vector<std::pair<std::string, std::string>>& upserts,
                            const std::vector<std::string>& deletes);
  std::unique_ptr<store::Database> db_;
  std::string moved_aside_;
};

}  // namespace kflex::agent
