// SPDX-License-Identifier: Apache-2.0
// Helpers every kflex command shares.
#pragma once

#include <chrono>

#include "shared/common/time.hpp"
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

namespace kflex::cli {

/// Flags every command takes.
struct Globals {
  std::string kubeconfig;  ///< -k/--kubeconfig; empty: $KUBECONFIG's first file, then ~/.kube/config.
  std::string context;     ///< --context: the hub's context; empty: the one kflex remembers, else current.
  bool chatty = true;      ///< -s/--chatty-status: progress while waiting.
  int verbosity = 0;       ///< -v/--verbosity: 1 says which kubeconfig, hub and context are used.
};

/// Prints rows as aligned columns (the first row is the header), kubectl style.
void printTable(const std::vector<std::vector<std::string>>& rows, std::ostream& out);

}  // namespace kflex::cli
