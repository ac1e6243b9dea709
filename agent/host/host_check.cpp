// SPDX-License-Identifier: Apache-2.0
#include "agent/host/host_check.hpp"

#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <iomanip>

#include <nlohmann/json.hpp>

#include "agent/host/cgroups.hpp"
#include "agent/host/netns.hpp"
#include "agent/host/ports.hpp"
#include "agent/host/versions.hpp"
#include "shared/common/util.hpp"
#include "shared/config/kubeconfig.hpp"
#include "shared/kube/client.hpp"
#include "shared/store/postgres.hpp"

namespace kflex::agent {
namespace {

namespace fs = std::filesystem;
using Verdict = HostCheck::Verdict;

// Whether a child can have a mount namespace of its own (what keeps k3s off the host's
// /etc/rancher). Tried in a forked child, so this process keeps its own.
bool mountNamespacesWork() {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::_exit(::unshare(CLONE_NEWNS) == 0 ? 0 : 1);
  }
  int status = 0;
  return pid > 0 && ::waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

HostCheck programCheck(const AgentConfig& cfg, const std::string& name, const std::string& needed_by, bool wanted,
                       const std::string& why_not) {
  fs::path path = fs::absolute(runtime::programPath(cfg.bin_dir, cfg.programs, name));
  std::error_code ec;
  if (!wanted) {
    return {name, Verdict::Skip, needed_by + " control planes are off on this host (" + why_not + ")"};
  }
  if (!fs::exists(path, ec)) {
    return {name, Verdict::Warn,
            "not found at " + path.string() + ": " + needed_by + " control planes cannot run here (install it, or "
            "point the agent at it with --bin-dir or programs." + name + ")"};
  }
  auto version = runtime::readVersion(path);
  if (!version) {
    return {name, Verdict::Fail, version.error().message};
  }
  if (auto ok = runtime::checkSupported(name, path, version.value()); !ok) {
    return {name, Verdict::Fail, ok.error().message};
  }
  return {name, Verdict::Ok,
          version->text + " at " + path.string() + " (supported: " + runtime::supportedVersionsOf(name)->range + ")"};
}

HostCheck clusterCheck(const AgentConfig& cfg) {
  if (cfg.cluster_kubeconfig.empty()) {
    return {"cluster for vClusters", Verdict::Skip,
            "none (cluster_kubeconfig): vcluster control planes are off on this host"};
  }
  auto kc = config::Kubeconfig::load(cfg.cluster_kubeconfig);
  auto access = kc ? kc->access(cfg.cluster_context) : Result<config::ClusterAccess>(kc.error());
  if (!access) {
    return {"cluster for vClusters", Verdict::Fail, cfg.cluster_kubeconfig + ": " + access.error().message};
  }
  auto client = kube::Client::create(access.value(), std::chrono::seconds(5));
  if (!client) {
    return {"cluster for vClusters", Verdict::Fail, client.error().message};
  }
  net::io_context ioc;
  std::optional<kube::KubeResult<std::string>> answer;
  net::co_spawn(ioc, [&]() -> net::awaitable<void> { answer = co_await client.value()->getRaw("/version"); },
                net::detached);
  ioc.run();
  if (!answer || !*answer) {
    return {"cluster for vClusters", Verdict::Fail,
            access->server + " does not answer: " + (answer ? answer->error().message : std::string("no answer"))};
  }
  nlohmann::json v = nlohmann::json::parse(answer->value(), nullptr, false);
  std::string version = v.is_object() ? v.value("gitVersion", "") : "";
  return {"cluster for vClusters", Verdict::Ok,
          access->server + " answers" + (version.empty() ? "" : " (Kubernetes " + version + ")")};
}

HostCheck postgresCheck(const AgentConfig& cfg) {
  if (cfg.postgres_dsn.empty()) {
    return {"shared PostgreSQL", Verdict::Skip, "none (postgres_dsn): k8s control planes are off on this host"};
  }
  std::string password;
  if (!cfg.postgres_password_file.empty()) {
    auto pw = readFile(cfg.postgres_password_file);
    if (!pw) {
      return {"shared PostgreSQL", Verdict::Fail, "postgres_password_file: " + pw.error().message};
    }
    password = std::string(trim(pw.value()));
  }
  if (auto r = store::execute({cfg.postgres_dsn, password}, "SELECT 1"); !r) {
    return {"shared PostgreSQL", Verdict::Fail, r.error().message};
  }
  return {"shared PostgreSQL", Verdict::Ok, store::redacted(cfg.postgres_dsn) + " answers"};
}

// The ports k3s cannot move, for control planes that run on the host's network.
std::vector<HostCheck> hostNetworkChecks(const AgentConfig& cfg, bool isolated) {
  std::vector<HostCheck> out;
  if (!isolated) {
    bool etcd = runtime::embeddedEtcdPortsTaken();
    out.push_back({"ports of k3s's embedded etcd", etcd ? Verdict::Warn : Verdict::Ok,
                   etcd ? "2379-2382 are in use: no k3s control plane with backend dedicated can run on this host's "
                          "network (use backend shared, or isolation as root)"
                        : "2379-2382 free: one k3s control plane with backend dedicated can run on this host's network"});
  }
  if (cfg.k3s_node_agent) {
    bool kubelet = runtime::nodeAgentResourcesTaken();
    out.push_back({"ports of the node agent", kubelet ? Verdict::Warn : Verdict::Ok,
                   kubelet ? "10250, 10248, 8472/udp or /run/k3s/containerd are in use (a kubelet or k3s of this "
                             "host's own?): no k3s control plane can run the node agent (k3s_node_agent) here"
                           : "10250, 10248, 8472/udp and /run/k3s/containerd free for the node agent (k3s_node_agent)"});
  }
  return out;
}

const char* verdictName(Verdict v) {
  switch (v) {
    case Verdict::Ok:
      return "ok";
    case Verdict::Warn:
      return "warn";
    case Verdict::Fail:
      return "fail";
    case Verdict::Skip:
      return "skip";
  }
  return "?";
}

}  // namespace

std::vector<HostCheck> checkHost(const AgentConfig& cfg) {
  std::vector<HostCheck> out;
  bool root = ::geteuid() == 0;
  out.push_back({"root", root ? Verdict::Ok : Verdict::Warn,
                 root ? "running as root"
                      : "not root: control planes share the host's network (no namespaces), run without limits, and "
                        "the node agent cannot run"});
  bool netns = runtime::NetNamespace::available();
  bool isolated = cfg.isolate && netns;
  if (!cfg.isolate) {
    out.push_back({"network namespaces", Verdict::Skip,
                   "isolate_control_planes is false: control planes share the host's network"});
  } else {
    out.push_back({"network namespaces", netns ? Verdict::Ok : Verdict::Warn,
                   netns ? "each control plane gets its own (isolate_control_planes)"
                         : "cannot be made here (needs root or CAP_SYS_ADMIN): control planes share the host's "
                           "network"});
  }
  if (root) {
    bool mnt = mountNamespacesWork();
    out.push_back({"mount namespaces", mnt ? Verdict::Ok : Verdict::Fail,
                   mnt ? "each k3s gets its own /etc/rancher (the host's k3s.yaml and config.yaml stay untouched)"
                       : "cannot be made: k3s control planes cannot start (they would replace the host's "
                         "/etc/rancher/k3s/k3s.yaml)"});
  }
  auto cgroups = runtime::Cgroups::detect();
  out.push_back({"cgroup v2 delegation", cgroups.available() ? Verdict::Ok : Verdict::Warn,
                 cgroups.available() ? "control planes get memory and CPU limits under " + cgroups.base().string()
                                     : "no resource limits: " + cgroups.problem()});
  out.push_back(programCheck(cfg, "k3s", "k3s", true, ""));
  for (const char* p : {"kine", "kube-apiserver", "kube-controller-manager"}) {
    out.push_back(programCheck(cfg, p, "k8s", !cfg.postgres_dsn.empty(), "no postgres_dsn"));
  }
  out.push_back(postgresCheck(cfg));
  out.push_back(clusterCheck(cfg));
  if (cfg.advertise_address.empty()) {
    out.push_back({"advertise address", Verdict::Skip,
                   "chosen at run: the address this host reaches the hub from (advertise_address to choose)"});
  } else {
    bool ours = runtime::portFree(cfg.advertise_address, 0);
    out.push_back({"advertise address", ours ? Verdict::Ok : Verdict::Fail,
                   ours ? cfg.advertise_address + " is an address of this host"
                        : cfg.advertise_address + " is not an address of this host: control planes cannot listen "
                                                  "on it (advertise_address)"});
  }
  for (auto& c : hostNetworkChecks(cfg, isolated)) {
    out.push_back(std::move(c));
  }
  return out;
}

int printHostCheck(const AgentConfig& cfg, bool json, std::ostream& out) {
  auto checks = checkHost(cfg);
  int failed = 0;
  int warned = 0;
  for (const auto& c : checks) {
    failed += c.verdict == Verdict::Fail ? 1 : 0;
    warned += c.verdict == Verdict::Warn ? 1 : 0;
  }
  if (json) {
    nlohmann::json doc = {{"checks", nlohmann::json::array()}, {"failed", failed}, {"warnings", warned}};
    for (const auto& c : checks) {
      doc["checks"].push_back({{"item", c.item}, {"verdict", verdictName(c.verdict)}, {"detail", c.detail}});
    }
    out << doc.dump(2) << "\n";
  } else {
    for (const auto& c : checks) {
      std::string tag = verdictName(c.verdict);
      for (auto& ch : tag) {
        ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      }
      out << std::left << std::setw(6) << tag << std::setw(26) << c.item << c.detail << "\n";
    }
    out << checks.size() << " checks: " << failed << " failed, " << warned << " warnings\n";
  }
  return failed == 0 ? 0 : 1;
}

}  // namespace kflex::agent
