// SPDX-License-Identifier: Apache-2.0
#include "agent/host/supervisor.hpp"

#include <fcntl.h>
#include <linux/close_range.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "shared/common/log.hpp"
#include "shared/common/util.hpp"
#include "shared/tls/pki.hpp"

extern char** environ;

namespace kflex::agent::runtime {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using std::chrono::milliseconds;

// What a service manager gives the agent itself and must not reach its children (a child that
// sent READY=1 or watchdog pings on the agent's behalf would confuse systemd), and settings the
// launched programs read from their environment, which the agent sets on their command lines
// and files instead: k3s reads K3S_* (K3S_DATASTORE_ENDPOINT, K3S_CONFIG_FILE, ...), Kine from
// v0.14.1 KINE_*, and PostgreSQL clients PG* (a stray PGPASSWORD would hide Kine's PGPASSFILE).
bool inheritedVariable(const char* entry) {
  static const char* const kDropped[] = {"NOTIFY_SOCKET=", "WATCHDOG_PID=", "WATCHDOG_USEC=", "LISTEN_PID=",
                                         "LISTEN_FDS=",    "LISTEN_FDNAMES=", "K3S_", "KINE_", "PG"};
  for (const char* d : kDropped) {
    if (std::strncmp(entry, d, std::strlen(d)) == 0) {
      return false;
    }
  }
  return true;
}

// In a forked child: bind-mounts each (source, target); only system calls.
bool bindAll(const std::vector<std::pair<const char*, const char*>>& mounts) {
  for (const auto& [source, target] : mounts) {
    if (::mount(source, target, nullptr, MS_BIND | MS_REC, nullptr) != 0) {
      return false;
    }
  }
  return true;
}

std::string describeExit(int status) {
  if (WIFEXITED(status)) {
    return "exit code " + std::to_string(WEXITSTATUS(status));
  }
  if (WIFSIGNALED(status)) {
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  }
  return "status " + std::to_string(status);
}

// What /proc/PID/stat says of a process: its state letter and its start time (clock ticks since
// boot, field 22); zeroes when there is no such process.
struct ProcStat {
  char state = 0;
  uint64_t start = 0;
};

ProcStat readProcStat(pid_t pid) {
  ProcStat out;
  if (pid <= 0) {
    return out;
  }
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
  auto close = text.rfind(')');
  if (close == std::string::npos) {
    return out;
  }
  std::istringstream rest(text.substr(close + 1));
  std::string field;
  for (int i = 3; i <= 22 && (rest >> field); ++i) {
    if (i == 3) {
      out.state = field.empty() ? 0 : field[0];
    } else if (i == 22) {
      out.start = std::strtoull(field.c_str(), nullptr, 10);
    }
  }
  return out;
}

// Whether `pid` is still the process that started at `ticks` and has not exited (a zombie has).
bool stillRuns(pid_t pid, uint64_t ticks) {
  if (pid <= 0 || ticks == 0) {
    return false;
  }
  ProcStat st = readProcStat(pid);
  return st.start == ticks && st.state != 'Z';
}

// A pid file as start() writes it.
struct PidFile {
  pid_t pid = 0;
  uint64_t ticks = 0;
  std::string spec;
};

PidFile readPidFile(const fs::path& path) {
  PidFile out;
  auto text = readFile(path);
  Json j = text ? Json::parse(text.value(), nullptr, false) : Json();
  if (j.is_object()) {
    out.pid = j.value("pid", 0);
    out.ticks = j.value("startTime", uint64_t(0));
    out.spec = j.value("spec", "");
  }
  return out;
}

// Every program is started with these in its environment: which pid file is its, and the hash of
// the spec it was started with. They survive what a command line does not (k3s execs itself
// again, as k3s-server from its data directory: another executable, another argv[0]).
constexpr const char* kPidFileVariable = "KFLEX_PID_FILE=";
constexpr const char* kSpecVariable = "KFLEX_SPEC_HASH=";

// A process an earlier agent started for `spec` but never recorded (it was killed between the
// fork and the pid file): a session leader (each program gets a session of its own; what it
// starts in turn inherits the variables but not the session) whose environment names the spec's
// pid file; the oldest, should what it started make sessions of its own. Its pid and the spec
// hash it was started with, or {0, ""}.
std::pair<pid_t, std::string> findUnrecorded(const ProcessSpec& spec) {
  const std::string marker = kPidFileVariable + spec.pid_file.string();
  std::pair<pid_t, std::string> found{0, ""};
  uint64_t found_start = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    pid_t pid = std::atoi(name.c_str());
    if (::getsid(pid) != pid) {
      continue;
    }
    auto environ_text = readFile(entry.path() / "environ");
    if (!environ_text) {
      continue;
    }
    bool ours = false;
    std::string hash;
    for (const auto& var : split(environ_text.value(), '\0')) {
      ours |= var == marker;
      if (var.rfind(kSpecVariable, 0) == 0) {
        hash = var.substr(std::string(kSpecVariable).size());
      }
    }
    ProcStat st = ours ? readProcStat(pid) : ProcStat{};
    if (ours && st.state != 0 && st.state != 'Z' && (found.first == 0 || st.start < found_start)) {
      found = {pid, hash};
      found_start = st.start;
    }
  }
  return found;
}

}  // namespace

