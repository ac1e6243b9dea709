// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <memory>
#include <string>

#include "agent/runtime/runtime.hpp"

namespace kflex::agent::runtime {

/**
 * An external control plane this agent adopts and probes (`kflex adopt NAME --agent AGENT`): a
 * cluster only this edge host reaches. The hub sends the bootstrap kubeconfig with the desired
 * object until adoption; the agent makes upstream's admin account and token there
 * (kube::adoptCluster), keeps the resulting token-only kubeconfig in DIR/cp/NAME/kubeconfig.yaml
 * (0600), reports it (the hub then deletes the bootstrap secret), and probes /readyz with it.
 * Nothing runs on this host; deleting forgets the kubeconfig.
 */
class ExternalRuntime final : public Runtime {
 public:
  ExternalRuntime(RuntimeEnv& env, std::string name);
  ~ExternalRuntime() override;
  void ensure(const nlohmann::json& cp) override;
  net::awaitable<void> probe() override;
  bool ready() const override;
  protocol::StatusReport observe() const override;
  bool remove() override;
  void detach() override {}

  /// What the runtime's coroutines share.
  struct State;

 private:
  std::shared_ptr<State> s_;
};

}  // namespace kflex::agent::runtime
