// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <string>

#include "agent/runtime/network.hpp"
#include "agent/runtime/probe.hpp"
#include "agent/runtime/runtime.hpp"

namespace kflex::agent::runtime {

/**
 * A control plane of type k8s, as KubeFlex runs one: Kine on a database of its own on the shared
 * PostgreSQL, kube-apiserver on Kine, and kube-controller-manager with KubeFlex's API-only
 * controller set. Kine runs on the host's network and serves the API server on a unix socket
 * (DIR/cp/NAME/run/kine.sock); the API server and the controller manager run in the control
 * plane's network namespace when isolated. The agent makes the PKI (ECDSA P-256: cluster CA, API server serving
 * certificate for the advertised address, front-proxy CA and client, service-account key pair,
 * admin and controller-manager client certificates) and the database, starts Kine, then the API
 * server once Kine answers, then the controller manager once the API server is ready. Deleting
 * it stops all three, drops the database and removes DIR/cp/NAME/.
 */
class K8sRuntime final : public Runtime {
 public:
  K8sRuntime(RuntimeEnv& env, ControlPlaneState state);
  ~K8sRuntime() override;
  void ensure(const nlohmann::json& cp) override;
  net::awaitable<void> probe() override;
  bool ready() const override { return ready_; }
  protocol::StatusReport observe() const override;
  bool remove() override;
  void detach() override;

  /// The components' command lines (for tests and docs): kine, kube-apiserver, kube-controller-manager.
  ProcessSpec kineSpec() const;
  ProcessSpec apiserverSpec() const;
  ProcessSpec controllerManagerSpec() const;

 private:
  /// Directory, ports, network and PKI; code Conflict (condition reason PortInUse) when a port it
  /// needs is held by another program.
  Result<void> prepare();
  ProcessSpec componentSpec(const char* component, std::vector<std::string> argv, std::chrono::seconds grace) const;
  Result<void> makePki();
  Result<void> makeDatabase();
  std::string key(const char* component) const { return name_ + "/" + component; }
  std::string database() const;
  std::filesystem::path kineSocket() const;

  RuntimeEnv& env_;
  ControlPlaneState state_;  // its ports, kept across agent restarts
  std::string name_;
  std::filesystem::path dir_;
  ControlPlaneNetwork net_;
  std::filesystem::path cgroup_;  // its cgroup.procs ("" = no limits)
  ReadyzProbe readyz_;
  uint16_t kcm_port_ = 10257;
  bool prepared_ = false;
  bool database_ready_ = false;
  std::chrono::steady_clock::time_point next_database_try_{};
  bool kine_up_ = false;
  bool apiserver_ready_once_ = false;
  bool removing_ = false;
  std::string problem_;
  std::string problem_reason_ = "ReconcileError";
  bool ready_ = false;
  std::string ready_reason_ = "Creating";
  std::string ready_message_ = "starting Kine, kube-apiserver and kube-controller-manager";
  std::string kubeconfig_;  // the admin kubeconfig as handed out
};

}  // namespace kflex::agent::runtime
