// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/host/cgroups.hpp"
#include "agent/host/supervisor.hpp"
#include "shared/config/kubeconfig.hpp"
#include "shared/net/asio.hpp"
#include "shared/protocol/messages.hpp"

namespace kflex::agent::runtime {

/// Where programs come from and how control planes are reached: from agent.yaml and flags.
struct RuntimeConfig {
  std::filesystem::path bin_dir = "/usr/local/bin";        ///< k3s, kine, kube-apiserver, ... (YAML `bin_dir`).
  std::map<std::string, std::string> programs;             ///< Per-program paths (YAML `programs`).
  std::string advertise_address;                           ///< The address control planes are reached at.
  bool isolate = true;                                     ///< A network namespace per control plane when possible.
  std::chrono::milliseconds probe_interval{2000};          ///< Health probes (and restarts) this often.
  std::string postgres_dsn;                                ///< The shared PostgreSQL of k8s control planes ("" = none).
  std::string postgres_password;                           ///< Its password (from a file; never logged).
  bool k3s_node_agent = false;                             ///< One k3s control plane here runs the kubelet (YAML `k3s_node_agent`).
  std::map<std::string, Limits> limits;                    ///< Per type, over defaultLimits() (YAML `control_plane_limits`).
  std::optional<config::ClusterAccess> cluster;            ///< The cluster near the agent (vcluster); none when absent.
  std::string cluster_node;                                ///< Where its node ports are reached ("" = its API host).
  SupervisorOptions supervisor;
};

/// A supervised program as a status report names it.
protocol::Component componentOf(const std::string& name, const ProcessStatus& status);

/// What every runtime gets from the agent (its own control plane's state comes separately: a
/// ControlPlaneState from the reconciler).
struct RuntimeEnv {
  net::any_io_executor executor;
  Supervisor& supervisor;
  const Clock& clock;
  const RuntimeConfig& config;
  std::filesystem::path cp_root;  ///< DATA_DIR/cp
  bool isolate = false;           ///< Namespaces asked for and available.
  /// The path of a program: programs[name], else bin_dir/name.
  std::filesystem::path program(const std::string& name) const;
  Cgroups* cgroups = nullptr;     ///< Control-plane cgroups; none in tests that do not ask.
  /// Makes control plane `name`'s cgroup with its type's limits; its cgroup.procs, or "" when
  /// limits are unavailable (say so with limitsNote()).
  std::filesystem::path joinCgroup(const std::string& name, const std::string& type) const;
  /// "" when limits apply, else "; no resource limits: WHY" for Synced messages.
  std::string limitsNote() const;
};

/// One control plane on this host: turns the desired object into running programs, probes them
/// and says how they are. One implementation per type (k3s, k8s, vcluster).
class Runtime {
 public:
  virtual ~Runtime() = default;
  /// Makes the programs match the desired object (idempotent; never blocks).
  virtual void ensure(const nlohmann::json& cp) = 0;
  /// Probes health (asynchronously, with deadlines) and updates what observe() says.
  virtual net::awaitable<void> probe() = 0;
  /// Whether the last probe found it Ready.
  virtual bool ready() const = 0;
  /// What it observed: conditions (Synced, Ready), endpoint, components, kubeconfig (the
  /// reconciler fills in the control plane's name and generation).
  virtual protocol::StatusReport observe() const = 0;
  /// Stops the programs and removes the data; true once everything is gone. Called repeatedly.
  virtual bool remove() = 0;
  /// The agent stops: let go of what the agent itself holds (relays), leave the programs running.
  virtual void detach() = 0;
};

}  // namespace kflex::agent::runtime