struct Supervisor::Entry {
  ProcessSpec spec;
  std::string hash;
  ProcessStatus st;
  uint64_t start_ticks = 0;
  bool child = false;         // forked by this supervisor (so waitpid works)
  bool want_running = true;
  bool killed = false;        // SIGKILL sent
  TimePoint next_start{};
  TimePoint kill_at{};
};

const char* toString(ProcessState s) {
  switch (s) {
    case ProcessState::Running: return "Running";
    case ProcessState::BackingOff: return "BackingOff";
    case ProcessState::CrashLoop: return "CrashLoopBackOff";
    case ProcessState::Failed: return "Failed";
    case ProcessState::Stopping: return "Stopping";
    case ProcessState::Stopped: return "Stopped";
  }
  return "Unknown";
}

uint64_t processStartTime(pid_t pid) { return readProcStat(pid).start; }

pid_t runningPid(const fs::path& pid_file) {
  PidFile p = readPidFile(pid_file);
  return stillRuns(p.pid, p.ticks) ? p.pid : 0;
}

std::string specHash(const ProcessSpec& spec) {
  Json j = {{"argv", spec.argv}, {"env", spec.env}, {"dir", spec.work_dir.string()}, {"netns", spec.net_ns_fd >= 0}};
  for (const auto& [source, target] : spec.bind_mounts) {
    j["mounts"].push_back({source.string(), target.string()});  // (absent without mounts: old hashes hold)
  }
  return tls::sha256Hex(j.dump()).substr(0, 16);
}

Supervisor::Supervisor(const Clock& clock, SupervisorOptions options) : clock_(clock), options_(options) {}

Supervisor::~Supervisor() = default;

