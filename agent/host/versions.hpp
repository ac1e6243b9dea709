// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "shared/common/result.hpp"

namespace kflex::agent::runtime {

/// The path of program `name`: programs[name], else bin_dir/name.
std::filesystem::path programPath(const std::filesystem::path& bin_dir,
                                  const std::map<std::string, std::string>& programs, const std::string& name);

/// A program's release, as its --version prints it (v1.30.13+k3s1 reads as 1.30.13).
struct Version {
  int major = 0;
  int minor = 0;
  int patch = 0;
  std::string text;  ///< As printed (v1.30.13+k3s1).
  bool operator<(const Version& o) const {
    return std::tie(major, minor, patch) < std::tie(o.major, o.minor, o.patch);
  }
};

/// The releases of one program kflex-agent launches that it was written against: at least
/// `oldest`, older than `too_new` (docs/launch-contract.md says what each relies on).
struct SupportedVersions {
  std::string program;  ///< k3s, kine, kube-apiserver, kube-controller-manager
  Version oldest;
  Version too_new;
  std::string range;  ///< For people: "v1.28 to v1.30".
};

/// Every program's supported range.
const std::vector<SupportedVersions>& supportedVersions();
/// The supported range of `name`, or null for a program kflex does not check.
const SupportedVersions* supportedVersionsOf(const std::string& name);

/// The first vMAJOR.MINOR.PATCH in `output` (what `PROGRAM --version` printed).
Result<Version> parseVersion(const std::string& output);

/// Runs `program --version` (at most `timeout`) and reads the release it prints.
Result<Version> readVersion(const std::filesystem::path& program,
                            std::chrono::milliseconds timeout = std::chrono::seconds(5));

/// Whether `version` of `name` is in the supported range; the error names both.
Result<void> checkSupported(const std::string& name, const std::filesystem::path& path, const Version& version);

/// readVersion() then checkSupported(), the verdict remembered per path and modification time (a
/// program replaced on disk is read again; one whose version could not be read is tried again).
/// A missing program passes (its start says it is missing). Blocks for the program's --version,
/// which the supported programs answer at once (5 s at most).
Result<void> checkProgram(const std::string& name, const std::filesystem::path& path);

}  // namespace kflex::agent::runtime
