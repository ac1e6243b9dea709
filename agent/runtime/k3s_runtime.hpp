// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <memory>
#include <string>

#include "agent/runtime/network.hpp"
#include "agent/runtime/probe.hpp"
#include "agent/runtime/runtime.hpp"

namespace kflex::agent::runtime {

/**
 * A control plane of type k3s: one `k3s server` with its own data dir, token, config file and
 * kubeconfig (DIR/cp/NAME/), control-plane only (--disable-agent, packaged add-ons off; with
 * k3s_node_agent the first one on the host keeps its kubelet), on embedded SQLite (backend
 * shared) or embedded etcd (--cluster-init, backend dedicated). With isolation it runs in its own
 * network namespace on k3s's default ports, and the agent relays ADVERTISE:PORT to it; without
 * (and always for the one with the kubelet, which needs the host's network) it listens on
 * ADVERTISE:PORT itself, its embedded API server on 127.0.0.1:PORT+1, its controller manager and
 * scheduler on ports of its own; embedded etcd's and the kubelet's fixed ports allow one each per
 * host. As root it runs with a private /etc/rancher (a mount namespace of its own), so that it
 * never replaces the host's /etc/rancher/k3s/k3s.yaml. Ready means /readyz answered 200 to the
 * admin credentials k3s wrote, through the advertised address, at the last probe. What each
 * flag relies on in k3s's source: docs/launch-contract.md.
 */
class K3sRuntime final : public Runtime {
 public:
  K3sRuntime(RuntimeEnv& env, ControlPlaneState state);
  ~K3sRuntime() override;
  void ensure(const nlohmann::json& cp) override;
  net::awaitable<void> probe() override;
  bool ready() const override { return ready_; }
  protocol::StatusReport observe() const override;
  bool remove() override;
  void detach() override;

  /// The k3s command line for this control plane (no secrets on it: the token is a file).
  std::vector<std::string> commandLine(bool dedicated, uint16_t port) const;

 private:
  /// Directory, token, ports and network; code Conflict (condition reason PortInUse) when a port
  /// it needs is held by another program.
  Result<void> prepare();
  /// On the host's network: the fixed ports of embedded etcd and of the node agent are free (else
  /// code Conflict).
  Result<void> checkFixedPorts() const;
  std::string key() const { return name_ + "/k3s"; }
  ProcessSpec spec(bool dedicated) const;
  bool claimNodeAgent();

  RuntimeEnv& env_;
  ControlPlaneState state_;  // its ports and node-agent decision, kept across agent restarts
  std::string name_;
  std::filesystem::path dir_;
  bool dedicated_ = false;
  bool prepared_ = false;
  ControlPlaneNetwork net_;
  std::filesystem::path cgroup_;  // its cgroup.procs ("" = no limits)
  bool node_agent_ = false;       // runs the host's kubelet (no --disable-agent)
  bool isolated_ = false;         // in a network namespace of its own
  uint16_t kcm_port_ = 10257;     // on the host's network: the controller manager's secure port
  uint16_t scheduler_port_ = 10259;
  ReadyzProbe readyz_;
  std::string problem_;        // why it cannot run (Synced=False), "" when it can
  std::string problem_reason_;
  bool ready_ = false;
  std::string ready_message_ = "k3s is starting";
  std::string ready_reason_ = "Creating";
  bool removing_ = false;
  // The kubeconfig k3s wrote, as handed out (server: the advertised endpoint), and its file's time.
  std::string kubeconfig_;
  std::filesystem::file_time_type kubeconfig_time_{};
};

}  // namespace kflex::agent::runtime