void Supervisor::ensure(const std::string& key, const ProcessSpec& spec) {
  std::string hash = specHash(spec);
  auto it = entries_.find(key);
  if (it != entries_.end()) {
    Entry& e = it->second;
    e.want_running = true;
    if (e.hash == hash) {
      e.spec = spec;  // (a fresh namespace descriptor for the same namespace)
      if (e.st.state == ProcessState::Stopped) {
        start(e);
      }
      return;
    }
    log::info("configuration changed; restarting", {{"process", key}});
    e.spec = spec;
    e.hash = hash;
    if (e.st.state == ProcessState::Running) {
      e.st.state = ProcessState::Stopping;
      e.kill_at = clock_.now() + e.spec.stop_grace;
      e.killed = false;
      ::kill(-e.st.pid, SIGTERM);
    } else if (e.st.state != ProcessState::Stopping) {
      start(e);
    }
    return;
  }
  Entry& e = entries_[key];
  e.spec = spec;
  e.hash = hash;
  // An earlier agent's process, still running?
  if (PidFile p = readPidFile(spec.pid_file); stillRuns(p.pid, p.ticks)) {
    e.st.pid = p.pid;
    e.start_ticks = p.ticks;
    e.st.adopted = true;
    e.st.started = clock_.now();
    if (p.spec == hash) {
      e.st.state = ProcessState::Running;
      log::info("adopted a running process", {{"process", key}, {"pid", std::to_string(p.pid)}});
      return;
    }
    log::info("a running process has an older configuration; replacing it",
              {{"process", key}, {"pid", std::to_string(p.pid)}});
    e.st.state = ProcessState::Stopping;
    e.kill_at = clock_.now() + spec.stop_grace;
    ::kill(-p.pid, SIGTERM);
    return;
  }
  // One an earlier agent started and was killed before it could record: adopted when it was
  // started with this spec, else replaced; never left running beside a second one.
  if (!spec.argv.empty()) {
    if (auto [stray, stray_hash] = findUnrecorded(spec); stray > 0) {
      e.st.pid = stray;
      e.start_ticks = processStartTime(stray);
      e.st.adopted = true;
      e.st.started = clock_.now();
      if (stray_hash == hash) {
        e.st.state = ProcessState::Running;
        Json pid_info = {{"pid", stray}, {"startTime", e.start_ticks}, {"spec", e.hash}, {"argv0", spec.argv[0]}};
        (void)writeFileAtomic(spec.pid_file, pid_info.dump() + "\n", 0600);
        log::info("adopted a process an earlier agent started but did not record",
                  {{"process", key}, {"pid", std::to_string(stray)}});
        return;
      }
      log::info("a process an earlier agent started but did not record has an older configuration; replacing it",
                {{"process", key}, {"pid", std::to_string(stray)}});
      e.st.state = ProcessState::Stopping;
      e.kill_at = clock_.now() + spec.stop_grace;
      ::kill(-stray, SIGTERM);
      return;
    }
  }
  start(e);
}

