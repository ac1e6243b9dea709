// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <signal.h>

#include <filesystem>
#include <system_error>

#include "agent/host/supervisor.hpp"

namespace kflex::test {

/// Ends the control planes an agent with data dir `agent_dir` launched. The agent leaves them
/// running when it stops, on purpose (its next start adopts them), so a test that is done with
/// the agent ends them here: each process group, by the pid in its pid file. A k3s with the
/// host's node agent linked the host's /etc/rancher/k3s/k3s.yaml to its kubeconfig: that goes too.
inline void endControlPlanes(const std::filesystem::path& agent_dir) {
  std::error_code ec;
  const std::filesystem::path host_link = "/etc/rancher/k3s/k3s.yaml";
  if (std::filesystem::is_symlink(host_link, ec) &&
      std::filesystem::read_symlink(host_link, ec).string().rfind((agent_dir / "cp").string(), 0) == 0) {
    std::filesystem::remove(host_link, ec);
  }
  for (const auto& cp : std::filesystem::directory_iterator(agent_dir / "cp", ec)) {
    for (const auto& pid_file : std::filesystem::directory_iterator(cp.path() / "run", ec)) {
      if (pid_t pid = agent::runtime::runningPid(pid_file.path()); pid > 0) {
        ::kill(-pid, SIGKILL);
      }
    }
  }
}

}  // namespace kflex::test
