// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "agent/host/cgroups.hpp"
#include "agent/host/supervisor.hpp"
#include "agent/runtime/runtime.hpp"
#include "agent/state/agent_state.hpp"
#include "shared/kube/hook_runner.hpp"

namespace kflex::agent {

/// What the agent reports for one desired control plane (seq still 0) given what its runtime
/// observed (nullopt: this agent does not run its type), cut to the protocol's bounds.
/// Deterministic (no timestamps), so that an unchanged state is not reported again. A type this
/// agent does not run is reported honestly: Ready=False, never Ready=True.
protocol::StatusReport observedStatus(const nlohmann::json& control_plane,
                                      std::optional<protocol::StatusReport> observed);

/**
 * The one place that decides when and what to reconcile. Every control plane this agent runs:
 * one Runtime per desired control plane of a type the agent runs (each handed the typed state of
 * its own control plane), a shared Supervisor, and the loop that restarts, probes and notices
 * changes. Desired state comes from agent.db (so it all keeps working while the hub is out of
 * reach): the link stores it and AgentState tells this reconciler, which brings the runtimes in
 * line. What they observe goes into the outbox when it differs from what was last reported; the
 * link drains the outbox. Removed control planes, including ones removed while the agent was down
 * (a folder under DIR/cp/ that nothing desires), are stopped and their data deleted.
 * Thread safety: the io_context's thread.
 */
class Reconciler {
 public:
  /// Listens to `state` (setOnChange) until destroyed.
  Reconciler(net::any_io_executor ex, const runtime::RuntimeConfig& config, AgentState& state,
             const std::filesystem::path& data_dir, const Clock& clock);
  ~Reconciler();
  /// Reconciles at once, then restarts, probes and reports until stop().
  net::awaitable<void> run();
  /// Ends run(); the programs keep running (an agent restart or upgrade adopts them).
  void stop();
  /// What to report for control plane `name` (its runtime's observations with its hooks'), or
  /// nullopt when this agent does not run its type.
  std::optional<protocol::StatusReport> observe(const std::string& name) const;
  /// Whether control planes get their own network namespace here.
  bool isolated() const { return env_.isolate; }

 private:
  /// Desired state was stored: bring the runtimes in line and report, soon (once, however often
  /// it is told before then). What was reported was forgotten: report everything, now.
  void onStateChanged(AgentState::Change change);
  /// Brings runtimes in line with the desired control planes in agent.db; wakes the loop.
  void sync();
  /// Puts what changed since it was last reported in the outbox.
  void report();
  /// Starts, feeds or ends control plane `name`'s PostCreateHook runner (its targets follow the
  /// runtime: the control plane's credentials once it serves).
  void updateHooks(const std::string& name);
  /// A runtime for `name` of `type` (null for a type this agent does not run).
  std::unique_ptr<runtime::Runtime> make(const std::string& type, const std::string& name);

  AgentState& state_;
  runtime::Supervisor supervisor_;
  std::unique_ptr<runtime::Cgroups> cgroups_;
  runtime::RuntimeConfig config_;
  runtime::RuntimeEnv env_;
  std::map<std::string, std::unique_ptr<runtime::Runtime>> runtimes_;
  std::map<std::string, std::string> types_;          // name -> type of the running runtime
  std::map<std::string, nlohmann::json> desired_;      // name -> the desired object
  std::map<std::string, std::unique_ptr<runtime::Runtime>> removing_;
  std::map<std::string, std::unique_ptr<kube::HookRunner>> hooks_;  // name -> its hooks (when it uses any)
  std::map<std::string, std::string> reported_;       // name -> observe() (as JSON) last seen by the loop
  std::set<std::string> deleting_;                     // desired, with a deletionTimestamp
  std::set<std::string> removed_;                      // deleting, and everything of it is gone
  net::steady_timer wake_;
  bool woken_ = false;  // a reconcile is posted and has not run yet
  bool stopping_ = false;
  bool scanned_ = false;
};

}  // namespace kflex::agent
