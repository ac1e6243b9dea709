// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <memory>
#include <string>

#include "agent/runtime/runtime.hpp"
#include "shared/kube/client.hpp"

namespace kflex::agent::runtime {

/// Images of the vCluster the agent installs: upstream KubeFlex's pins (chart 0.16.4).
inline constexpr const char* kVClusterK3sImage = "rancher/k3s:v1.27.2-k3s1";
inline constexpr const char* kVClusterSyncerImage = "ghcr.io/loft-sh/vcluster:0.16.4";

/**
 * A control plane of type vcluster, as KubeFlex runs one: a vCluster (release `vcluster`, the
 * objects of its 0.16 Helm chart: the syncer's and the workloads' ServiceAccounts, CoreDNS for
 * the virtual cluster, a 5Gi volume for its data) in namespace `<cp>-system` of the cluster near
 * this agent (agent.yaml `cluster_kubeconfig`), its Service range the host's (read as the chart
 * reads it). The agent applies the objects with server-side apply, waits for the StatefulSet's
 * pod and for the kubeconfig the syncer writes (secret `vc-vcluster`, key `config`, its server
 * the node port this agent reaches), follows that secret when it changes, and reports it as
 * KubeFlex does (secret `vc-vcluster`, keys config and config-incluster). Ready means /readyz
 * answered 200 through that kubeconfig at the last probe. Deleting removes the namespace.
 * The work is asynchronous on the agent's executor; ensure() and remove() never block.
 */
class VClusterRuntime final : public Runtime {
 public:
  VClusterRuntime(RuntimeEnv& env, std::string name);
  ~VClusterRuntime() override;
  void ensure(const nlohmann::json& cp) override;
  net::awaitable<void> probe() override;
  bool ready() const override;
  protocol::StatusReport observe() const override;
  bool remove() override;
  void detach() override {}

  /// The objects applied for control plane `name` (namespace NAME-system) whose vCluster is
  /// reached at https://node:node_port and whose virtual Service range is `service_cidr` (the
  /// host's); its data on a claimed volume, or (as an older agent made it) an emptyDir. The
  /// StatefulSet comes last.
  static std::vector<nlohmann::json> manifests(const std::string& name, const std::string& node, int node_port,
                                               const std::string& service_cidr, bool claim_volume = true);

  /// What the runtime's coroutines share (they keep it alive; the runtime may go first).
  struct State;

 private:
  std::shared_ptr<State> s_;
};

}  // namespace kflex::agent::runtime
