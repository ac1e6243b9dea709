// SPDX-License-Identifier: Apache-2.0
#include "agent/host/cgroups.hpp"

#include <sys/statfs.h>
#include <unistd.h>

#include <fstream>

#include "shared/common/util.hpp"
#include "shared/model/control_plane_types.hpp"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

namespace kflex::agent::runtime {
namespace fs = std::filesystem;

namespace {

Result<void> writeValue(const fs::path& file, const std::string& value) {
  std::ofstream out(file);
  out << value;
  out.flush();
  if (!out) {
    return fail("cannot write \"" + value + "\" to " + file.string());
  }
  return {};
}

}  // namespace

Cgroups Cgroups::detect(const fs::path& root, const fs::path& self, bool check_fs) {
  Cgroups c;
  if (check_fs) {
    struct statfs st {};
    if (::statfs(root.c_str(), &st) != 0 || st.f_type != CGROUP2_SUPER_MAGIC) {
      c.problem_ = "cgroup v2 is not mounted at " + root.string() +
                   " (a cgroup v1 or hybrid host; boot with systemd.unified_cgroup_hierarchy=1 for limits)";
      return c;
    }
  }
  // "0::/system.slice/kflex-agent.service"
  auto text = readFile(self);
  std::string path;
  if (text) {
    for (const auto& line : split(text.value(), '\n')) {
      if (line.rfind("0::", 0) == 0) {
        path = line.substr(3);
      }
    }
  }
  if (path.empty()) {
    c.problem_ = "this process has no cgroup v2 path in " + self.string();
    return c;
  }
  fs::path own = root / fs::path(path).relative_path();
  // Already moved into <base>/agent by an earlier start of this agent?
  c.base_ = own.filename() == "agent" ? own.parent_path() : own;
  auto controllers = readFile(c.base_ / "cgroup.controllers");
  if (!controllers) {
    c.problem_ = "cannot read " + (c.base_ / "cgroup.controllers").string();
    return c;
  }
  for (const char* needed : {"memory", "cpu"}) {
    bool found = false;
    for (const auto& word : split(std::string(trim(controllers.value())), ' ')) {
      found = found || word == needed;
    }
    if (!found) {
      c.problem_ = std::string("the ") + needed + " controller is not delegated to " + c.base_.string() +
                   " (run the agent as its systemd unit, which sets Delegate=yes)";
      return c;
    }
  }
  if (::access(c.base_.c_str(), W_OK) != 0) {
    c.problem_ = c.base_.string() + " is not writable by the agent (not delegated: run it as its systemd unit)";
    return c;
  }
  return c;
}

Result<void> Cgroups::enable() {
  if (enabled_) {
    return {};
  }
  // No processes may stay in a cgroup whose controllers its children use: the agent moves to
  // <base>/agent (its children started since then are in their own cgroups or follow it).
  std::error_code ec;
  fs::create_directories(base_ / "agent", ec);
  if (ec) {
    return fail("cannot create " + (base_ / "agent").string() + ": " + ec.message());
  }
  auto procs = readFile(base_ / "cgroup.procs");
  if (procs) {
    for (const auto& pid : split(procs.value(), '\n')) {
      if (!trim(pid).empty()) {
        (void)writeValue(base_ / "agent" / "cgroup.procs", std::string(trim(pid)));
      }
    }
  }
  if (auto r = writeValue(base_ / "cgroup.subtree_control", "+memory +cpu"); !r) {
    return fail(r.error().message + " (are processes other than the agent's in " + base_.string() + "?)");
  }
  enabled_ = true;
  return {};
}

Result<fs::path> Cgroups::prepare(const std::string& name, const Limits& limits) {
  if (!available()) {
    return fail(problem_);
  }
  if (auto r = enable(); !r) {
    return r.error();
  }
  fs::path dir = base_ / ("cp-" + name);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return fail("cannot create " + dir.string() + ": " + ec.message());
  }
  std::string memory = limits.memory_bytes > 0 ? std::to_string(limits.memory_bytes) : "max";
  // cpu.max: "QUOTA PERIOD" in microseconds per 100 ms period.
  std::string cpu = limits.cpu_millis > 0 ? std::to_string(limits.cpu_millis * 100) + " 100000" : "max 100000";
  if (auto r = writeValue(dir / "memory.max", memory); !r) {
    return r.error();
  }
  if (auto r = writeValue(dir / "cpu.max", cpu); !r) {
    return r.error();
  }
  return dir / "cgroup.procs";
}

void Cgroups::remove(const std::string& name) {
  if (!available()) {
    return;
  }
  std::error_code ec;
  fs::path dir = base_ / ("cp-" + name);
  // A cgroup directory is removed with rmdir (its files are not real files), once it is empty.
  ::rmdir(dir.c_str());
  if (fs::exists(dir, ec) && !fs::exists(dir / "cgroup.events", ec)) {
    fs::remove_all(dir, ec);  // a plain directory (tests)
  }
}

Limits defaultLimits(const std::string& type) {
  const model::ControlPlaneType* t = model::findControlPlaneType(type);
  model::Resources r = t != nullptr ? t->default_limits : model::Resources{2000, int64_t(1024) << 20};
  return {r.memory_bytes, r.cpu_millis};
}

}  // namespace kflex::agent::runtime
