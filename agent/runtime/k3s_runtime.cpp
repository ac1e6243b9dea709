// SPDX-License-Identifier: Apache-2.0
#include "agent/runtime/k3s_runtime.hpp"

#include <sys/stat.h>

#include "agent/agent_state.hpp"
#include "agent/runtime/probe.hpp"
#include "shared/common/log.hpp"
#include "shared/config/kubeconfig.hpp"
#include "shared/common/util.hpp"
#include "shared/tls/pki.hpp"

namespace kflex::agent::runtime {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// Inside its own namespace a k3s server keeps its default port.
constexpr uint16_t kInnerPort = 6443;

}  // namespace

K3sRuntime::K3sRuntime(RuntimeEnv& env, std::string name)
    : env_(env), name_(std::move(name)), dir_(env.cp_root / name_) {}

namespace {
constexpr const char* kNodeAgentKey = "k3s/node-agent";  // the control plane running the kubelet
}  // namespace

K3sRuntime::~K3sRuntime() { net_.close(); }

std::vector<std::string> K3sRuntime::commandLine(bool dedicated, uint16_t port) const {
  const std::string& adv = env_.config.advertise_address;
  std::string listen = env_.isolate ? "127.0.0.1" : adv;
  std::vector<std::string> argv = {
      env_.program("k3s").string(),
      "server",
      "--data-dir", (dir_ / "k3s").string(),
      "--token-file", (dir_ / "token").string(),
      "--write-kubeconfig", (dir_ / "kubeconfig.yaml").string(),
      "--write-kubeconfig-mode", "0600",
      "--https-listen-port", std::to_string(env_.isolate ? kInnerPort : port),
      "--bind-address", listen,
      "--advertise-address", listen,
      "--tls-san", adv,
      "--tls-san", name_,
      // Control plane only, as KubeFlex's hosted control planes are: no add-ons, and no kubelet
      // unless this one runs the host's node agent.
      "--disable=traefik,servicelb,local-storage,metrics-server,coredns",
      "--disable-helm-controller",
      "--disable-network-policy",
      "--disable-cloud-controller",
  };
  if (!node_agent_) {
    argv.push_back("--disable-agent");
  }
  if (dedicated) {
    argv.push_back("--cluster-init");  // its own embedded etcd instead of SQLite
  }
  return argv;
}

ProcessSpec K3sRuntime::spec(bool dedicated) const {
  ProcessSpec s;
  s.argv = commandLine(dedicated, net_.port());
  s.work_dir = dir_;
  s.log_file = dir_ / "logs" / "k3s.log";
  s.pid_file = dir_ / "run" / "k3s.pid";
  s.net_ns_fd = net_.nsFd();
  s.cgroup_procs = cgroup_;
  s.stop_grace = std::chrono::seconds(15);
  return s;
}

Result<void> K3sRuntime::prepare() {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec || ::chmod(dir_.c_str(), 0700) != 0) {
    return fail("cannot create " + dir_.string() + ": " + (ec ? ec.message() : std::strerror(errno)));
  }
  fs::path token = dir_ / "token";
  if (!fs::exists(token, ec)) {
    if (auto r = writeFileAtomic(token, tls::randomAlnum(40) + "\n", 0600); !r) {
      return r.error();
    }
  }
  if (auto r = net_.prepare(env_, name_, dir_ / "run" / "k3s.pid", kInnerPort); !r) {
    return r;
  }
  cgroup_ = env_.joinCgroup(name_, "k3s");
  node_agent_ = claimNodeAgent();
  return {};
}

bool K3sRuntime::claimNodeAgent() {
  // Decided once per control plane and kept, so that an agent restart never changes (and so
  // restarts) a running k3s: the first k3s control plane made while nobody runs the host's
  // kubelet gets it.
  std::string mine = "cp/" + name_ + "/node-agent";
  if (auto decided = env_.state.get(mine); decided && !decided->empty()) {
    return *decided == "1";
  }
  bool claim = false;
  if (env_.config.k3s_node_agent) {
    std::string owner = env_.state.get(kNodeAgentKey).value_or("");
    std::error_code ec;
    claim = owner.empty() || owner == name_ || !fs::exists(env_.cp_root / owner, ec);
    if (claim) {
      (void)env_.state.set(kNodeAgentKey, name_);
    }
  }
  (void)env_.state.set(mine, claim ? "1" : "0");
  return claim;
}

void K3sRuntime::ensure(const Json& cp) {
  removing_ = false;
  dedicated_ = cp.value("spec", Json::object()).value("backend", "shared") == "dedicated";
  if (!prepared_) {
    if (auto r = prepare(); !r) {
      bool in_use = r.error().message.find("in use") != std::string::npos;
      problem_reason_ = in_use ? "PortInUse" : "ReconcileError";
      if (problem_ != r.error().message) {
        log::warn("cannot prepare a control plane", {{"controlPlane", name_}, {"error", r.error().message}});
      }
      problem_ = r.error().message;
      return;
    }
    prepared_ = true;
    problem_.clear();
  }
  env_.supervisor.ensure(key(), spec(dedicated_));
}