void Supervisor::start(Entry& e) {
  const ProcessSpec& spec = e.spec;
  auto now = clock_.now();
  e.st.error.clear();
  e.killed = false;
  auto failStart = [&](const std::string& why) {
    e.st.state = ProcessState::Failed;
    e.st.error = why;
    e.st.pid = 0;
    e.next_start = now + options_.backoff_max / 10;
    log::warn("cannot start a process", {{"program", spec.argv.empty() ? "" : spec.argv[0]}, {"error", why}});
  };
  if (spec.argv.empty()) {
    failStart("no command");
    return;
  }
  if (::access(spec.argv[0].c_str(), X_OK) != 0) {
    failStart(spec.argv[0] + ": " + (errno == ENOENT ? "not found (install it, or point the agent at it: --bin-dir "
                                                       "or the program's path in agent.yaml)"
                                                     : std::string(std::strerror(errno))));
    return;
  }
  std::error_code ec;
  std::vector<fs::path> dirs = {spec.work_dir, spec.log_file.parent_path(), spec.pid_file.parent_path()};
  for (const auto& [source, target] : spec.bind_mounts) {
    dirs.push_back(source);
    dirs.push_back(target);  // (a mount point someone removed meanwhile comes back)
  }
  for (const fs::path& dir : dirs) {
    if (!dir.empty()) {
      fs::create_directories(dir, ec);
      if (ec) {
        failStart("cannot create " + dir.string() + ": " + ec.message());
        return;
      }
    }
  }
  // Everything the child needs is prepared before fork: after it, only async-signal-safe calls.
  std::vector<std::string> env;
  for (char** p = environ; p && *p; ++p) {
    if (inheritedVariable(*p)) {
      env.emplace_back(*p);
    }
  }
  for (const auto& add : spec.env) {
    std::string name = add.substr(0, add.find('=') + 1);
    std::erase_if(env, [&](const std::string& v) { return v.compare(0, name.size(), name) == 0; });
    env.push_back(add);
  }
  env.push_back(kPidFileVariable + spec.pid_file.string());  // (see findUnrecorded)
  env.push_back(kSpecVariable + e.hash);
  std::vector<char*> argv;
  for (const auto& a : spec.argv) {
    argv.push_back(const_cast<char*>(a.c_str()));
  }
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& v : env) {
    envp.push_back(const_cast<char*>(v.c_str()));
  }
  envp.push_back(nullptr);
  int log_fd = ::open(spec.log_file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (log_fd < 0) {
    failStart("cannot open the log " + spec.log_file.string() + ": " + std::strerror(errno));
    return;
  }
  int err_pipe[2];
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ::close(log_fd);
    failStart(std::string("pipe: ") + std::strerror(errno));
    return;
  }
  const char* dir = spec.work_dir.empty() ? "/" : spec.work_dir.c_str();
  // The control plane's cgroup (its limits), joined by the child before anything else.
  int cgroup_fd = spec.cgroup_procs.empty() ? -1 : ::open(spec.cgroup_procs.c_str(), O_WRONLY | O_CLOEXEC);
  if (!spec.cgroup_procs.empty() && cgroup_fd < 0) {
    ::close(log_fd);
    ::close(err_pipe[0]);
    ::close(err_pipe[1]);
    failStart("cannot open " + spec.cgroup_procs.string() + ": " + std::strerror(errno));
    return;
  }
  int ns_fd = spec.net_ns_fd;
  std::vector<std::pair<const char*, const char*>> mounts;
  for (const auto& [source, target] : spec.bind_mounts) {
    mounts.emplace_back(source.c_str(), target.c_str());
  }
  long open_max = ::sysconf(_SC_OPEN_MAX);
  int max_fd = open_max > 0 && open_max < 1 << 20 ? static_cast<int>(open_max) : 1 << 16;
  pid_t pid = ::fork();
  if (pid == 0) {
    // The child: its own session and group, the log as stdout/stderr, the namespace, a clean
    // signal state, then exec. A failure goes back through the pipe as (step, errno).
    int step = 0;
    int null_fd = -1;
    sigset_t none;
    sigemptyset(&none);
    if (cgroup_fd >= 0 && ::write(cgroup_fd, "0", 1) != 1) {
      step = 6;
    } else if (::setsid() < 0) {
      step = 1;
    } else if (ns_fd >= 0 && ::setns(ns_fd, CLONE_NEWNET) != 0) {
      step = 2;
    } else if (!mounts.empty() && (::unshare(CLONE_NEWNS) != 0 ||
                                   ::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0)) {
      step = 7;
    } else if (!bindAll(mounts)) {
      step = 8;
    } else if (::chdir(dir) != 0) {
      step = 3;
    } else if ((null_fd = ::open("/dev/null", O_RDONLY)) < 0 || ::dup2(null_fd, 0) < 0 || ::dup2(log_fd, 1) < 0 ||
               ::dup2(log_fd, 2) < 0) {
      step = 4;
    } else {
      // Nothing of the agent's (its listening sockets, the hub link, agent.db) leaks into the
      // program: mark every other descriptor close-on-exec (the error pipe already is).
      if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
        for (int fd = 3; fd < max_fd; ++fd) {
          ::fcntl(fd, F_SETFD, FD_CLOEXEC);
        }
      }
      for (int sig = 1; sig < NSIG; ++sig) {
        ::signal(sig, SIG_DFL);
      }
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::execve(argv[0], argv.data(), envp.data());
      step = 5;
    }
    int report[2] = {step, errno};
    (void)!::write(err_pipe[1], report, sizeof report);
    ::_exit(127);
  }
  ::close(log_fd);
  ::close(err_pipe[1]);
  if (cgroup_fd >= 0) {
    ::close(cgroup_fd);
  }
  if (pid < 0) {
    ::close(err_pipe[0]);
    failStart(std::string("fork: ") + std::strerror(errno));
    return;
  }
  int report[2] = {0, 0};
  ssize_t n;
  do {
    n = ::read(err_pipe[0], report, sizeof report);
  } while (n < 0 && errno == EINTR);
  ::close(err_pipe[0]);
  if (n == sizeof report) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    static const char* const kSteps[] = {"", "setsid", "entering the network namespace", "chdir to the working directory",
                                         "redirecting output", "exec", "joining the control plane's cgroup",
                                         "making a private mount namespace", "bind-mounting the control plane's directories"};
    failStart(std::string(kSteps[std::clamp(report[0], 0, 8)]) + " failed: " + std::strerror(report[1]));
    return;
  }
  e.child = true;
  e.st.pid = pid;
  e.st.adopted = false;
  e.st.started = now;
  e.st.state = ProcessState::Running;
  e.start_ticks = processStartTime(pid);
  Json pid_info = {{"pid", pid}, {"startTime", e.start_ticks}, {"spec", e.hash}, {"argv0", spec.argv[0]}};
  if (auto r = writeFileAtomic(spec.pid_file, pid_info.dump() + "\n", 0600); !r) {
    log::warn("cannot write a pid file; an agent restart will not adopt this process",
              {{"file", spec.pid_file.string()}, {"error", r.error().message}});
  }
  log::info("started", {{"program", spec.argv[0]}, {"pid", std::to_string(pid)}});
}

