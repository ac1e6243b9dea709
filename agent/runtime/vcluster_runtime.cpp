// SPDX-License-Identifier: Apache-2.0
#include "agent/runtime/vcluster_runtime.hpp"

#include <cstring>
#include <regex>

#include "shared/common/log.hpp"
#include "shared/common/util.hpp"
#include "shared/config/kubeconfig.hpp"
#include "shared/tls/pki.hpp"
#include "shared/protocol/tunnel.hpp"

namespace kflex::agent::runtime {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kRelease = "vcluster";
constexpr const char* kSecret = "vc-vcluster";
constexpr const char* kManager = "kflex-agent";
constexpr auto kRetry = std::chrono::seconds(5);
constexpr auto kPodDeadline = std::chrono::minutes(10);
// What vCluster 0.16 falls back to when the host's range cannot be read (servicecidr.go).
constexpr const char* kFallbackServiceCidr = "10.96.0.0/12";
// The ClusterIP the range probe asks for: outside every range (as vCluster 0.16 probes).
constexpr const char* kProbeClusterIp = "4.4.4.4";
constexpr const char* kRangeMarker = "The range of valid IPs is ";
// The kubeconfig secret is read again this often (the syncer rewrites it at every start), and
// more often while /readyz fails.
constexpr auto kSecretRecheck = std::chrono::seconds(30);
constexpr auto kSecretRecheckNotReady = std::chrono::seconds(5);

// CoreDNS for the virtual cluster, as the 0.16 chart hands it to the syncer (ConfigMap
// vcluster-coredns, key coredns.yaml, mounted at /manifests/coredns): the syncer fills in
// {{.IMAGE}}, {{.RUN_AS_USER}}, {{.RUN_AS_GROUP}} and applies it in the virtual cluster. Its
// kube-dns Service, synced to the host, is what the syncer waits for before it syncs any pod.
constexpr const char* kCoreDnsManifests = R"(apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:coredns
  labels: {kubernetes.io/bootstrapping: rbac-defaults}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: system:coredns
  labels: {kubernetes.io/bootstrapping: rbac-defaults}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:coredns}
subjects:
- {kind: ServiceAccount, name: coredns, namespace: kube-system}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:1053 {
        errors
        health
        ready
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
        }
        prometheus :9153
        forward . /etc/resolv.conf
        cache 30
        loop
        reload
        loadbalance
    }
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: coredns
  namespace: kube-system
  labels: {k8s-app: kube-dns, kubernetes.io/name: CoreDNS}
spec:
  replicas: 1
  selector:
    matchLabels: {k8s-app: kube-dns}
  template:
    metadata:
      labels: {k8s-app: kube-dns}
    spec:
      serviceAccountName: coredns
      containers:
      - name: coredns
        image: {{.IMAGE}}
        args: ["-conf", "/etc/coredns/Corefile"]
        ports:
        - {containerPort: 1053, name: dns, protocol: UDP}
        - {containerPort: 1053, name: dns-tcp, protocol: TCP}
        - {containerPort: 9153, name: metrics, protocol: TCP}
        securityContext:
          runAsNonRoot: true
          runAsUser: {{.RUN_AS_USER}}
          runAsGroup: {{.RUN_AS_GROUP}}
          allowPrivilegeEscalation: false
          capabilities: {drop: [ALL]}
        volumeMounts:
        - {name: config-volume, mountPath: /etc/coredns, readOnly: true}
        livenessProbe:
          httpGet: {path: /health, port: 8080}
        readinessProbe:
          httpGet: {path: /ready, port: 8181}
      volumes:
      - name: config-volume
        configMap:
          name: coredns
          items:
          - {key: Corefile, path: Corefile}
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns, kubernetes.io/cluster-service: "true", kubernetes.io/name: CoreDNS}
spec:
  selector: {k8s-app: kube-dns}
  ports:
  - {name: dns, port: 53, targetPort: 1053, protocol: UDP}
  - {name: dns-tcp, port: 53, targetPort: 1053, protocol: TCP}
  - {name: metrics, port: 9153, protocol: TCP}
)";

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