net::awaitable<void> K3sRuntime::probe() {
  auto st = env_.supervisor.status(key());
  if (!problem_.empty()) {
    ready_ = false;
    ready_reason_ = "Unavailable";
    ready_message_ = problem_;
    co_return;
  }
  if (st.state != ProcessState::Running) {
    ready_ = false;
    ready_reason_ = "Unavailable";
    ready_message_ = st.state == ProcessState::Failed
                         ? "k3s cannot start: " + st.error
                         : std::string("k3s exited (") + st.last_exit + "); " + toString(st.state) + ", restarting";
    co_return;
  }
  std::string endpoint = net_.endpoint(env_);
  // What the hub hands out: the kubeconfig k3s wrote, its server the advertised endpoint.
  std::error_code ec;
  auto mtime = fs::last_write_time(dir_ / "kubeconfig.yaml", ec);
  if (!ec && mtime != kubeconfig_time_) {
    if (auto kc = config::Kubeconfig::load(dir_ / "kubeconfig.yaml"); kc && kc->access()) {
      Json doc = kc->doc();
      for (auto& c : doc["clusters"]) {
        c["cluster"]["server"] = endpoint;
      }
      kubeconfig_ = doc.dump(2) + "\n";
      kubeconfig_time_ = mtime;
    }
  }
  auto result = co_await readyz_.run(dir_ / "kubeconfig.yaml", endpoint);
  ready_ = result.ready;
  ready_reason_ = result.ready ? "Available" : (result.reachable ? "Unavailable" : "Creating");
  ready_message_ = result.message;
}

Json K3sRuntime::observe() const {
  auto st = env_.supervisor.status(key());
  Json synced = {{"type", "Synced"}};
  if (!problem_.empty()) {
    synced.update({{"status", "False"}, {"reason", problem_reason_}, {"message", problem_}});
  } else if (st.state == ProcessState::Failed) {
    synced.update({{"status", "False"}, {"reason", "ReconcileError"}, {"message", "k3s cannot start: " + st.error}});
  } else {
    synced.update({{"status", "True"}, {"reason", "ReconcileSuccess"},
                   {"message", "k3s server supervised by the agent" +
                                   std::string(env_.isolate ? " in its own network namespace" : "") +
                                   (node_agent_ ? ", running this host's node agent (kubelet)" : "") +
                                   env_.limitsNote()}});
  }
  Json ready = {{"type", "Ready"},
                {"status", ready_ ? "True" : "False"},
                {"reason", ready_reason_},
                {"message", ready_ ? "the API server answers /readyz" : ready_message_}};
  Json component = {{"name", "k3s"}, {"state", toString(st.state)}, {"restarts", st.restarts}};
  if (!st.last_exit.empty()) {
    component["lastExit"] = st.last_exit;
  }
  Json out = {{"conditions", Json::array({synced, ready})}, {"components", Json::array({component})}};
  if (net_.prepared()) {
    out["endpoint"] = net_.endpoint(env_);
  }
  if (!kubeconfig_.empty()) {
    // As KubeFlex keeps a k3s control plane's: secret k3s-config, keys config and config-incluster
    // (a pod on this host reaches the control plane at the same advertised address).
    out["kubeconfig"] = {{"secretName", "k3s-config"}, {"data", {{"config", kubeconfig_}, {"config-incluster", kubeconfig_}}}};
  }
  return out;
}

void K3sRuntime::detach() { net_.close(); }

bool K3sRuntime::remove() {
  if (!removing_) {
    removing_ = true;
    ready_ = false;
    ready_reason_ = "Deleting";
    ready_message_ = "stopping k3s and removing its data";
    env_.supervisor.stop(key(), spec(dedicated_));
    net_.close();
  }
  if (!env_.supervisor.gone(key()) || runningPid(dir_ / "run" / "k3s.pid") > 0) {
    return false;
  }
  std::error_code ec;
  fs::remove_all(dir_, ec);
  if (env_.cgroups != nullptr) {
    env_.cgroups->remove(name_);
  }
  // The host's kubelet is free for the next k3s control plane made here.
  if (env_.state.get(kNodeAgentKey).value_or("") == name_) {
    (void)env_.state.set(kNodeAgentKey, "");
  }
  (void)env_.state.set("cp/" + name_ + "/node-agent", "");
  if (ec) {
    log::warn("cannot remove a control plane's data", {{"dir", dir_.string()}, {"error", ec.message()}});
    return false;
  }
  net_.forget(env_, name_);
  log::info("control plane removed", {{"controlPlane", name_}, {"dir", dir_.string()}});
  return true;
}

}  // namespace kflex::agent::runtime
