// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "agent/agent_config.hpp"

namespace kflex::agent {

/// One line of `kflex-agent check`.
struct HostCheck {
  enum class Verdict { Ok, Warn, Fail, Skip };
  std::string item;    ///< What was checked ("k3s", "network namespaces", ...).
  Verdict verdict = Verdict::Ok;
  std::string detail;  ///< What was found, and what to do when it is not Ok.
};

/// Whether this host can run the control planes its configuration asks for: root and the
/// namespaces and cgroups the agent uses, each program it launches and whether its release is
/// supported (docs/launch-contract.md), the shared PostgreSQL, the cluster for vClusters, and the
/// ports that control planes on the host's network need.
std::vector<HostCheck> checkHost(const AgentConfig& cfg);

/// Prints checkHost() as a table (or JSON); 0 when nothing failed, 1 otherwise.
int printHostCheck(const AgentConfig& cfg, bool json, std::ostream& out);

}  // namespace kflex::agent
