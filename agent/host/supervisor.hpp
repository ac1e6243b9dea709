// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "shared/common/result.hpp"
#include "shared/common/time.hpp"

namespace kflex::agent::runtime {

/// One program the supervisor keeps running.
struct ProcessSpec {
  std::vector<std::string> argv;           ///< argv[0] is the program's absolute path.
  std::vector<std::string> env;            ///< NAME=VALUE added to the agent's environment (secrets go here, not argv).
  std::filesystem::path work_dir;          ///< Created 0700 if missing; the program starts there.
  std::filesystem::path log_file;          ///< stdout and stderr, appended; rotated by size.
  std::filesystem::path pid_file;          ///< pid, start time and spec hash, for re-adoption after an agent restart.
  int net_ns_fd = -1;                      ///< A network namespace to start in (-1: the agent's own).
  /// Directories bind-mounted over host paths (source, target) in a mount namespace of the
  /// program's own (host mounts still propagate into it); empty: the agent's. Needs CAP_SYS_ADMIN.
  std::vector<std::pair<std::filesystem::path, std::filesystem::path>> bind_mounts;
  std::filesystem::path cgroup_procs;      ///< A cgroup's cgroup.procs to start in ("" = the agent's); not in the spec hash.
  std::chrono::milliseconds stop_grace{10000};  ///< SIGTERM, then SIGKILL after this long.
};

/// Where a supervised program is in its life.
enum class ProcessState {
  Running,      ///< Started (or adopted) and not seen exiting.
  BackingOff,   ///< Exited; waits for its restart delay.
  CrashLoop,    ///< Exited too often in a row: still restarted, at the longest delay.
  Failed,       ///< Cannot be started at all (missing binary, ...); retried at the longest delay.
  Stopping,     ///< SIGTERM sent; SIGKILL at the grace deadline.
  Stopped,      ///< Gone, and not to be restarted.
};
const char* toString(ProcessState s);

/// What the supervisor knows about one program.
struct ProcessStatus {
  ProcessState state = ProcessState::Stopped;
  pid_t pid = 0;
  TimePoint started{};          ///< When the current run began (or was adopted).
  int restarts = 0;             ///< Restarts since the supervisor began supervising it.
  int consecutive_failures = 0;
  bool adopted = false;         ///< Found running from an earlier agent.
  std::string last_exit;        ///< "exit code 1", "killed by signal 9", or "".
  std::string error;            ///< Why it cannot be started, when Failed.
};

/// Tuning of restarts and logs; the defaults follow Kubernetes' CrashLoopBackOff.
struct SupervisorOptions {
  std::chrono::milliseconds backoff_initial{1000};
  std::chrono::milliseconds backoff_max{300000};
  std::chrono::milliseconds reset_after{600000};  ///< A run this long forgives earlier failures.
  int crash_loop_after = 5;                       ///< Consecutive failures that make a CrashLoop.
  uint64_t log_max_bytes = 10 * 1024 * 1024;      ///< A log bigger than this is rotated...
  int log_keep = 3;                               ///< ...keeping this many old files (.1 newest).
};

/**
 * Keeps programs running as the agent's control planes need them: each in its own session and
 * process group, in its own working directory, with stdout/stderr appended to a log file that
 * is rotated by size (copy, then truncate: the program keeps its descriptor, opened O_APPEND).
 * A program that exits is restarted after a delay that doubles up to a cap; a pid file records
 * pid, the kernel's start time and a hash of the spec, so that an agent that restarts adopts what
 * still runs (same spec) instead of starting it twice, and a reused pid is never signalled.
 * Nothing blocks: tick() reaps, restarts, escalates stops and rotates logs; call it periodically.
 * Thread safety: one thread at a time.
 */
class Supervisor {
 public:
  explicit Supervisor(const Clock& clock, SupervisorOptions options = {});
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  /// Makes `key` run `spec`: adopts a matching process from the pid file, starts it, or (when the
  /// spec changed) stops the old one and starts the new. Idempotent.
  void ensure(const std::string& key, const ProcessSpec& spec);
  /// Stops `key` (SIGTERM to its group, SIGKILL after the grace period) and forgets it once gone;
  /// also stops a process only the pid file knows about.
  void stop(const std::string& key, const std::optional<ProcessSpec>& spec = std::nullopt);
  /// True when `key` has no process left (never started, or stopped and reaped).
  bool gone(const std::string& key) const;
  /// Reaps, restarts, escalates stops, rotates logs.
  void tick();
  /// The status of `key` (state Stopped when unknown).
  ProcessStatus status(const std::string& key) const;
  /// Every supervised key.
  std::vector<std::string> keys() const;
  /// Stops supervising without stopping anything (agent shutdown: programs keep running).
  void detachAll();

 private:
  struct Entry;
  void start(Entry& e);
  void onExit(Entry& e, const std::string& how);
  bool alive(Entry& e);
  void rotate(const std::filesystem::path& log);
  const Clock& clock_;
  SupervisorOptions options_;
  std::map<std::string, Entry> entries_;
};

/// The kernel's start time of `pid` (clock ticks since boot, /proc/PID/stat field 22), or 0.
uint64_t processStartTime(pid_t pid);
/// The pid recorded in a pid file when that process still runs (same start time), else 0.
pid_t runningPid(const std::filesystem::path& pid_file);
/// A stable hash of a spec's command line, environment and namespace choice.
std::string specHash(const ProcessSpec& spec);
/// Shows the tail of a log: the last `max_bytes` of the rotated files and the current one, in order.
Result<std::string> readLogTail(const std::filesystem::path& log_file, size_t max_bytes);

}  // namespace kflex::agent::runtime