std::vector<Json> VClusterRuntime::manifests(const std::string& name, const std::string& node, int node_port,
                                             const std::string& service_cidr, bool claim_volume) {
  const std::string ns = name + "-system";
  Json ns_obj = {{"apiVersion", "v1"}, {"kind", "Namespace"},
                 {"metadata", {{"name", ns}, {"labels", {{"app.kubernetes.io/managed-by", "kflex-agent"},
                                                         {"kflex.kubestellar.org/control-plane", name}}}}}};
  Json sa = {{"apiVersion", "v1"}, {"kind", "ServiceAccount"}, {"metadata", meta("vc-vcluster", ns)}};
  // The account the syncer gives every pod it syncs to the host (--service-account): the host
  // refuses pods that name a missing one.
  Json workload_sa = {{"apiVersion", "v1"}, {"kind", "ServiceAccount"}, {"metadata", meta("vc-workload-vcluster", ns)}};
  Json coredns = {{"apiVersion", "v1"}, {"kind", "ConfigMap"}, {"metadata", meta("vcluster-coredns", ns)},
                  {"data", {{"coredns.yaml", kCoreDnsManifests}}}};
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
                    "--kube-apiserver-arg=endpoint-reconciler-type=none --service-cidr=" + service_cidr + " && true";
  Json syncer_args = Json::array({"--name=vcluster", "--kube-config=/data/k3s-config/kube-config.yaml",
                                  "--service-account=vc-workload-vcluster", "--leader-elect=false",
                                  "--out-kube-config-secret=" + std::string(kSecret), "--tls-san=vcluster." + ns,
                                  "--tls-san=vcluster." + ns + ".svc",
                                  // (reached through the hub's tunnel: docs/dev/tunnel.md)
                                  "--tls-san=" + protocol::tunnel::tunnelHost(name)});
  if (!node.empty()) {
    syncer_args.push_back("--tls-san=" + node);
    syncer_args.push_back("--out-kube-config-server=https://" + (node.find(':') != std::string::npos ? "[" + node + "]" : node) +
                          ":" + std::to_string(node_port));
  }
  Json data_mount = {{"name", "data"}, {"mountPath", "/data"}};
  Json coredns_mount = {{"name", "coredns"}, {"mountPath", "/manifests/coredns"}, {"readOnly", true}};
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
                                   {"volumeMounts", Json::array({data_mount, coredns_mount})}}})},
                    {"volumes", Json::array({{{"name", "coredns"},
                                              {"configMap", {{"name", "vcluster-coredns"}}}}})}}}}}}}};
  if (claim_volume) {
    // The virtual cluster's data and certificates outlive its pod, as with the chart's default
    // (storage.persistence): an emptyDir came back empty, with a new CA.
    sts["spec"]["volumeClaimTemplates"] =
        Json::array({{{"metadata", {{"name", "data"}}},
                      {"spec", {{"accessModes", {"ReadWriteOnce"}}, {"resources", {{"requests", {{"storage", "5Gi"}}}}}}}}});
  } else {
    sts["spec"]["template"]["spec"]["volumes"].push_back({{"name", "data"}, {"emptyDir", Json::object()}});
  }
  return {ns_obj, sa, workload_sa, role, binding, coredns, service("vcluster", ns, false, 0),
          service("vcluster-nodeport", ns, true, node_port), sts};
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
  std::string service_cidr;        // the host's Service range, as its virtual cluster's
  std::string service_cidr_note;   // why the fallback range is used ("" when detected)
  std::string volume_note;         // why its data is not on a claimed volume ("" when it is)
  bool rechecking = false;         // recheckSecret() runs
  std::chrono::steady_clock::time_point next_secret_check{};
  std::unique_ptr<kube::Client> cluster;  // the cluster near the agent
  std::shared_ptr<kube::Client> vcluster;  // (shared: a probe keeps the one it awaits on)
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
    if (env.config.cluster && splitHttpsUrl(env.config.cluster->server, host, port)) {
      return host;
    }
    return "";
  }
};

