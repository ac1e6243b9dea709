// SPDX-License-Identifier: Apache-2.0
#include "agent/host/versions.hpp"

#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <regex>
#include <tuple>

namespace kflex::agent::runtime {
namespace {

namespace fs = std::filesystem;

// Runs argv with stdout and stderr to a pipe and no stdin; the output, or why there is none.
Result<std::string> outputOf(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) {
    return fail(std::string("pipe: ") + std::strerror(errno));
  }
  std::vector<char*> args;
  for (const auto& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) {
      ::dup2(null_fd, 0);
    }
    ::dup2(out[1], 1);
    ::dup2(out[1], 2);
    ::close_range(3, ~0U, 0);  // nothing of the agent's (sockets, agent.db) reaches the program
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(out[1]);
  if (pid < 0) {
    ::close(out[0]);
    return fail(std::string("fork: ") + std::strerror(errno));
  }
  std::string text;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool timed_out = false;
  char buf[4096];
  while (text.size() < 65536) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{out[0], POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      timed_out = true;  // (a poll error too: the child is ended either way)
      break;
    }
    ssize_t got = ::read(out[0], buf, sizeof buf);
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got <= 0) {
      break;
    }
    text.append(buf, static_cast<size_t>(got));
  }
  ::close(out[0]);
  if (timed_out) {
    ::kill(pid, SIGKILL);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    return fail("gave no answer within " + std::to_string(timeout.count()) + " ms");
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127 && text.empty()) {
    return fail("cannot be run");
  }
  return text;
}

}  // namespace

const std::vector<SupportedVersions>& supportedVersions() {
  static const std::vector<SupportedVersions> kAll = {
      {"k3s", {1, 28, 0, ""}, {1, 31, 0, ""}, "v1.28 to v1.30"},
      {"kine", {0, 11, 4, ""}, {0, 17, 0, ""}, "v0.11.4 to v0.16"},
      {"kube-apiserver", {1, 28, 0, ""}, {1, 34, 0, ""}, "v1.28 to v1.33"},
      {"kube-controller-manager", {1, 28, 0, ""}, {1, 34, 0, ""}, "v1.28 to v1.33"},
  };
  return kAll;
}

const SupportedVersions* supportedVersionsOf(const std::string& name) {
  for (const auto& s : supportedVersions()) {
    if (s.program == name) {
      return &s;
    }
  }
  return nullptr;
}

fs::path programPath(const fs::path& bin_dir, const std::map<std::string, std::string>& programs,
                     const std::string& name) {
  auto it = programs.find(name);
  return it != programs.end() && !it->second.empty() ? fs::path(it->second) : bin_dir / name;
}

Result<Version> parseVersion(const std::string& output) {
  static const std::regex kVersion(R"(v(\d+)\.(\d+)\.(\d+)[^\s]*)");
  std::smatch m;
  if (!std::regex_search(output, m, kVersion)) {
    std::string first = output.substr(0, output.find('\n')).substr(0, 120);
    return fail("no version in its --version output (\"" + first + "\")");
  }
  return Version{std::stoi(m[1]), std::stoi(m[2]), std::stoi(m[3]), m[0]};
}

Result<Version> readVersion(const fs::path& program, std::chrono::milliseconds timeout) {
  auto out = outputOf({program.string(), "--version"}, timeout);
  if (!out) {
    return fail(program.string() + " --version " + out.error().message);
  }
  auto v = parseVersion(out.value());
  if (!v) {
    return fail(program.string() + ": " + v.error().message);
  }
  return v;
}

Result<void> checkSupported(const std::string& name, const fs::path& path, const Version& version) {
  const SupportedVersions* s = supportedVersionsOf(name);
  if (s != nullptr && (version < s->oldest || !(version < s->too_new))) {
    return fail(name + " " + version.text + " (" + path.string() + ") is not a release kflex-agent supports: it needs " +
                name + " " + s->range + " (docs/launch-contract.md); install one, or point the agent at it with " +
                "--bin-dir or programs." + name);
  }
  return {};
}

Result<void> checkProgram(const std::string& name, const fs::path& path) {
  static std::mutex mutex;
  static std::map<std::string, std::pair<fs::file_time_type, Result<void>>> known;
  std::error_code ec;
  auto mtime = fs::last_write_time(path, ec);
  if (ec) {
    return {};  // missing: its start says so, with what to do
  }
  {
    std::lock_guard lock(mutex);
    if (auto it = known.find(path.string()); it != known.end() && it->second.first == mtime) {
      return it->second.second;
    }
  }
  auto version = readVersion(path);
  if (!version) {
    return version.error();  // (not remembered: a slow start under load is tried again)
  }
  Result<void> verdict = checkSupported(name, path, version.value());
  std::lock_guard lock(mutex);
  known.insert_or_assign(path.string(), std::make_pair(mtime, verdict));
  return verdict;
}

}  // namespace kflex::agent::runtime
