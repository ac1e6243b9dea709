// SPDX-License-Identifier: Apache-2.0
#include "agent/runtime/vcluster_runtime.hpp"

#include "shared/common/log.hpp"
#include "shared/common/util.hpp"
#include "shared/config/kubeconfig.hpp"
#include "shared/tls/pki.hpp"

namespace kflex::agent::runtime {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kRelease = "vcluster";
constexpr const char* kSecret = "vc-vcluster";
constexpr const char* kManager = "kflex-agent";
constexpr auto kRetry = std::chrono::seconds(5);
constexpr auto kPodDeadline = std::chrono::minutes(10);

Json meta(const std::string& name, const std::string& ns = "") {
  Json m = {{"name", name},
            {"labels", {{"app", "vcluster"}, {"release", kRelease}, {"app.kubernetes.io/managed-by", "kflex-agent"}}}};
  if (!ns.empty()) {
    m["namespace"] = ns;
  }
  return m;
}

Json service(const std::string& name, const std::string& ns, bool node_port, int port) {
  Json p = {{"name", "https"}, {"port", 443}, {"targetPort", 8443}, {"protocol", "TCP"}};
  if (node_port && port > 0) {
    p["nodePort"] = port;
  }
  return {{"apiVersion", "v1"},
          {"kind", "Service"},
          {"metadata", meta(name, ns)},
          {"spec", {{"type", node_port ? "NodePort" : "ClusterIP"},
                    {"ports", Json::array({p})},
                    {"selector", {{"app", "vcluster"}, {"release", kRelease}}}}}};
}

}  // namespace

std::vector<Json> VClusterRuntime::manifests(const std::string& name, const std::string& node, int node_port) {
  const std::string ns = name + "-system";
  Json ns_obj = {{"apiVersion", "v1"}, {"kind", "Namespace"},
                 {"metadata", {{"name", ns}, {"labels", {{"app.kubernetes.io/managed-by", "kflex-agent"},
                                                         {"kflex.kubestellar.org/control-plane", name}}}}}};
  Json sa = {{"apiVersion", "v1"}, {"kind", "ServiceAccount"}, {"metadata", meta("vc-vcluster", ns)}};
  Json role = {{"apiVersion", "rbac.authorization.k8s.io/v1"},
               {"kind", "Role"},
               {"metadata", meta("vcluster", ns)},
               {"rules", Json::array({{{"apiGroups", {""}},
                                       {"resources", {"configmaps", "secrets", "services", "pods", "pods/attach",
                                                      "pods/portforward", "pods/exec", "endpoints",
                                                      "persistentvolumeclaims"}},
                                       {"verbs", {"create", "delete", "patch", "update", "get", "list", "watch"}}},
                                      {{"apiGroups", {""}},
                                       {"resources", {"events", "pods/log"}},
                                       {"verbs", {"get", "list", "watch"}}},
                                      {{"apiGroups", {"apps"}},
                                       {"resources", {"statefulsets", "replicasets", "deployments"}},
                                       {"verbs", {"get", "list", "watch"}}}})}};
  Json binding = {{"apiVersion", "rbac.authorization.k8s.io/v1"},
                  {"kind", "RoleBinding"},
                  {"metadata", meta("vcluster", ns)},
                  {"roleRef", {{"apiGroup", "rbac.authorization.k8s.io"}, {"kind", "Role"}, {"name", "vcluster"}}},
                  {"subjects", Json::array({{{"kind", "ServiceAccount"}, {"name", "vc-vcluster"}, {"namespace", ns}}})}};
  // The two containers of the 0.16 chart: k3s as the virtual control plane, the syncer in front.
  std::string k3s = "/bin/k3s server --write-kubeconfig=/data/k3s-config/kube-config.yaml --data-dir=/data "
                    "--disable=traefik,servicelb,metrics-server,local-storage,coredns --disable-network-policy "
                    "--disable-agent --disable-cloud-controller --flannel-backend=none --disable-scheduler "
                    "--kube-controller-manager-arg=controllers=*,-nodeipam,-nodelifecycle,-persistentvolume-binder,"
                    "-attachdetach,-persistentvolume-expander,-cloud-node-lifecycle,-ttl "
                    "--kube-apiserver-arg=endpoint-reconciler-type=none --service-cidr=10.96.0.0/12 && true";
  Json syncer_args = Json::array({"--name=vcluster", "--kube-config=/data/k3s-config/kube-config.yaml",
                                  "--service-account=vc-workload-vcluster", "--leader-elect=false",
                                  "--out-kube-config-secret=" + std::string(kSecret), "--tls-san=vcluster." + ns,
                                  "--tls-san=vcluster." + ns + ".svc"});
  if (!node.empty()) {
    syncer_args.push_back("--tls-san=" + node);
    syncer_args.push_back("--out-kube-config-server=https://" + (node.find(':') != std::string::npos ? "[" + node + "]" : node) +
                          ":" + std::to_string(node_port));
  }
  Json data_mount = {{"name", "data"}, {"mountPath", "/data"}};
  Json sts = {{"apiVersion", "apps/v1"},
              {"kind", "StatefulSet"},
              {"metadata", meta("vcluster", ns)},
              {"spec",
               {{"serviceName", "vcluster"},
                {"replicas", 1},
                {"selector", {{"matchLabels", {{"app", "vcluster"}, {"release", kRelease}}}}},
                {"template",
                 {{"metadata", {{"labels", {{"app", "vcluster"}, {"release", kRelease}}}}},
                  {"spec",
                   {{"serviceAccountName", "vc-vcluster"},
                    {"terminationGracePeriodSeconds", 10},
                    {"containers",
                     Json::array({{{"name", "vcluster"},
                                   {"image", kVClusterK3sImage},
                                   {"command", {"/bin/sh"}},
                                   {"args", {"-c", k3s}},
                                   {"resources", {{"limits", {{"memory", "2Gi"}}}}},
                                   {"volumeMounts", Json::array({data_mount})}},
                                  {{"name", "syncer"},
                                   {"image", kVClusterSyncerImage},
                                   {"args", syncer_args},
                                   {"ports", Json::array({{{"name", "https"}, {"containerPort", 8443}}})},
                                   {"readinessProbe",
                                    {{"httpGet", {{"path", "/readyz"}, {"port", 8443}, {"scheme", "HTTPS"}}}}},
                                   {"resources", {{"requests", {{"cpu", "200m"}, {"memory", "256Mi"}}}}},
                                   {"volumeMounts", Json::array({data_mount})}}})},
                    {"volumes", Json::array({{{"name", "data"}, {"emptyDir", Json::object()}}})}}}}}}}};
  return {ns_obj, sa, role, binding, service("vcluster", ns, false, 0), service("vcluster-nodeport", ns, true, node_port),
          sts};
}

