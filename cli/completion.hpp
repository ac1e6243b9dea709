// SPDX-License-Identifier: Apache-2.0
// `kflex completion bash|zsh|fish`: shell completion scripts made from the command tree itself, so
// they list exactly the commands and flags kflex has.
#pragma once

#include <iosfwd>
#include <map>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace kflex::cli {

/// What a value (of an option, or a command's positional arguments) completes to.
struct CompletionHint {
  enum class Kind { None, Words, Files, ControlPlanes, Contexts };
  Kind kind = Kind::None;
  std::vector<std::string> words;  ///< For Kind::Words.
};

/// Hints by option, and by command for its positional arguments; anything not listed completes
/// to nothing (options) or only to its subcommands (commands).
struct CompletionHints {
  std::map<const CLI::Option*, CompletionHint> options;
  std::map<const CLI::App*, CompletionHint> positionals;
};

/// The shells `writeCompletion` knows.
inline const std::vector<std::string> kCompletionShells = {"bash", "zsh", "fish"};

/// Writes the completion script for shell (one of kCompletionShells) of the command tree app,
/// whose own options are global (accepted after any subcommand too).
void writeCompletion(const CLI::App& app, const CompletionHints& hints, const std::string& shell, std::ostream& out);

}  // namespace kflex::cli
