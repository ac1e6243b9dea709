// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "agent/runtime/runtime.hpp"
#include "agent/host/supervisor.hpp"
#include "shared/kube/hook_runner.hpp"

namespace kflex::agent::runtime {

/**
 * Every control plane this agent runs: one Runtime per desired control plane of a type the agent
 * runs, a shared Supervisor, and the loop that restarts, probes and notices changes. Desired
 * state comes from agent.db (so it all keeps working while the hub is out of reach); removed
 * control planes, including ones removed while the agent was down (a folder under DIR/cp/ that
 * nothing desires), are stopped and their data deleted.
 * Thread safety: the io_context's thread.
 */
class ControlPlanes {
 public:
  ControlPlanes(net::any_io_executor ex, const RuntimeConfig& config, AgentState& state,
                const std::filesystem::path& data_dir, const Clock& clock);
  ~ControlPlanes();
  /// Brings runtimes in line with the desired control planes in agent.db; wakes the loop.
  void sync();
  /// What to report for control plane `name` (its runtime's observations with its hooks'), or
  /// nullopt when this agent does not run its type.
  std::optional<protocol::StatusReport> observe(const std::string& name) const;
  /// Restarts, probes and reports until stop().
  net::awaitable<void> run();
  /// Ends run(); the programs keep running (an agent restart or upgrade adopts them).
  void stop();
  /// Called (on the loop) when what observe() says changed for any control plane.
  std::function<void()> on_change;
  /// Whether control planes get their own network namespace here.
  bool isolated() const { return env_.isolate; }
  /// Types this agent runs.
  static bool runsType(const std::string& type);

 private:
  std::unique_ptr<Runtime> make(const std::string& type, const std::string& name);
  /// Starts, feeds or ends control plane `name`'s PostCreateHook runner (its targets follow the
  /// runtime: the control plane's credentials once it serves).
  void updateHooks(const std::string& name);
  Supervisor supervisor_;
  std::unique_ptr<Cgroups> cgroups_;
  RuntimeConfig config_;
  RuntimeEnv env_;
  std::map<std::string, std::unique_ptr<Runtime>> runtimes_;
  std::map<std::string, std::string> types_;          // name -> type of the running runtime
  std::map<std::string, nlohmann::json> desired_;      // name -> the desired object
  std::map<std::string, std::unique_ptr<Runtime>> removing_;
  std::map<std::string, std::unique_ptr<kube::HookRunner>> hooks_;  // name -> its hooks (when it uses any)
  std::map<std::string, std::string> reported_;       // name -> observe() (as JSON) last seen by the loop
  std::set<std::string> deleting_;                     // desired, with a deletionTimestamp
  std::set<std::string> removed_;                      // deleting, and everything of it is gone
  net::steady_timer wake_;
  bool stopping_ = false;
  bool scanned_ = false;
};

}  // namespace kflex::agent::runtime