bool Supervisor::alive(Entry& e) {
  if (e.st.pid <= 0) {
    return false;
  }
  if (e.child) {
    int status = 0;
    pid_t r = ::waitpid(e.st.pid, &status, WNOHANG);
    if (r == 0) {
      return true;
    }
    if (r == e.st.pid) {
      e.st.last_exit = describeExit(status);
      // Whatever the program left in its group goes with it.
      ::kill(-e.st.pid, SIGKILL);
      return false;
    }
  }
  if (stillRuns(e.st.pid, e.start_ticks)) {
    return true;
  }
  if (!e.child) {
    e.st.last_exit = "exited (not a child of this agent: no exit status)";
  }
  return false;
}

void Supervisor::onExit(Entry& e, const std::string& key) {
  auto now = clock_.now();
  std::error_code ec;
  fs::remove(e.spec.pid_file, ec);
  if (!e.want_running) {
    e.st.state = ProcessState::Stopped;
    e.st.pid = 0;
    log::info("stopped", {{"process", key}, {"how", e.st.last_exit}});
    return;
  }
  if (now - e.st.started >= options_.reset_after) {
    e.st.consecutive_failures = 0;
  }
  ++e.st.consecutive_failures;
  auto delay = options_.backoff_initial;
  for (int i = 1; i < e.st.consecutive_failures && delay < options_.backoff_max; ++i) {
    delay *= 2;
  }
  delay = std::min(delay, options_.backoff_max);
  e.st.state = e.st.consecutive_failures >= options_.crash_loop_after ? ProcessState::CrashLoop
                                                                       : ProcessState::BackingOff;
  e.next_start = now + delay;
  e.st.pid = 0;
  log::warn("process exited; restarting after a delay",
            {{"process", key}, {"how", e.st.last_exit}, {"delay_ms", std::to_string(delay.count())},
             {"consecutive_failures", std::to_string(e.st.consecutive_failures)}});
}

