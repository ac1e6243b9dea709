// SPDX-License-Identifier: Apache-2.0
// The configuration files an operator writes: hub.yaml (kflex-hub) and agent.yaml (kflex-agent),
// read and validated as each program reads them at start. The first byte picks the file (even:
// hub.yaml, odd: agent.yaml), the rest is its text. A bad file must give a list of problems,
// never a crash or an exception.
#include <unistd.h>

#include <filesystem>
#include <string>

#include "agent/agent_config.hpp"
#include "fuzz/fuzz_target.hpp"
#include "hub/app/hub_config.hpp"
#include "shared/common/util.hpp"

namespace {

// One file per process, rewritten for each input (the loaders read a path); its directory goes
// when the process ends.
struct ScratchDir {
  std::filesystem::path dir;
  ScratchDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "kflex-fuzz-config-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) != nullptr) {
      dir = tmpl;
    }
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

const std::filesystem::path& scratchFile() {
  static const ScratchDir scratch;
  static const std::filesystem::path file = scratch.dir.empty() ? std::filesystem::path() : scratch.dir / "config.yaml";
  return file;
}

}  // namespace

KFLEX_FUZZ_TARGET(config_files) {
  if (size == 0 || scratchFile().empty()) {
    return 0;
  }
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (!kflex::writeFileAtomic(scratchFile(), text, 0600)) {
    return 0;
  }
  if (data[0] % 2 == 0) {
    kflex::hub::HubConfig cfg;
    if (kflex::hub::loadHubConfig(scratchFile(), cfg)) {
      kflex::hub::makePathsAbsolute(cfg);
      (void)kflex::hub::validateHubConfig(cfg);
    }
  } else {
    kflex::agent::AgentConfig cfg;
    if (kflex::agent::loadAgentConfig(scratchFile(), cfg)) {
      kflex::agent::makePathsAbsolute(cfg);
      (void)kflex::agent::validateAgentConfig(cfg);
    }
  }
  return 0;
}