// Everything the runtime's coroutines share: they hold it, so a runtime destroyed meanwhile
// leaves them nothing dangling.
struct VClusterRuntime::State {
  RuntimeEnv& env;
  std::string name;
  std::string ns;
  fs::path dir;
  bool installing = false;    // install() runs
  bool uninstalling = false;  // uninstall() runs
  bool removing = false;
  bool removed = false;
  std::string problem;     // Synced=False message, "" when fine
  std::string phase = "waiting for the vCluster to be installed";
  std::string kubeconfig;  // as the syncer wrote it
  std::string incluster;
  std::unique_ptr<kube::Client> cluster;  // the cluster near the agent
  std::unique_ptr<kube::Client> vcluster;
  bool ready = false;
  std::string ready_message = "the vCluster is being installed";
  std::chrono::steady_clock::time_point next{};

  State(RuntimeEnv& e, std::string n) : env(e), name(std::move(n)), ns(name + "-system"), dir(e.cp_root / name) {}

  Result<kube::Client*> clusterClient() {
    if (!env.config.cluster) {
      return fail("this agent has no cluster to run vClusters in: set cluster_kubeconfig in agent.yaml (or "
                  "--cluster-kubeconfig) to a kubeconfig of a cluster near it, or place vcluster control planes on "
                  "an agent that has one");
    }
    if (!cluster) {
      auto c = kube::Client::create(*env.config.cluster, std::chrono::seconds(15));
      if (!c) {
        return c.error();
      }
      cluster = std::move(c.value());
    }
    return cluster.get();
  }

  // The node address node ports are reached at: configured, else the cluster's API host.
  std::string node() const {
    if (!env.config.cluster_node.empty()) {
      return env.config.cluster_node;
    }
    std::string host;
    std::string port;
    if (env.config.cluster && net_client::splitHttpsUrl(env.config.cluster->server, host, port)) {
      return host;
    }
    return "";
  }
};

