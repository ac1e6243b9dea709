// SPDX-License-Identifier: Apache-2.0
#include "agent/runtime/registry.hpp"

#include "agent/runtime/external_runtime.hpp"
#include "agent/runtime/k3s_runtime.hpp"
#include "agent/runtime/k8s_runtime.hpp"
#include "agent/runtime/vcluster_runtime.hpp"
#include "shared/model/control_plane_types.hpp"

namespace kflex::agent::runtime {

namespace fs = std::filesystem;

bool runsType(const std::string& type) { return model::agentServes(type); }

std::unique_ptr<Runtime> makeRuntime(const std::string& type, RuntimeEnv& env, ControlPlaneState state) {
  if (type == "k3s") {
    return std::make_unique<K3sRuntime>(env, std::move(state));
  }
  if (type == "k8s") {
    return std::make_unique<K8sRuntime>(env, std::move(state));
  }
  if (type == "vcluster") {
    return std::make_unique<VClusterRuntime>(env, state.name());
  }
  if (type == "external") {
    return std::make_unique<ExternalRuntime>(env, state.name());
  }
  return nullptr;
}

std::string typeOfFolder(const fs::path& dir) {
  std::error_code ec;
  if (fs::exists(dir / "vcluster", ec)) {
    return "vcluster";
  }
  if (fs::exists(dir / "external", ec)) {
    return "external";
  }
  return fs::exists(dir / "pki", ec) ? "k8s" : "k3s";
}

}  // namespace kflex::agent::runtime
