// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <iosfwd>

namespace kflex::cli {

/// Runs the kflex command line; returns the exit code (0 ok, 1 failure, 2 usage error).
int runCli(int argc, char** argv, std::ostream& out, std::ostream& err);

}  // namespace kflex::cli
