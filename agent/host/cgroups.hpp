// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "shared/common/result.hpp"

namespace kflex::agent::runtime {

/// Resource limits of one control plane (0: none).
struct Limits {
  int64_t memory_bytes = 0;  ///< memory.max
  int64_t cpu_millis = 0;    ///< cpu.max, in thousandths of a CPU
};

/**
 * Control-plane cgroups (cgroup v2): one per control plane, `<agent's cgroup>/cp-NAME`, with
 * memory.max and cpu.max, as systemd delegates the agent's unit subtree to it (Delegate=yes).
 * The agent itself moves to `<agent's cgroup>/agent` first (cgroup v2 lets a cgroup with
 * processes have no controllers for children). Unavailable on cgroup v1 or hybrid hosts, without
 * a delegated (writable) subtree, or without the memory and cpu controllers: problem() says why,
 * and control planes run without limits.
 */
class Cgroups {
 public:
  /// Looks at cgroup2 at `root` and this process's cgroup in `self` (/proc/self/cgroup). The
  /// file-system type is checked only when `check_fs` (tests use plain directories).
  static Cgroups detect(const std::filesystem::path& root = "/sys/fs/cgroup",
                        const std::filesystem::path& self = "/proc/self/cgroup", bool check_fs = true);
  bool available() const { return problem_.empty(); }
  /// Why there are no limits ("" when available).
  const std::string& problem() const { return problem_; }
  /// Makes (or updates) the cgroup of control plane `name`; returns its cgroup.procs, which a
  /// child writes "0" to before exec.
  Result<std::filesystem::path> prepare(const std::string& name, const Limits& limits);
  /// Removes the control plane's cgroup (once its processes are gone).
  void remove(const std::string& name);
  /// The directory holding the control planes' cgroups.
  const std::filesystem::path& base() const { return base_; }

 private:
  std::filesystem::path base_;
  std::string problem_;
  bool enabled_ = false;  // subtree_control set up
  Result<void> enable();
};

/// The limits of a control plane type unless agent.yaml says otherwise (the type table's
/// default_limits): what upstream KubeFlex's
/// charts give the same programs (k8s: kube-apiserver 512Mi + kube-controller-manager 128Mi + Kine
/// 256Mi; k3s and vCluster's k3s up to 1Gi), and 2 CPUs.
Limits defaultLimits(const std::string& type);

}  // namespace kflex::agent::runtime
