// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "shared/common/result.hpp"
#include "shared/store/sqlite.hpp"

namespace kflex::agent {

/// A host port the agent picked for a control plane and keeps across agent restarts.
enum class PortRole {
  Api,                ///< Where its API is reached (ADVERTISE:PORT).
  ControllerManager,  ///< Its controller manager's secure port, on the host's network.
  Scheduler,          ///< Its scheduler's secure port, on the host's network.
};

/**
 * What the agent keeps in agent.db for one control plane besides its desired object, typed: the
 * ports it picked, whether it runs the host's node agent, its PostCreateHook records. The
 * reconciler hands one to each runtime; runtimes never see agent.db itself. Setters are durable
 * when they return. A handle: cheap to copy, valid as long as its AgentState.
 * Thread safety: one thread at a time (AgentState's).
 */
class ControlPlaneState {
 public:
  /// The state of control plane `name` in `db` (AgentState::controlPlane() makes these).
  ControlPlaneState(store::Database& db, std::string name) : db_(&db), name_(std::move(name)) {}
  /// The control plane's name.
  const std::string& name() const { return name_; }
  /// The port kept for `role`; 0 when none is.
  uint16_t port(PortRole role) const;
  /// Keeps `port` for `role`; 0 forgets it.
  Result<void> setPort(PortRole role, uint16_t port);
  /// The ports kept for every desired control plane here (this one included), each role's.
  std::set<uint16_t> portsOfDesired() const;
  /// Whether this control plane runs the host's node agent (kubelet); nullopt until decided.
  std::optional<bool> nodeAgent() const;
  /// Records that decision; nullopt forgets it.
  Result<void> setNodeAgent(std::optional<bool> runs);
  /// The control plane that holds the host's node agent ("" = none): one per host.
  std::string nodeAgentHolder() const;
  /// Records the holder ("" = none).
  Result<void> setNodeAgentHolder(const std::string& name);
  /// Its PostCreateHook records (kube::HookRunner's JSON text; "" = none).
  std::string hookRecords() const;
  /// Replaces them.
  Result<void> setHookRecords(const std::string& records);

 private:
  /// An upsert of one column of this control plane's row (made when missing), its name bound:
  /// the caller binds the value (2) and runs it.
  Result<store::Statement> upsert(const char* column);
  /// Sets a number column; nullopt is NULL.
  Result<void> setNumber(const char* column, std::optional<int64_t> value);
  /// One column of this control plane's row, as text ("" when there is no row or no value).
  std::string text(const char* column) const;

  store::Database* db_;
  std::string name_;
};

}  // namespace kflex::agent
