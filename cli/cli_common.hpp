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
  std::string kubeconfig;
  std::string context;
};

/// Prints rows as aligned columns (the first row is the header), kubectl style.
void printTable(const std::vector<std::vector<std::string>>& rows, std::ostream& out);

}  // namespace kflex::cli