namespace {

// The host's Service range, read as vCluster 0.16 reads it (pkg/util/servicecidr): a Service asking
// for a ClusterIP outside every range is refused with "... The range of valid IPs is CIDR". The
// virtual cluster's range must hold the host Service's ClusterIP, which the syncer gives the
// virtual `kubernetes` Service; when the range cannot be read, 10.96.0.0/12 as vCluster falls back.
net::awaitable<Result<void>> detectServiceCidr(std::shared_ptr<VClusterRuntime::State> s, kube::Client& c) {
  Json probe = {{"apiVersion", "v1"},
                {"kind", "Service"},
                {"metadata", {{"generateName", "kflex-service-cidr-"}, {"namespace", s->ns}}},
                {"spec", {{"clusterIP", kProbeClusterIp}, {"ports", Json::array({{{"port", 80}}})}}}};
  auto r = co_await c.post("/api/v1/namespaces/" + s->ns + "/services", probe);
  std::string why;
  if (!r && r.error().transient()) {
    co_return fail("cannot read the cluster's Service range yet: " + r.error().message);
  }
  if (r) {
    const kube::ObjectRef made{"v1", "Service", s->ns, (*r)["metadata"].value("name", "")};
    (void)co_await c.remove(made);
    why = std::string("the cluster gave a Service ClusterIP ") + kProbeClusterIp;
  } else if (auto at = r.error().message.find(kRangeMarker); at == std::string::npos) {
    why = r.error().message;
  } else {
    std::string rest = r.error().message.substr(at + std::strlen(kRangeMarker));
    std::string cidr = rest.substr(0, rest.find_first_of(" \t\n,"));
    auto slash = cidr.find('/');
    if (slash != std::string::npos && tls::isIpAddress(cidr.substr(0, slash))) {
      s->service_cidr = cidr;
      s->service_cidr_note.clear();
      co_return Result<void>{};
    }
    why = "cannot read a range in: " + r.error().message;
  }
  s->service_cidr = kFallbackServiceCidr;
  s->service_cidr_note = std::string("; the host's Service range could not be read (") + why + "), so " +
                         kFallbackServiceCidr + " is used as vCluster does";
  log::warn("cannot read the cluster's Service range; using vCluster's fallback",
            {{"controlPlane", s->name}, {"range", kFallbackServiceCidr}, {"why", why}});
  co_return Result<void>{};
}

// What a StatefulSet an agent made before holds that must not change under the vCluster's data:
// its Service range, and whether its data is on a claimed volume (volumeClaimTemplates cannot be
// changed on a StatefulSet).
void keepWhatIsInstalled(VClusterRuntime::State& s, const Json& sts) {
  const Json spec = sts.value("spec", Json::object());
  s.volume_note.clear();
  if (spec.value("volumeClaimTemplates", Json::array()).empty()) {
    s.volume_note = "; installed by an earlier agent with its data on an emptyDir, which a new pod loses (delete and "
                    "create the control plane again to have it on a volume)";
  }
  static const std::regex kCidr(R"(--service-cidr=([0-9a-fA-F.:/]+))");
  for (const auto& c : spec.value("template", Json::object()).value("spec", Json::object()).value("containers", Json::array())) {
    for (const auto& a : c.value("args", Json::array())) {
      std::smatch m;
      std::string text = a.is_string() ? a.get<std::string>() : "";
      if (std::regex_search(text, m, kCidr)) {
        s.service_cidr = m[1];
      }
    }
  }
}

// Takes the kubeconfig the syncer wrote (secret vc-vcluster) as the control plane's.
Result<void> takeKubeconfig(VClusterRuntime::State& s, const Json& secret) {
  auto text = base64Decode(secret.value("data", Json::object()).value("config", ""));
  auto kc = text ? config::Kubeconfig::parse(text.value(), "the vCluster's kubeconfig")
                 : Result<config::Kubeconfig>(text.error());
  auto access = kc ? kc->access() : Result<config::ClusterAccess>(kc.error());
  if (!access) {
    return access.error();
  }
  if (text.value() == s.kubeconfig) {
    return {};
  }
  // In the cluster: the vcluster service, as KubeFlex writes config-incluster.
  config::ClusterAccess in = access.value();
  in.server = "https://vcluster." + s.ns;
  config::Kubeconfig in_kc;
  in_kc.setAccess(s.name, in);
  in_kc.setCurrentContext(s.name);
  auto client_vc = kube::Client::create(access.value(), std::chrono::seconds(5));
  if (!client_vc) {
    return client_vc.error();
  }
  if (!s.kubeconfig.empty()) {
    log::info("the vCluster's kubeconfig changed; using the new one", {{"controlPlane", s.name}});
  }
  s.vcluster = std::shared_ptr<kube::Client>(std::move(client_vc.value()));
  s.kubeconfig = text.value();
  s.incluster = in_kc.toYaml();
  return {};
}

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
  auto live = co_await c.get(sts_ref);
  if (live && live->is_object()) {
    keepWhatIsInstalled(*s, live.value());
  }
  bool claim_volume = s->volume_note.empty();
  auto objects = VClusterRuntime::manifests(s->name, s->node(), node_port, kFallbackServiceCidr, claim_volume);
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
    }
    if (is_sts) {
      obj = VClusterRuntime::manifests(s->name, s->node(), node_port, s->service_cidr, claim_volume).back();
    }
    auto r = co_await c.apply(obj, kManager);
    if (!r) {
      s->problem = "installing the vCluster in " + c.server() + ": " + r.error().message;
      co_return;
    }
    if (obj.value("kind", "") == "Namespace" && s->service_cidr.empty()) {
      if (auto detected = co_await detectServiceCidr(s, c); !detected) {
        s->problem = detected.error().message;
        co_return;
      }
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
  if (auto r = takeKubeconfig(*s, secret.value()); !r) {
    s->problem = r.error().message;
    co_return;
  }
  s->next_secret_check = std::chrono::steady_clock::now() + kSecretRecheck;
  s->phase = "the vCluster is installed";
}

