// SPDX-License-Identifier: Apache-2.0
#include <iostream>

#include <CLI/CLI.hpp>

#include "shared/common/version.hpp"

int main(int argc, char** argv) {
  CLI::App app{"kflex-agent: the kflex edge agent. It enrolls with a kflex hub and runs the control planes\n"
               "placed on this host. Enrollment and the hub link arrive in the next release; this build\n"
               "only reports its version."};
  app.set_version_flag("--version", std::string("kflex-agent ") + kflex::kVersion);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  std::cout << app.help();
  return 0;
}