namespace {

// Installs (or checks) the vCluster; fills s->kubeconfig when its kubeconfig is there.
net::awaitable<void> install(std::shared_ptr<VClusterRuntime::State> s) {
  auto client = s->clusterClient();
  if (!client) {
    s->problem = client.error().message;
    co_return;
  }
  kube::Client& c = *client.value();
  // The node port first (kept when the service exists), so that the syncer's kubeconfig names it.
  int node_port = 0;
  // (References named before each co_await: GCC 12 destroys an aggregate temporary built inside
  // a co_await expression twice.)
  const kube::ObjectRef node_svc{"v1", "Service", s->ns, "vcluster-nodeport"};
  const kube::ObjectRef sts_ref{"apps/v1", "StatefulSet", s->ns, "vcluster"};
  const kube::ObjectRef secret_ref{"v1", "Secret", s->ns, kSecret};
  auto existing = co_await c.get(node_svc);
  if (existing) {
    const Json& ports = (*existing)["spec"]["ports"];
    node_port = ports.is_array() && !ports.empty() ? ports[0].value("nodePort", 0) : 0;
  }
  auto objects = VClusterRuntime::manifests(s->name, s->node(), node_port);
  for (auto& obj : objects) {
    bool is_sts = obj.value("kind", "") == "StatefulSet";
    if (is_sts && node_port == 0) {
      // The service was just made: read the port it got, then tell the syncer.
      auto svc = co_await c.get(node_svc);
      const Json ports = svc ? (*svc)["spec"].value("ports", Json::array()) : Json::array();
      node_port = ports.empty() ? 0 : ports[0].value("nodePort", 0);
      if (node_port == 0) {
        s->problem = "service " + s->ns + "/vcluster-nodeport has no node port: the cluster must allocate NodePorts";
        co_return;
      }
      obj = VClusterRuntime::manifests(s->name, s->node(), node_port).back();
    }
    auto r = co_await c.apply(obj, kManager);
    if (!r) {
      s->problem = "installing the vCluster in " + c.server() + ": " + r.error().message;
      co_return;
    }
  }
  s->problem.clear();
  s->phase = "waiting for the vCluster's pod";
  // (Each wait ends early when the control plane is being deleted meanwhile.)
  std::function<bool(const Json&)> running = [s](const Json& sts) {
    return s->removing || (sts.is_object() && sts.value("status", Json::object()).value("readyReplicas", 0) >= 1);
  };
  auto sts = co_await c.waitFor(sts_ref, running,
                                std::chrono::steady_clock::now() + kPodDeadline);
  if (s->removing) {
    co_return;
  }
  if (!sts) {
    s->problem = "the vCluster's pod did not become ready: " + sts.error().message;
    co_return;
  }
  s->phase = "waiting for the vCluster's kubeconfig";
  std::function<bool(const Json&)> written = [s](const Json& secret) {
    return s->removing || (secret.is_object() && !secret.value("data", Json::object()).value("config", "").empty());
  };
  auto secret = co_await c.waitFor(secret_ref, written,
                                   std::chrono::steady_clock::now() + std::chrono::minutes(2));
  if (s->removing) {
    co_return;
  }
  if (!secret) {
    s->problem = "the vCluster wrote no kubeconfig (secret " + s->ns + "/" + kSecret + "): " + secret.error().message;
    co_return;
  }
  auto text = base64Decode((*secret)["data"].value("config", ""));
  auto kc = text ? config::Kubeconfig::parse(text.value(), "the vCluster's kubeconfig")
                 : Result<config::Kubeconfig>(text.error());
  auto access = kc ? kc->access() : Result<config::ClusterAccess>(kc.error());
  if (!access) {
    s->problem = access.error().message;
    co_return;
  }
  // In the cluster: the vcluster service, as KubeFlex writes config-incluster.
  config::ClusterAccess in = access.value();
  in.server = "https://vcluster." + s->ns;
  config::Kubeconfig in_kc;
  in_kc.setAccess(s->name, in);
  in_kc.setCurrentContext(s->name);
  auto client_vc = kube::Client::create(access.value(), std::chrono::seconds(5));
  if (!client_vc) {
    s->problem = client_vc.error().message;
    co_return;
  }
  s->vcluster = std::move(client_vc.value());
  s->kubeconfig = text.value();
  s->incluster = in_kc.toYaml();
  s->phase = "the vCluster is installed";
}

net::awaitable<void> uninstall(std::shared_ptr<VClusterRuntime::State> s) {
  auto client = s->clusterClient();
  if (!client) {
    // Nothing can have been installed without a cluster.
    s->removed = true;
    co_return;
  }
  kube::Client& c = *client.value();
  const kube::ObjectRef ns_ref{"v1", "Namespace", "", s->ns};
  auto r = co_await c.remove(ns_ref);
  if (!r) {
    s->problem = "removing namespace " + s->ns + ": " + r.error().message;
    co_return;
  }
  std::function<bool(const Json&)> gone = [](const Json& obj) { return obj.is_null(); };
  auto w = co_await c.waitFor(ns_ref, gone, std::chrono::steady_clock::now() + kPodDeadline);
  if (!w) {
    s->problem = "namespace " + s->ns + " is not gone yet: " + w.error().message;
    co_return;
  }
  s->removed = true;
}

void spawn(const std::shared_ptr<VClusterRuntime::State>& s, bool VClusterRuntime::State::*busy,
           net::awaitable<void> (*work)(std::shared_ptr<VClusterRuntime::State>)) {
  if ((*s).*busy) {
    return;
  }
  (*s).*busy = true;
  net::co_spawn(s->env.executor, work(s), [s, busy](std::exception_ptr e) {
    (*s).*busy = false;
    s->next = std::chrono::steady_clock::now() + kRetry;
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        s->problem = std::string("internal error: ") + ex.what();
      }
    }
  });
}

}  // namespace

