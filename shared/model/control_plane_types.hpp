// SPDX-License-Identifier: Apache-2.0
// The control-plane types kflex knows, in one table: who runs each, what an agent needs for it,
// what it reserves and what the CLI offers. Every part of kflex that lists types or branches on
// one reads this table instead of keeping a list of its own.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace kflex::model {

/// Who runs a control plane of a type.
enum class RunsOn {
  Agent,  ///< An agent chosen by placement: processes on its host, or pods in a cluster near it.
  Hub,    ///< The hub itself (or, for an adopted one, the agent its kflex.kubestellar.org/agent names).
};

/// What an agent's configuration must give before the agent can run a type.
enum class AgentNeeds {
  Nothing,
  Datastore,  ///< A shared PostgreSQL for Kine, the control plane's datastore (postgres_dsn).
  Cluster,    ///< A Kubernetes cluster near the agent to run its pods in (cluster_kubeconfig).
};

/// CPU and memory: what placement reserves on an agent, or a cgroup's limits.
struct Resources {
  int64_t cpu_millis = 0;    ///< Thousandths of a CPU.
  int64_t memory_bytes = 0;  ///< Bytes.
};

/// One control-plane type (a value of ControlPlane spec.type).
struct ControlPlaneType {
  std::string_view name;          ///< spec.type: "k8s".
  RunsOn runs_on = RunsOn::Agent;  ///< Who runs it.
  /// An existing cluster that kflex adopts (`kflex adopt`, not `kflex create`): an agent named by
  /// the kflex.kubestellar.org/agent annotation may adopt it, and kflex made nothing to remove.
  bool adopted = false;
  AgentNeeds agent_needs = AgentNeeds::Nothing;  ///< What an agent needs to run it.
  /// Runs as programs the agent supervises on its host, each control plane in a cgroup (agent.yaml
  /// control_plane_limits applies).
  bool processes = false;
  std::vector<std::string_view> programs;  ///< The agent's programs it runs (agent.yaml `programs` keys).
  Resources reservation;  ///< What placement reserves on its agent (none for those the hub serves).
  Resources default_limits;  ///< Its cgroup's limits unless agent.yaml control_plane_limits says otherwise.
  std::string_view description;  ///< What it is, for the schema ("" when the name says it).
};

/// Every type kflex runs, in the order kflex lists them: k8s, k3s, vcluster, host, external.
std::span<const ControlPlaneType> controlPlaneTypes();
/// The type named `name`; nullptr when kflex has none (ocm included).
const ControlPlaneType* findControlPlaneType(std::string_view name);

/// The type of the clusters `kflex adopt` adopts (external).
const ControlPlaneType& adoptedType();

/// Upstream KubeFlex's deprecated type: the CRD schema accepts it for compatibility, kflex's
/// validation refuses it. It is not in the table.
inline constexpr std::string_view kDeprecatedType = "ocm";
/// The type `kflex create` makes when not told.
inline constexpr std::string_view kDefaultType = "k8s";

/// True for types that run on an agent (k8s, k3s, vcluster); host and external do not.
bool runsOnAgent(std::string_view type);
/// True for types that are adopted clusters (external).
bool isAdopted(std::string_view type);
/// True for types an agent can serve: those that run on one, and adopted ones it is named for.
bool agentServes(std::string_view type);
/// True for types the hub serves itself unless an agent adopts them (host, external).
bool servedByHub(std::string_view type);

/// The names of the types `pick` selects, in table order.
std::vector<std::string> typeNames(bool (*pick)(const ControlPlaneType&));
/// Names joined for a message: "a, b and c" with last_separator " and " ("a, b, c" with ", "), each
/// in double quotes when `quoted`.
std::string joinNames(const std::vector<std::string>& names, std::string_view last_separator, bool quoted = false);

/// The CRD schema of spec.type: upstream KubeFlex's enum in its order (k8s, ocm, vcluster, host,
/// external) followed by kflex's own types (k3s), described from the table.
nlohmann::json specTypeSchema();

}  // namespace kflex::model
