// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <iosfwd>

#include "agent/agent_config.hpp"

namespace kflex::agent {

/// Exit codes of kflex-agent.
inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntime = 1;  ///< Could not start, enrollment refused, or failed while running.
inline constexpr int kExitConfig = 2;   ///< Bad flags or configuration.

/// Enrolls when needed, then holds the hub link until SIGTERM/SIGINT. Returns the exit code.
int runAgent(const AgentConfig& cfg);
/// Enrolls this host (once) and writes the agent's configuration to `config_path` (hub URLs,
/// name, labels; never the token), so that the service starts with no flags. Returns the exit code.
int enrollAgent(const AgentConfig& cfg, const std::filesystem::path& config_path, std::ostream& out,
                std::ostream& err);
/// Prints the logs of a control plane's programs (all, or one component). Returns the exit code.
int printLogs(const AgentConfig& cfg, const std::string& cp, const std::string& component, size_t max_bytes,
              std::ostream& out, std::ostream& err);
/// Prints what the agent knows locally, without the hub. Returns the exit code.
int printStatus(const AgentConfig& cfg, bool json, std::ostream& out, std::ostream& err);

}  // namespace kflex::agent
