// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "shared/common/result.hpp"
#include "shared/store/sqlite.hpp"

namespace kflex::agent {

/**
 * The status reports waiting for the hub, in agent.db: the reconciler puts them here, the link
 * sends them and removes each one the hub acknowledged. They survive an agent restart and a
 * broken link.
 * Thread safety: one thread at a time (AgentState's).
 */
class Outbox {
 public:
  /// The outbox of agent.db (AgentState makes it; it lives as long as the database).
  explicit Outbox(store::Database& db) : db_(db) {}
  /// Puts status reports (control plane name, body) in the outbox in one transaction, each
  /// replacing an unsent older one for the same control plane, remembers them as reported, then
  /// tells the listener.
  Result<void> enqueue(const std::vector<std::pair<std::string, std::string>>& reports);
  /// One waiting report.
  struct Report {
    int64_t seq = 0;
    std::string name;
    std::string body;
  };
  /// Waiting reports in order, at most `limit`.
  std::vector<Report> pending(size_t limit);
  /// Removes an acknowledged report.
  Result<void> ack(int64_t seq);
  /// Who is told that reports were queued: the link while it is up (nullptr: nobody).
  void setOnQueued(std::function<void()> on_queued) { on_queued_ = std::move(on_queued); }

 private:
  store::Database& db_;
  std::function<void()> on_queued_;
};

}  // namespace kflex::agent