// Reads the kubeconfig secret again: a vCluster whose pod came back with a new CA (its data lost)
// writes a new one, and the old one would never work again.
net::awaitable<void> recheckSecret(std::shared_ptr<VClusterRuntime::State> s) {
  auto client = s->clusterClient();
  if (!client) {
    co_return;
  }
  const kube::ObjectRef secret_ref{"v1", "Secret", s->ns, kSecret};
  auto secret = co_await client.value()->get(secret_ref);
  if (secret && secret->is_object() && !s->removing) {
    if (auto r = takeKubeconfig(*s, secret.value()); !r) {
      log::warn("the vCluster's kubeconfig secret cannot be used", {{"controlPlane", s->name}, {"error", r.error().message}});
    }
  }
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
  // (A copy: a recheck may replace the client while this probe awaits on it.)
  std::shared_ptr<kube::Client> client = s->vcluster;
  auto r = co_await client->getRaw("/readyz");
  s->ready = r.has_value();
  s->ready_message = r ? "the vCluster answers /readyz" : r.error().message;
  auto now = std::chrono::steady_clock::now();
  if (!s->rechecking && now >= s->next_secret_check) {
    s->next_secret_check = now + (s->ready ? kSecretRecheck : kSecretRecheckNotReady);
    s->rechecking = true;
    net::co_spawn(s->env.executor, recheckSecret(s), [s](std::exception_ptr e) {
      s->rechecking = false;
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          log::warn("reading the vCluster's kubeconfig secret failed", {{"controlPlane", s->name}, {"error", ex.what()}});
        }
      }
    });
  }
}

bool VClusterRuntime::ready() const { return s_->ready; }

protocol::StatusReport VClusterRuntime::observe() const {
  const State& s = *s_;
  protocol::ReportedCondition synced;
  if (!s.problem.empty()) {
    synced = {"Synced", "False", "ReconcileError", s.problem};
  } else {
    synced = {"Synced", "True", "ReconcileSuccess",
              s.phase + " (namespace " + s.ns + (s.cluster ? " of " + s.cluster->server() : "") +
                  (s.service_cidr.empty() ? "" : ", Service range " + s.service_cidr) + s.service_cidr_note +
                  s.volume_note + ")"};
  }
  std::string reason = s.removing ? "Deleting" : s.ready ? "Available" : s.kubeconfig.empty() ? "Creating" : "Unavailable";
  protocol::StatusReport out;
  out.conditions = {synced,
                    {"Ready", s.ready ? "True" : "False", reason,
                     s.kubeconfig.empty() && !s.removing ? s.phase : s.ready_message}};
  out.components = {{"vcluster", s.ready ? "Running" : s.kubeconfig.empty() ? "Starting" : "Unhealthy", 0, std::nullopt}};
  if (s.vcluster) {
    out.endpoint = s.vcluster->server();
  }
  if (!s.kubeconfig.empty()) {
    out.kubeconfig = {kSecret, {{"config", s.kubeconfig}, {"config-incluster", s.incluster}}};
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
