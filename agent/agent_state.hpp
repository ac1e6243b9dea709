// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

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
  /// Where a corrupt file was moved to on open, if it was.
  const std::string& movedAside() const { return moved_aside_; }

 private:
  explicit AgentState(std::unique_ptr<store::Database> db) : db_(std::move(db)) {}
  std::unique_ptr<store::Database> db_;
  std::string moved_aside_;
};

}  // namespace kflex::agent
