// SPDX-License-Identifier: Apache-2.0
#include "agent/runtime/runtime.hpp"

#include "agent/host/versions.hpp"
#include "shared/common/log.hpp"

namespace kflex::agent::runtime {

namespace fs = std::filesystem;

protocol::Component componentOf(const std::string& name, const ProcessStatus& status) {
  protocol::Component c{name, toString(status.state), status.restarts, std::nullopt};
  if (!status.last_exit.empty()) {
    c.last_exit = status.last_exit;
  }
  return c;
}

fs::path RuntimeEnv::program(const std::string& name) const { return programPath(config.bin_dir, config.programs, name); }

fs::path RuntimeEnv::joinCgroup(const std::string& name, const std::string& type) const {
  if (cgroups == nullptr || !cgroups->available()) {
    return {};
  }
  auto it = config.limits.find(type);
  auto path = cgroups->prepare(name, it != config.limits.end() ? it->second : defaultLimits(type));
  if (!path) {
    log::warn("control plane runs without limits", {{"controlPlane", name}, {"error", path.error().message}});
    return {};
  }
  return path.value();
}

std::string RuntimeEnv::limitsNote() const {
  if (cgroups == nullptr) {
    return "";
  }
  return cgroups->available() ? "" : "; no resource limits: " + cgroups->problem();
}

}  // namespace kflex::agent::runtime
