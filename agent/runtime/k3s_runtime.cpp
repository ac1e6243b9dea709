// SPDX-License-Identifier: Apache-2.0
#include "agent/runtime/k3s_runtime.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include "agent/host/ports.hpp"
#include "agent/host/versions.hpp"
#include "agent/runtime/probe.hpp"
#include "shared/common/log.hpp"
#include "shared/config/kubeconfig.hpp"
#include "shared/common/util.hpp"
#include "shared/tls/pki.hpp"
#include "shared/protocol/tunnel.hpp"

namespace kflex::agent::runtime {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// Inside its own namespace a k3s server keeps its default port.
constexpr uint16_t kInnerPort = 6443;
// Where k3s as root keeps its default config, kubeconfig and node password.
constexpr const char* kRancherConfigDir = "/etc/rancher";

}  // namespace

K3sRuntime::K3sRuntime(RuntimeEnv& env, ControlPlaneState state)
    : env_(env), state_(std::move(state)), name_(state_.name()), dir_(env.cp_root / name_) {}

K3sRuntime::~K3sRuntime() { net_.close(); }

std::vector<std::string> K3sRuntime::commandLine(bool dedicated, uint16_t port) const {
  const std::string& adv = env_.config.advertise_address;
  std::string listen = isolated_ ? "127.0.0.1" : adv;
  std::vector<std::string> argv = {
      env_.program("k3s").string(),
      "server",
      // Its own config file: k3s otherwise reads the host's /etc/rancher/k3s/config.yaml and
      // config.yaml.d/, whose server:, datastore-endpoint: or cluster-init: would join it to the
      // host's cluster.
      "--config", (dir_ / "k3s-config.yaml").string(),
      "--data-dir", (dir_ / "k3s").string(),
      "--token-file", (dir_ / "token").string(),
      "--write-kubeconfig", (dir_ / "kubeconfig.yaml").string(),
      "--write-kubeconfig-mode", "0600",
      "--https-listen-port", std::to_string(isolated_ ? kInnerPort : port),
      "--bind-address", listen,
      "--advertise-address", listen,
      "--tls-san", adv,
      "--tls-san", name_,
      // The name it is reached by through the hub's tunnel (docs/dev/tunnel.md): k3s 1.28 and later
      // serve only listed SANs (--tls-san-security), not whatever SNI a client sends.
      "--tls-san", protocol::tunnel::tunnelHost(name_),
      // Control plane only, as KubeFlex's hosted control planes are: no add-ons, and no kubelet
      // unless this one runs the host's node agent.
      "--disable=traefik,servicelb,local-storage,metrics-server,coredns",
      "--disable-helm-controller",
      "--disable-network-policy",
      "--disable-cloud-controller",
  };
  if (!node_agent_) {
    argv.push_back("--disable-agent");
    // k3s looks up the host's IP at start unless given one, and exits when the namespace has no
    // default route (cli/server/server.go, util.GetHostnameAndIPs). Without a kubelet the node IP
    // only names the API server's address; and since that may be loopback, which the Endpoints
    // API refuses, the `kubernetes` Service's endpoints are not published (there are no pods
    // here to use them), as vCluster runs k3s.
    if (tls::isIpAddress(listen)) {
      argv.insert(argv.end(), {"--node-ip", listen});
    }
    argv.push_back("--kube-apiserver-arg=endpoint-reconciler-type=none");
  }
  if (!isolated_) {
    // On the host's network the controller manager's and scheduler's fixed ports (10257, 10259)
    // are this control plane's own.
    argv.push_back("--kube-controller-manager-arg=secure-port=" + std::to_string(kcm_port_));
    argv.push_back("--kube-scheduler-arg=secure-port=" + std::to_string(scheduler_port_));
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
  // As root, k3s replaces /etc/rancher/k3s/k3s.yaml with a link to its kubeconfig and writes
  // /etc/rancher/node/password (server/server.go writeKubeConfig, writeConfigSymlink): on a host
  // that runs k3s itself that is the host cluster's admin kubeconfig. Each control plane gets its
  // own /etc/rancher in a mount namespace of its own; without root (no mount namespaces) k3s
  // links $HOME/.kube/k3s.yaml instead, so HOME is its directory.
  s.env = {"HOME=" + dir_.string()};
  if (::geteuid() == 0 && !node_agent_) {
    // (Not for the one with the kubelet: pods' volume mounts must reach the host, and its
    // containerd outlives a k3s restart. It shares the host's /etc/rancher; checkFixedPorts
    // makes sure no k3s of the host's own is there.)
    s.bind_mounts = {{dir_ / "etc-rancher", kRancherConfigDir}};
  }
  return s;
}

Result<void> K3sRuntime::checkFixedPorts() const {
  if (isolated_ || runningPid(dir_ / "run" / "k3s.pid") > 0) {
    return {};  // its own namespace, or it runs already and holds them itself
  }
  if (dedicated_ && embeddedEtcdPortsTaken()) {
    return fail(Errc::Conflict,
                "backend dedicated runs k3s's embedded etcd, whose ports 2379-2382 are fixed, and another program "
                "holds them (another dedicated control plane on this host's network?): on the host's network a host "
                "runs one; use backend shared, or isolate_control_planes (root)");
  }
  if (node_agent_) {
    if (nodeAgentResourcesTaken()) {
      return fail(Errc::Conflict,
                  "the host's node agent (kubelet) needs port 10250, 10248, 8472/udp and /run/k3s/containerd, which "
                  "are fixed and in use on this host (a kubelet or k3s of its own?): a host runs one kubelet; set "
                  "k3s_node_agent: false in agent.yaml, or stop the other");
    }
    // It shares the host's /etc/rancher (a kubelet's mounts must reach the host), where k3s as
    // root replaces k3s.yaml: only a link of an earlier control plane of this agent may be there.
    std::error_code ec;
    fs::path host_kubeconfig = fs::path(kRancherConfigDir) / "k3s" / "k3s.yaml";
    if (::geteuid() == 0 && fs::exists(host_kubeconfig, ec)) {  // (a dangling link names nothing)
      fs::path target = fs::is_symlink(host_kubeconfig, ec) ? fs::read_symlink(host_kubeconfig, ec) : fs::path();
      if (target.empty() || target.string().rfind(env_.cp_root.string() + "/", 0) != 0) {
        return fail("this host has a k3s of its own (" + host_kubeconfig.string() + " exists), whose kubeconfig the "
                    "node agent's k3s would replace: a host runs one kubelet; set k3s_node_agent: false in "
                    "agent.yaml, or remove that k3s");
      }
    }
  }
  return {};
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
  // An explicit --config that is missing is fatal in k3s before v1.29.7: it always exists.
  if (!fs::exists(dir_ / "k3s-config.yaml", ec)) {
    if (auto r = writeFileAtomic(dir_ / "k3s-config.yaml",
                                 "# This control plane's own k3s config file (kflex-agent passes --config), so that\n"
                                 "# the host's /etc/rancher/k3s/config.yaml is not read. Its flags are on the command line.\n",
                                 0600);
        !r) {
      return r.error();
    }
  }
  if (::geteuid() == 0) {
    for (const fs::path& d : {dir_ / "etc-rancher" / "k3s", fs::path(kRancherConfigDir)}) {
      fs::create_directories(d, ec);  // its own, and the mount point (k3s as root makes it anyway)
      if (ec) {
        return fail("cannot create " + d.string() + ": " + ec.message());
      }
    }
  }
  // The node agent is decided first: a kubelet needs the host's network (its node IP, image pulls,
  // flannel), so that control plane runs there even when the others are isolated.
  node_agent_ = claimNodeAgent();
  isolated_ = env_.isolate && !node_agent_;
  if (auto r = net_.prepare(env_, state_, dir_ / "run" / "k3s.pid", kInnerPort, isolated_, true); !r) {
    return r;
  }
  if (!isolated_) {
    auto kcm = persistentPort(state_, PortRole::ControllerManager, "127.0.0.1");
    auto scheduler = persistentPort(state_, PortRole::Scheduler, "127.0.0.1");
    if (!kcm || !scheduler) {
      return fail("cannot pick ports for k3s's controller manager and scheduler");
    }
    kcm_port_ = *kcm;
    scheduler_port_ = *scheduler;
  }
  if (auto r = checkFixedPorts(); !r) {
    return r;
  }
  cgroup_ = env_.joinCgroup(name_, "k3s");
  return {};
}

bool K3sRuntime::claimNodeAgent() {
  // Decided once per control plane and kept, so that an agent restart never changes (and so
  // restarts) a running k3s: the first k3s control plane made while nobody runs the host's
  // kubelet gets it.
  if (auto decided = state_.nodeAgent()) {
    return *decided;
  }
  bool claim = false;
  if (env_.config.k3s_node_agent) {
    std::string owner = state_.nodeAgentHolder();
    std::error_code ec;
    claim = owner.empty() || owner == name_ || !fs::exists(env_.cp_root / owner, ec);
    if (claim) {
      (void)state_.setNodeAgentHolder(name_);
    }
  }
  (void)state_.setNodeAgent(claim);
  return claim;
}

void K3sRuntime::ensure(const Json& cp) {
  removing_ = false;
  dedicated_ = cp.value("spec", Json::object()).value("backend", "shared") == "dedicated";
  if (!prepared_) {
    if (auto v = checkProgram("k3s", env_.program("k3s")); !v) {
      if (problem_ != v.error().message) {
        log::warn("cannot run a control plane", {{"controlPlane", name_}, {"error", v.error().message}});
      }
      problem_reason_ = "UnsupportedVersion";
      problem_ = v.error().message;
      return;
    }
    if (auto r = prepare(); !r) {
      problem_reason_ = r.error().code == Errc::Conflict ? "PortInUse" : "ReconcileError";
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

protocol::StatusReport K3sRuntime::observe() const {
  auto st = env_.supervisor.status(key());
  protocol::ReportedCondition synced;
  if (!problem_.empty()) {
    synced = {"Synced", "False", problem_reason_, problem_};
  } else if (st.state == ProcessState::Failed) {
    synced = {"Synced", "False", "ReconcileError", "k3s cannot start: " + st.error};
  } else {
    synced = {"Synced", "True", "ReconcileSuccess",
              "k3s server supervised by the agent" +
                  std::string(isolated_ ? " in its own network namespace" : " on the host's network") +
                  (node_agent_ ? ", running this host's node agent (kubelet)" : "") + env_.limitsNote()};
  }
  protocol::StatusReport out;
  out.conditions = {synced,
                    {"Ready", ready_ ? "True" : "False", ready_reason_,
                     ready_ ? "the API server answers /readyz" : ready_message_}};
  out.components = {componentOf("k3s", st)};
  if (net_.prepared()) {
    out.endpoint = net_.endpoint(env_);
  }
  if (!kubeconfig_.empty()) {
    // As KubeFlex keeps a k3s control plane's: secret k3s-config, keys config and config-incluster
    // (a pod on this host reaches the control plane at the same advertised address).
    out.kubeconfig = {"k3s-config", {{"config", kubeconfig_}, {"config-incluster", kubeconfig_}}};
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
  // The host's kubelet is free for the next k3s control plane made here, and the host's
  // /etc/rancher/k3s/k3s.yaml no longer names its kubeconfig.
  fs::path host_kubeconfig = fs::path(kRancherConfigDir) / "k3s" / "k3s.yaml";
  std::error_code link_ec;
  if (node_agent_ && fs::is_symlink(host_kubeconfig, link_ec) &&
      fs::read_symlink(host_kubeconfig, link_ec) == dir_ / "kubeconfig.yaml") {
    fs::remove(host_kubeconfig, link_ec);
  }
  if (state_.nodeAgentHolder() == name_) {
    (void)state_.setNodeAgentHolder("");
  }
  (void)state_.setNodeAgent(std::nullopt);
  for (PortRole role : {PortRole::ControllerManager, PortRole::Scheduler}) {
    (void)state_.setPort(role, 0);
  }
  if (ec) {
    log::warn("cannot remove a control plane's data", {{"dir", dir_.string()}, {"error", ec.message()}});
    return false;
  }
  net_.forget(state_);
  log::info("control plane removed", {{"controlPlane", name_}, {"dir", dir_.string()}});
  return true;
}

}  // namespace kflex::agent::runtime
