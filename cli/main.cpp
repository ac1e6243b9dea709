// SPDX-License-Identifier: Apache-2.0
#include <iostream>

#include "cli/commands.hpp"

int main(int argc, char** argv) { return kflex::cli::runCli(argc, argv, std::cout, std::cerr); }