VClusterRuntime::VClusterRuntime(RuntimeEnv& env, std::string name) : s_(std::make_shared<State>(env, std::move(name))) {}

VClusterRuntime::~VClusterRuntime() = default;

void VClusterRuntime::ensure(const Json&) {
  if (s_->removing) {
    return;
  }
  // The folder marks the control plane as this agent's vcluster (for clean-up after a restart).
  std::error_code ec;
  fs::create_directories(s_->dir, ec);
  if (!fs::exists(s_->dir / "vcluster", ec)) {
    writeFileAtomic(s_->dir / "vcluster", s_->ns + "\n", 0600);
  }
  if (s_->kubeconfig.empty() && !s_->installing && std::chrono::steady_clock::now() >= s_->next) {
    spawn(s_, &State::installing, install);
  }
}

net::awaitable<void> VClusterRuntime::probe() {
  auto s = s_;
  if (s->removing || !s->vcluster) {
    co_return;
  }
  auto r = co_await s->vcluster->getRaw("/readyz");
  s->ready = r.has_value();
  s->ready_message = r ? "the vCluster answers /readyz" : r.error().message;
}

bool VClusterRuntime::ready() const { return s_->ready; }

Json VClusterRuntime::observe() const {
  const State& s = *s_;
  Json synced = {{"type", "Synced"}};
  if (!s.problem.empty()) {
    synced.update({{"status", "False"}, {"reason", "ReconcileError"}, {"message", s.problem}});
  } else {
    synced.update({{"status", "True"}, {"reason", "ReconcileSuccess"},
                   {"message", s.phase + " (namespace " + s.ns + (s.cluster ? " of " + s.cluster->server() : "") + ")"}});
  }
  std::string reason = s.removing ? "Deleting" : s.ready ? "Available" : s.kubeconfig.empty() ? "Creating" : "Unavailable";
  Json ready = {{"type", "Ready"}, {"status", s.ready ? "True" : "False"}, {"reason", reason},
                {"message", s.kubeconfig.empty() && !s.removing ? s.phase : s.ready_message}};
  Json out = {{"conditions", Json::array({synced, ready})},
              {"components", Json::array({{{"name", "vcluster"},
                                           {"state", s.ready ? "Running" : s.kubeconfig.empty() ? "Starting" : "Unhealthy"},
                                           {"restarts", 0}}})}};
  if (s.vcluster) {
    out["endpoint"] = s.vcluster->server();
  }
  if (!s.kubeconfig.empty()) {
    out["kubeconfig"] = {{"secretName", kSecret}, {"data", {{"config", s.kubeconfig}, {"config-incluster", s.incluster}}}};
  }
  return out;
}

bool VClusterRuntime::remove() {
  if (!s_->removing) {
    s_->removing = true;
    s_->ready = false;
    s_->ready_message = "removing the vCluster's namespace " + s_->ns;
    s_->next = {};
  }
  if (s_->removed) {
    std::error_code ec;
    fs::remove_all(s_->dir, ec);
    return !ec;
  }
  if (!s_->uninstalling && std::chrono::steady_clock::now() >= s_->next) {
    spawn(s_, &State::uninstalling, uninstall);
  }
  return false;
}

}  // namespace kflex::agent::runtime
