// SPDX-License-Identifier: Apache-2.0
// kflex token ... and kflex agent ...: bootstrap tokens and the enrolled agents.
#pragma once

#include <iosfwd>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/cli_common.hpp"

namespace kflex::cli {

/// Adds `token` and `agent` with their subcommands to app. run() runs whichever was parsed.
class FleetCommands {
 public:
  explicit FleetCommands(CLI::App& app);
  /// True when one of these commands was parsed.
  bool parsed() const;
  /// Runs the parsed command; returns the exit code.
  int run(const Globals& g, std::ostream& out, std::ostream& err);

 private:
  CLI::App* token_create_ = nullptr;
  CLI::App* token_list_ = nullptr;
  CLI::App* token_delete_ = nullptr;
  CLI::App* agent_list_ = nullptr;
  CLI::App* agent_revoke_ = nullptr;
  std::string ttl_ = "24h";
  std::string description_;
  std::vector<std::string> usages_ = {"enroll"};
  bool single_use_ = false;
  bool quiet_ = false;
  std::string agent_config_;
  std::string id_;
  std::string name_;
};

}  // namespace kflex::cli