void Supervisor::tick() {
  auto now = clock_.now();
  for (auto it = entries_.begin(); it != entries_.end();) {
    Entry& e = it->second;
    switch (e.st.state) {
      case ProcessState::Running:
        if (!alive(e)) {
          onExit(e, it->first);
        }
        break;
      case ProcessState::BackingOff:
      case ProcessState::CrashLoop:
      case ProcessState::Failed:
        if (e.want_running && now >= e.next_start) {
          ++e.st.restarts;
          start(e);
        }
        break;
      case ProcessState::Stopping:
        if (!alive(e)) {
          std::error_code ec;
          fs::remove(e.spec.pid_file, ec);
          e.st.state = ProcessState::Stopped;
          e.st.pid = 0;
          log::info("stopped", {{"process", it->first}, {"how", e.st.last_exit}});
          if (e.want_running) {
            start(e);
          }
        } else if (now >= e.kill_at && !e.killed) {
          log::warn("did not stop within its grace period; killing", {{"process", it->first}});
          ::kill(-e.st.pid, SIGKILL);
          ::kill(e.st.pid, SIGKILL);
          e.killed = true;
        }
        break;
      case ProcessState::Stopped:
        break;
    }
    if (!e.spec.log_file.empty()) {
      rotate(e.spec.log_file);
    }
    if (e.st.state == ProcessState::Stopped && !e.want_running) {
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
}

void Supervisor::stop(const std::string& key, const std::optional<ProcessSpec>& spec) {
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    if (!spec) {
      return;
    }
    // Known only from its pid file, or not even there (an earlier agent started it and was
    // killed before recording it): adopt it to stop it.
    Entry& e = entries_[key];
    e.spec = *spec;
    e.hash = specHash(*spec);
    e.want_running = false;
    PidFile p = readPidFile(spec->pid_file);
    if (!stillRuns(p.pid, p.ticks) && !spec->argv.empty()) {
      if (pid_t stray = findUnrecorded(*spec).first; stray > 0) {
        p = PidFile{stray, processStartTime(stray), ""};
      }
    }
    if (stillRuns(p.pid, p.ticks)) {
      e.st.pid = p.pid;
      e.start_ticks = p.ticks;
      e.st.adopted = true;
      e.st.state = ProcessState::Stopping;
      e.kill_at = clock_.now() + spec->stop_grace;
      ::kill(-p.pid, SIGTERM);
    } else {
      std::error_code ec;
      fs::remove(spec->pid_file, ec);
      entries_.erase(key);
    }
    return;
  }
  Entry& e = it->second;
  e.want_running = false;
  if (e.st.state == ProcessState::Running) {
    e.st.state = ProcessState::Stopping;
    e.kill_at = clock_.now() + e.spec.stop_grace;
    e.killed = false;
    if (::kill(-e.st.pid, SIGTERM) != 0) {
      ::kill(e.st.pid, SIGTERM);
    }
  } else if (e.st.state != ProcessState::Stopping) {
    e.st.state = ProcessState::Stopped;
    entries_.erase(it);
  }
}

bool Supervisor::gone(const std::string& key) const {
  auto it = entries_.find(key);
  return it == entries_.end() || it->second.st.state == ProcessState::Stopped;
}

ProcessStatus Supervisor::status(const std::string& key) const {
  auto it = entries_.find(key);
  return it == entries_.end() ? ProcessStatus{} : it->second.st;
}

std::vector<std::string> Supervisor::keys() const {
  std::vector<std::string> out;
  for (const auto& [k, e] : entries_) {
    out.push_back(k);
  }
  return out;
}

void Supervisor::detachAll() { entries_.clear(); }

void Supervisor::rotate(const fs::path& log) {
  std::error_code ec;
  auto size = fs::file_size(log, ec);
  if (ec || size <= options_.log_max_bytes) {
    return;
  }
  auto numbered = [&](int i) {
    fs::path p = log;
    p += "." + std::to_string(i);
    return p;
  };
  fs::remove(numbered(options_.log_keep), ec);
  for (int i = options_.log_keep - 1; i >= 1; --i) {
    fs::rename(numbered(i), numbered(i + 1), ec);
  }
  if (options_.log_keep > 0) {
    fs::copy_file(log, numbered(1), fs::copy_options::overwrite_existing, ec);
    ::chmod(numbered(1).c_str(), 0600);
  }
  // The program writes with O_APPEND: after truncation its next line lands at the start.
  if (::truncate(log.c_str(), 0) != 0) {
    log::warn("cannot truncate a rotated log", {{"file", log.string()}, {"error", std::strerror(errno)}});
  }
}

Result<std::string> readLogTail(const fs::path& log_file, size_t max_bytes) {
  std::error_code ec;
  if (!fs::exists(log_file, ec)) {
    return fail("no log at " + log_file.string());
  }
  std::string all;
  for (int i = 9; i >= 1; --i) {
    fs::path p = log_file;
    p += "." + std::to_string(i);
    if (auto t = readFile(p); t) {
      all += t.value();
    }
  }
  auto cur = readFile(log_file);
  if (!cur) {
    return cur.error();
  }
  all += cur.value();
  if (all.size() > max_bytes) {
    all.erase(0, all.size() - max_bytes);
    if (auto nl = all.find('\n'); nl != std::string::npos) {
      all.erase(0, nl + 1);
    }
  }
  return all;
}

}  // namespace kflex::agent::runtime
