// SPDX-License-Identifier: Apache-2.0
// A whole Kubernetes cluster in one process, for tests: the cluster an agent runs vCluster in,
// a hub's hosting cluster, a cluster to adopt. Not a stand-in for one program but for a
// cluster's API and the controllers kflex relies on:
// - the API (core, RBAC, apps, batch, apiextensions; TokenRequest and service-account bearer
//   tokens, cluster-admin bindings honoured) on the hub's machinery;
// - the namespace controller (a deleting namespace is emptied, then goes);
// - workloads: Deployments and StatefulSets report their replicas ready; Jobs end as their
//   containers' command lines say (jobs.cpp);
// - Services get ClusterIPs from --service-cluster-ip-range (one outside it refused in
//   kube-apiserver's words); pods naming a missing ServiceAccount are refused; bare pods run as
//   their containers' command lines say (jobs.cpp);
// - vCluster 0.16 (docs/launch-contract.md): a StatefulSet with a loft-sh/vcluster syncer container
//   gets a Kubernetes API of its own, served on the node port of the namespace's NodePort service,
//   and its kubeconfig in the secret the syncer writes (vc-NAME, key config, server
//   --out-kube-config-server) unless its syncer would exit at start (the host Service's ClusterIP
//   outside the virtual range); its data survives a new pod only on a claimed volume; its Jobs run
//   through pods synced here as its syncer syncs them (with the --service-account's account, once
//   its CoreDNS manifests are mounted), their phases copied back.
//
//   kube-cluster --data-dir DIR [--listen 127.0.0.1:0] [--service-cluster-ip-range 10.96.0.0/12]
//
// writes DIR/admin.kubeconfig (client certificate, system:masters) once it serves.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <iostream>
#include <optional>
#include <regex>
#include <set>

#include "shared/common/log.hpp"
#include "shared/common/time.hpp"
#include "shared/common/util.hpp"
#include "shared/config/kubeconfig.hpp"
#include "shared/net/https_client.hpp"
#include "shared/tls/context.hpp"
#include "shared/tls/pki.hpp"
#include "tests/standins/standin.hpp"

namespace {

using namespace kflex;
using model::Json;

struct ClusterPki {
  tls::KeyPair ca;
  tls::KeyPair serving;
  tls::KeyPair admin;
};

Result<ClusterPki> loadOrMakePki(const std::filesystem::path& dir, const std::vector<std::string>& extra_sans = {}) {
  SystemClock clock;
  std::filesystem::create_directories(dir);
  ClusterPki p;
  auto load = [&](const char* name, tls::KeyPair& kp) {
    auto c = readFile(dir / (std::string(name) + ".crt"));
    auto k = readFile(dir / (std::string(name) + ".key"));
    if (!c || !k) {
      return false;
    }
    kp = {c.value(), k.value()};
    return true;
  };
  auto save = [&](const char* name, const tls::KeyPair& kp) -> Result<void> {
    if (auto r = writeFileAtomic(dir / (std::string(name) + ".crt"), kp.cert_pem, 0644); !r) {
      return r;
    }
    return writeFileAtomic(dir / (std::string(name) + ".key"), kp.key_pem, 0600);
  };
  if (load("ca", p.ca) && load("serving", p.serving) && load("admin", p.admin)) {
    return p;
  }
  auto ca = tls::createCa({"kube-cluster-ca", {}, {}, {}, true, false, false, std::chrono::hours(24 * 365)}, clock);
  if (!ca) {
    return ca.error();
  }
  tls::CertRequest serving_req{"kube-apiserver", {}, {"localhost", "kubernetes", "kubernetes.default.svc"},
                               {"127.0.0.1"}, false, true, false, std::chrono::hours(24 * 365)};
  for (const auto& san : extra_sans) {
    (tls::isIpAddress(san) ? serving_req.ip_addresses : serving_req.dns_names).push_back(san);
  }
  auto serving = tls::issueCertificate(ca.value(), serving_req, clock);
  auto admin = tls::issueCertificate(
      ca.value(), {"kubernetes-admin", {"system:masters"}, {}, {}, false, false, true, std::chrono::hours(24 * 365)},
      clock);
  if (!serving || !admin) {
    return fail("cannot issue the cluster's certificates");
  }
  p = {ca.value(), serving.value(), admin.value()};
  for (auto [name, kp] : {std::pair<const char*, const tls::KeyPair*>{"ca", &p.ca}, {"serving", &p.serving},
                          {"admin", &p.admin}}) {
    if (auto r = save(name, *kp); !r) {
      return r.error();
    }
  }
  return p;
}

// A kubeconfig for `server` with the admin certificate, one context.
config::Kubeconfig adminKubeconfig(const ClusterPki& pki, const std::string& server, const std::string& context) {
  config::ClusterAccess admin;
  admin.server = server;
  admin.ca_pem = pki.ca.cert_pem;
  admin.client_cert_pem = pki.admin.cert_pem;
  admin.client_key_pem = pki.admin.key_pem;
  config::Kubeconfig kc;
  kc.setAccess(context, admin);
  kc.setCurrentContext(context);
  return kc;
}

// An IPv4 Service range (a.b.c.d/n): what it holds, and addresses in it.
struct ServiceRange {
  std::string text;
  uint32_t base = 0;
  uint32_t mask = 0;
  static std::optional<ServiceRange> parse(const std::string& cidr) {
    auto slash = cidr.find('/');
    in_addr a{};
    if (slash == std::string::npos || ::inet_pton(AF_INET, cidr.substr(0, slash).c_str(), &a) != 1) {
      return std::nullopt;
    }
    int bits = std::atoi(cidr.substr(slash + 1).c_str());
    if (bits < 8 || bits > 30) {
      return std::nullopt;
    }
    ServiceRange r;
    r.text = cidr;
    r.mask = bits == 0 ? 0 : ~uint32_t(0) << (32 - bits);
    r.base = ntohl(a.s_addr) & r.mask;
    return r;
  }
  bool contains(const std::string& ip) const {
    in_addr a{};
    return ::inet_pton(AF_INET, ip.c_str(), &a) == 1 && (ntohl(a.s_addr) & mask) == base;
  }
  std::string at(uint32_t offset) const {
    in_addr a{};
    a.s_addr = htonl(base + offset);
    char buf[INET_ADDRSTRLEN];
    return ::inet_ntop(AF_INET, &a, buf, sizeof buf);
  }
};

// What a vCluster 0.16 StatefulSet tells its containers and what its pod has.
struct VClusterSpec {
  std::string name = "vcluster";       // --name (the release)
  std::string service_name;            // --service-name (default: --name)
  std::string service_account;         // --service-account: the host account of synced pods
  std::string out_server = "https://localhost:8443";
  std::string out_secret;
  std::vector<std::string> tls_sans;
  std::string service_cidr = "10.43.0.0/16";  // k3s's --service-cidr (k3s's own default)
  std::string coredns_configmap;       // the ConfigMap at /manifests/coredns in the syncer, if any
  bool persistent = false;             // a volumeClaimTemplate "data" (else an emptyDir)
};

// The vCluster of a StatefulSet (a syncer container, image loft-sh/vcluster), if it is one.
std::optional<VClusterSpec> vclusterOf(const Json& sts) {
  const Json spec = sts.value("spec", Json::object());
  const Json pod = spec.value("template", Json::object()).value("spec", Json::object());
  const Json containers = pod.value("containers", Json::array());
  std::optional<VClusterSpec> out;
  std::string coredns_volume;
  for (const auto& c : containers) {
    if (!c.is_object() || c.value("image", "").find("loft-sh/vcluster") == std::string::npos) {
      continue;
    }
    VClusterSpec a;
    for (const auto& arg : c.value("args", Json::array())) {
      std::string v = arg.is_string() ? arg.get<std::string>() : "";
      auto value = [&](const std::string& flag) { return v.substr(flag.size()); };
      if (v.rfind("--name=", 0) == 0) {
        a.name = value("--name=");
      } else if (v.rfind("--out-kube-config-server=", 0) == 0) {
        a.out_server = value("--out-kube-config-server=");
      } else if (v.rfind("--out-kube-config-secret=", 0) == 0) {
        a.out_secret = value("--out-kube-config-secret=");
      } else if (v.rfind("--tls-san=", 0) == 0) {
        a.tls_sans.push_back(value("--tls-san="));
      } else if (v.rfind("--service-account=", 0) == 0) {
        a.service_account = value("--service-account=");
      } else if (v.rfind("--service-name=", 0) == 0) {
        a.service_name = value("--service-name=");
      }
    }
    if (a.out_secret.empty()) {
      a.out_secret = "vc-" + a.name;
    }
    if (a.service_name.empty()) {
      a.service_name = a.name;
    }
    for (const auto& m : c.value("volumeMounts", Json::array())) {
      if (m.value("mountPath", "") == "/manifests/coredns") {
        coredns_volume = m.value("name", "");
      }
    }
    out = a;
  }
  if (!out) {
    return out;
  }
  // The k3s container's command line (one `sh -c` string in the chart).
  static const std::regex kCidr(R"(--service-cidr=(\S+))");
  for (const auto& c : containers) {
    std::string line;
    for (const char* field : {"command", "args"}) {
      for (const auto& w : c.value(field, Json::array())) {
        line += (w.is_string() ? w.get<std::string>() : "") + " ";
      }
    }
    std::smatch m;
    if (line.find("k3s server") != std::string::npos && std::regex_search(line, m, kCidr)) {
      out->service_cidr = m[1];
    }
  }
  for (const auto& v : pod.value("volumes", Json::array())) {
    if (!coredns_volume.empty() && v.value("name", "") == coredns_volume && v.contains("configMap")) {
      out->coredns_configmap = v["configMap"].value("name", "");
    }
  }
  for (const auto& t : spec.value("volumeClaimTemplates", Json::array())) {
    if (t.value("metadata", Json::object()).value("name", "") == "data") {
      out->persistent = true;
    }
  }
  return out;
}

// A pod's name on the host, as vCluster 0.16 writes it (translate.PhysicalName, SafeConcatName).
std::string hostPodName(const std::string& name, const std::string& ns, const std::string& release) {
  std::string full = name + "-x-" + ns + "-x-" + release;
  return full.size() <= 63 ? full : full.substr(0, 52) + "-" + tls::sha256Hex(full).substr(0, 10);
}

// The controllers: look at the store every tick and act through the API as a controller would.
class Controllers {
 public:
  Controllers(net::io_context& ioc, standin::ApiServer& api, std::filesystem::path dir, ServiceRange range)
      : ioc_(ioc), api_(api), dir_(std::move(dir)), range_(std::move(range)), timer_(ioc) {}
  void start() {
    api_.setAdmission([this](hub::ApiRequest& r) { return admit(r); });
    net::co_spawn(ioc_, loop(), net::detached);
  }
  void stop() {
    stopping_ = true;
    timer_.cancel();
    for (auto& [_, v] : vclusters_) {
      v.api->stop();
    }
  }

 private:
  net::awaitable<void> loop() {
    co_await ensureNamespaces();
    while (!stopping_) {
      co_await namespaces();
      co_await vclusters();
      co_await workloads();
      co_await standin::runJobs(api_);
      co_await standin::runPods(api_);
      co_await standin::runCrds(api_);
      for (auto& [key, v] : vclusters_) {
        // Its Jobs are run by its own controller manager; their pods are synced to this cluster
        // by its syncer and run here.
        co_await standin::runJobsThroughPods(*v.api);
        co_await syncPods(v);
      }
      timer_.expires_after(std::chrono::milliseconds(200));
      co_await timer_.async_wait(net::as_tuple(net::use_awaitable));
    }
  }

  net::awaitable<void> ensureNamespaces() {
    const auto* namespaces = api_.registry().find("", "v1", "namespaces");
    for (const char* ns : {"default", "kube-system", "kube-public"}) {
      Json obj = {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", ns}}}};
      Result<Json> made = co_await api_.api().create(*namespaces, obj);  // (there already, after a restart)
    }
  }

  // A deleting namespace: delete what is in it, then let it go.
  net::awaitable<void> namespaces() {
    for (const auto& rec : api_.store().list("/namespaces").first) {
      if (rec->bytes.find("deletionTimestamp") == std::string::npos) {
        continue;
      }
      const std::string& ns = rec->name;
      size_t left = 0;
      for (const auto& t : api_.registry().all()) {
        if (!t->namespaced) {
          continue;
        }
        for (const auto& obj : api_.store().list(hub::resourceKey(*t, ns)).first) {
          ++left;
          if (obj->bytes.find("deletionTimestamp") == std::string::npos) {
            Result<void> removed = co_await api_.api().remove(*t, ns, obj->name);  // (gone meanwhile: fine)
          }
        }
      }
      if (left == 0) {
        const auto* t = api_.registry().find("", "v1", "namespaces");
        co_await api_.api().removeFinalizer(*t, ns, "kubernetes");
        log::info("namespace deleted", {{"namespace", ns}});
      }
    }
  }

  // kube-apiserver's Service IP allocation and ServiceAccount admission, for clients' requests:
  // a Service gets a ClusterIP from the range (one outside it is refused, in the words vCluster
  // reads the range from), a Pod naming a missing ServiceAccount is refused.
  std::optional<hub::ApiResponse> admit(hub::ApiRequest& r) {
    if (auto refused = immutableStatefulSetFields(r)) {
      return refused;
    }
    static const std::regex kCollection(R"(^/api/v1/namespaces/([^/]+)/(services|pods)$)");
    static const std::regex kObject(R"(^/api/v1/namespaces/([^/]+)/(services|pods)/([^/]+)$)");
    std::smatch m;
    bool create = r.method == http::verb::post && std::regex_match(r.path, m, kCollection);
    bool apply = !create && r.method == http::verb::patch && r.content_type.find("apply-patch") != std::string::npos &&
                 std::regex_match(r.path, m, kObject);
    if (!create && !apply) {
      return std::nullopt;
    }
    Json obj = Json::parse(r.body, nullptr, false);
    if (!obj.is_object()) {
      return std::nullopt;
    }
    std::string ns = m[1];
    std::string name = apply ? std::string(m[3]) : obj["metadata"].value("name", "");
    if (name.empty()) {
      name = obj["metadata"].value("generateName", "") + "x7k2q";
    }
    if (m[2] == "pods") {
      std::string why = missingServiceAccount(api_, ns, obj);
      if (why.empty()) {
        return std::nullopt;
      }
      return hub::statusResponse(403, "Forbidden", "pods \"" + name + "\" is forbidden: " + why);
    }
    const auto* services = api_.registry().find("", "v1", "services");
    if (apply && api_.store().get(hub::resourceKey(*services, ns), name)) {
      return std::nullopt;  // (a ClusterIP is kept for the Service's life)
    }
    Json& spec = obj["spec"];
    std::string ip = spec.is_object() ? spec.value("clusterIP", "") : "";
    if (ip == "None" || (spec.is_object() && spec.value("type", "") == "ExternalName")) {
      return std::nullopt;
    }
    if (!ip.empty()) {
      if (range_.contains(ip)) {
        return std::nullopt;
      }
      return hub::statusResponse(422, "Invalid",
                                 "Service \"" + name + "\" is invalid: spec.clusterIPs: Invalid value: [\"" + ip +
                                     "\"]: failed to allocate IP " + ip + ": the provided IP (" + ip +
                                     ") is not in the valid range. The range of valid IPs is " + range_.text);
    }
    std::set<std::string> used;
    for (const auto& rec : api_.store().listPrefix(hub::resourceKey(*services, "")).first) {
      Json o = Json::parse(rec->bytes, nullptr, false);
      if (o.is_object()) {
        used.insert(o.value("spec", Json::object()).value("clusterIP", ""));
      }
    }
    for (uint32_t offset = 10; offset < 4000; ++offset) {
      if (!used.count(range_.at(offset))) {
        spec["clusterIP"] = range_.at(offset);
        spec["clusterIPs"] = Json::array({range_.at(offset)});
        break;
      }
    }
    r.body = obj.dump();
    return std::nullopt;
  }

  // A StatefulSet's spec may change only in replicas, template, updateStrategy, minReadySeconds,
  // ordinals and persistentVolumeClaimRetentionPolicy (apps validation, ValidateStatefulSetUpdate).
  std::optional<hub::ApiResponse> immutableStatefulSetFields(const hub::ApiRequest& r) {
    static const std::regex kObject(R"(^/apis/apps/v1/namespaces/([^/]+)/statefulsets/([^/]+)$)");
    std::smatch m;
    if ((r.method != http::verb::patch && r.method != http::verb::put) || !std::regex_match(r.path, m, kObject)) {
      return std::nullopt;
    }
    Json next = Json::parse(r.body, nullptr, false);
    const auto* sets = api_.registry().find("apps", "v1", "statefulsets");
    auto stored = api_.store().get(hub::resourceKey(*sets, m[1]), m[2]);
    if (!next.is_object() || !next.contains("spec") || !stored) {
      return std::nullopt;
    }
    Json now = Json::parse(stored->bytes, nullptr, false).value("spec", Json::object());
    for (const char* field : {"volumeClaimTemplates", "serviceName", "selector"}) {
      if (next["spec"].contains(field) && next["spec"][field] != now.value(field, Json())) {
        return hub::statusResponse(422, "Invalid",
                                   "StatefulSet.apps \"" + std::string(m[2]) + "\" is invalid: spec: Forbidden: updates "
                                   "to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
                                   "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are "
                                   "forbidden");
      }
    }
    return std::nullopt;
  }

  // "" when the pod's ServiceAccount exists (or is the namespace's default), else why not.
  static std::string missingServiceAccount(standin::ApiServer& api, const std::string& ns, const Json& pod) {
    std::string account = pod.value("spec", Json::object()).value("serviceAccountName", "");
    const auto* accounts = api.registry().find("", "v1", "serviceaccounts");
    if (account.empty() || account == "default" || api.store().get(hub::resourceKey(*accounts, ns), account)) {
      return "";
    }
    return "error looking up service account " + ns + "/" + account + ": serviceaccount \"" + account +
           "\" not found";
  }

  struct VCluster {
    std::unique_ptr<standin::ApiServer> api;
    VClusterSpec spec;
    std::string ns;  // its host namespace
    int64_t generation = 0;  // of the StatefulSet its pod was made from
    std::set<std::string> reported;  // pods whose sync failure was logged
  };

  // vCluster StatefulSets: the "pod" is a Kubernetes API served in this process on the node port
  // of the namespace's NodePort service; its syncer's start-up is checked as vCluster 0.16 does it
  // (the host Service's ClusterIP must be in the virtual range: it exits before writing its
  // kubeconfig otherwise), then its kubeconfig goes to the secret the syncer writes. Its data
  // (certificates, objects) lives on its volume: an emptyDir starts empty with every new pod (this
  // process starting = the node rebooted), a claimed volume keeps it until the claim is deleted.
  net::awaitable<void> vclusters() {
    const auto* t = api_.registry().find("apps", "v1", "statefulsets");
    const auto* claims = api_.registry().find("", "v1", "persistentvolumeclaims");
    const auto* services = api_.registry().find("", "v1", "services");
    std::set<std::string> seen;
    for (const auto& rec : api_.store().listPrefix(hub::resourceKey(*t, "")).first) {
      Json sts = Json::parse(rec->bytes, nullptr, false);
      auto vc = sts.is_object() ? vclusterOf(sts) : std::nullopt;
      if (!vc || sts["metadata"].contains("deletionTimestamp")) {
        continue;
      }
      std::string ns = sts["metadata"].value("namespace", "");
      std::string key = ns + "/" + rec->name;
      int64_t generation = sts["metadata"].value("generation", int64_t(1));
      seen.insert(key);
      if (auto running = vclusters_.find(key); running != vclusters_.end()) {
        if (running->second.generation == generation) {
          continue;
        }
        // A changed pod template rolls the pod: a new one, with a new emptyDir.
        running->second.api->stop();
        log::info("vcluster pod replaced", {{"statefulset", key}});
        retired_.push_back(std::move(running->second.api));
        vclusters_.erase(running);
        pods_.erase(key);
      }
      std::filesystem::path dir = dir_ / "vclusters" / (ns + "_" + rec->name);
      std::error_code ec;
      if (vc->persistent) {
        std::string claim = "data-" + rec->name + "-0";
        if (!api_.store().get(hub::resourceKey(*claims, ns), claim)) {
          Json pvc = {{"apiVersion", "v1"}, {"kind", "PersistentVolumeClaim"},
                      {"metadata", {{"name", claim}, {"namespace", ns}}},
                      {"spec", {{"accessModes", {"ReadWriteOnce"}}, {"resources", {{"requests", {{"storage", "5Gi"}}}}}}}};
          Result<Json> made = co_await api_.api().create(*claims, pvc);  // (the status below tells)
          std::function<bool(Json&)> bound = [](Json& o) {
            o["status"] = {{"phase", "Bound"}};
            return true;
          };
          co_await api_.api().changeStatusIn(*claims, ns, claim, bound);
          std::filesystem::remove_all(dir, ec);  // a new volume
        }
      } else if (!pods_.count(key)) {
        std::filesystem::remove_all(dir, ec);  // a new pod: a new emptyDir
      }
      pods_.insert(key);
      // The syncer's start: SyncKubernetesService gives the virtual `kubernetes` Service the host
      // Service's ClusterIP, which the virtual API server refuses outside its range.
      auto svc = api_.store().get(hub::resourceKey(*services, ns), vc->service_name);
      std::string ip = svc ? Json::parse(svc->bytes, nullptr, false)["spec"].value("clusterIP", "") : "";
      auto virtual_range = ServiceRange::parse(vc->service_cidr);
      if (!ip.empty() && (!virtual_range || !virtual_range->contains(ip))) {
        if (crashing_.insert(key).second) {
          log::error("F main.go:35] start controllers: sync kubernetes service: sync kubernetes service: Service "
                     "\"kubernetes\" is invalid: spec.clusterIPs: Invalid value: [\"" + ip + "\"]: failed to "
                     "allocate IP " + ip + ": the provided IP (" + ip + ") is not in the valid range. The range "
                     "of valid IPs is " + vc->service_cidr,
                     {{"statefulset", key}});
        }
        continue;  // it exits (255) before it writes its kubeconfig, and is restarted
      }
      crashing_.erase(key);
      std::vector<std::string> sans = vc->tls_sans;
      std::string host;
      std::string out_port;
      if (splitHttpsUrl(vc->out_server, host, out_port)) {
        sans.push_back(host);
      }
      int port = 0;
      for (const auto& o : api_.store().list("/services/" + ns).first) {
        Json j = Json::parse(o->bytes, nullptr, false);
        if (j.is_object() && j["spec"].value("type", "") == "NodePort" && j["spec"]["ports"].is_array() &&
            !j["spec"]["ports"].empty()) {
          port = j["spec"]["ports"][0].value("nodePort", 0);
        }
      }
      auto pki = loadOrMakePki(dir / "pki", sans);
      auto ctx = pki ? tls::makeServerContext({pki->ca.cert_pem, pki->serving.cert_pem, pki->serving.key_pem})
                     : Result<std::shared_ptr<ssl::context>>(pki.error());
      if (!ctx) {
        log::error("cannot start a vcluster", {{"statefulset", key}, {"error", ctx.error().message}});
        continue;
      }
      auto api = standin::ApiServer::start(ioc_, ctx.value(), dir / "vcluster.db", "127.0.0.1",
                                           static_cast<uint16_t>(port), std::chrono::steady_clock::now(),
                                           {{"/livez", "ok"}});
      if (!api) {
        log::error("cannot start a vcluster", {{"statefulset", key}, {"error", api.error().message}});
        continue;
      }
      config::Kubeconfig kc = adminKubeconfig(pki.value(), vc->out_server, "my-vcluster");
      Json secret = {{"apiVersion", "v1"}, {"kind", "Secret"},
                     {"metadata", {{"name", vc->out_secret}, {"namespace", ns}}},
                     {"data", {{"config", base64Encode(kc.toYaml())}}}};
      const auto* secrets = api_.registry().find("", "v1", "secrets");
      Result<Json> r = co_await api_.api().apply(*secrets, ns, vc->out_secret, secret, "vcluster");
      if (!r) {
        log::error("cannot write a vcluster's kubeconfig", {{"statefulset", key}, {"answer", r.error().message}});
      }
      log::info("vcluster started", {{"statefulset", key}, {"port", std::to_string(api.value()->port())}});
      vclusters_[key] = VCluster{std::move(api.value()), vc.value(), ns, generation, {}};
    }
    for (auto it = vclusters_.begin(); it != vclusters_.end();) {
      if (seen.count(it->first)) {
        ++it;
        continue;
      }
      it->second.api->stop();
      log::info("vcluster stopped", {{"statefulset", it->first}});
      retired_.push_back(std::move(it->second.api));
      pods_.erase(it->first);
      it = vclusters_.erase(it);
    }
  }

  // The syncer's pod syncer: every virtual pod becomes a host pod (name translated, the
  // --service-account's account, the host refusing a missing one), once the virtual cluster's
  // DNS (CoreDNS from /manifests/coredns) is there; the host pod's phase goes back to the virtual
  // pod; a host pod whose virtual pod is gone is deleted.
  net::awaitable<void> syncPods(VCluster& v) {
    const auto* pods = api_.registry().find("", "v1", "pods");
    const auto* maps = api_.registry().find("", "v1", "configmaps");
    std::set<std::string> wanted;
    for (const auto& rec : v.api->store().listPrefix(hub::resourceKey(*pods, "")).first) {
      Json vpod = Json::parse(rec->bytes, nullptr, false);
      if (!vpod.is_object()) {
        continue;
      }
      std::string vns = vpod["metadata"].value("namespace", "");
      std::string host_name = hostPodName(rec->name, vns, v.spec.name);
      wanted.insert(host_name);
      auto host = api_.store().get(hub::resourceKey(*pods, v.ns), host_name);
      if (!host) {
        std::string why;
        auto coredns = v.spec.coredns_configmap.empty()
                           ? nullptr
                           : api_.store().get(hub::resourceKey(*maps, v.ns), v.spec.coredns_configmap);
        if (!coredns || coredns->bytes.find("coredns.yaml") == std::string::npos) {
          why = "waiting for DNS service IP";
        }
        Json hpod = {{"apiVersion", "v1"},
                     {"kind", "Pod"},
                     {"metadata", {{"name", host_name}, {"namespace", v.ns},
                                   {"labels", {{"vcluster.loft.sh/managed-by", v.spec.name},
                                               {"vcluster.loft.sh/namespace", vns}}},
                                   {"annotations", {{"vcluster.loft.sh/object-name", rec->name},
                                                    {"vcluster.loft.sh/object-namespace", vns}}}}},
                     {"spec", vpod.value("spec", Json::object())}};
        hpod["spec"]["serviceAccountName"] = v.spec.service_account.empty() ? "default" : v.spec.service_account;
        if (why.empty()) {
          why = missingServiceAccount(api_, v.ns, hpod);
          if (!why.empty()) {
            why = "pods \"" + host_name + "\" is forbidden: " + why;
          }
        }
        if (why.empty()) {
          Result<Json> made = co_await api_.api().create(*pods, hpod);
          if (!made && v.reported.insert(rec->name + made.error().message).second) {
            log::error("Error syncing to physical cluster: " + made.error().message, {{"pod", vns + "/" + rec->name}});
          }
        } else if (v.reported.insert(rec->name + why).second) {
          log::error("Error syncing to physical cluster: " + why, {{"pod", vns + "/" + rec->name}});
        }
        continue;
      }
      std::string phase = Json::parse(host->bytes, nullptr, false).value("status", Json::object()).value("phase", "");
      if (!phase.empty() && vpod.value("status", Json::object()).value("phase", "") != phase) {
        std::function<bool(Json&)> copy = [phase](Json& o) {
          o["status"]["phase"] = phase;
          return true;
        };
        co_await v.api->api().changeStatusIn(*pods, vns, rec->name, copy);
      }
    }
    for (const auto& rec : api_.store().list(hub::resourceKey(*pods, v.ns)).first) {
      if (!wanted.count(rec->name) &&
          rec->bytes.find("\"vcluster.loft.sh/managed-by\":\"" + v.spec.name + "\"") != std::string::npos) {
        Result<void> removed = co_await api_.api().remove(*pods, v.ns, rec->name);  // (gone meanwhile: fine)
      }
    }
  }

  // Deployments and StatefulSets: their pods are "running" as soon as they are asked for.
  net::awaitable<void> workloads() {
    for (const char* plural : {"deployments", "statefulsets"}) {
      const auto* t = api_.registry().find("apps", "v1", plural);
      for (const auto& rec : api_.store().listPrefix(hub::resourceKey(*t, "")).first) {
        Json obj = Json::parse(rec->bytes, nullptr, false);
        if (!obj.is_object()) {
          continue;
        }
        if (vclusterOf(obj) &&
            !vclusters_.count(obj["metadata"].value("namespace", "") + "/" + rec->name)) {
          continue;  // its vcluster is not serving (yet)
        }
        int64_t replicas = obj.value("spec", Json::object()).value("replicas", int64_t(1));
        int64_t generation = obj["metadata"].value("generation", int64_t(1));
        const Json status = obj.value("status", Json::object());
        if (status.value("readyReplicas", int64_t(-1)) == replicas &&
            status.value("observedGeneration", int64_t(-1)) == generation) {
          continue;
        }
        std::string ns = obj["metadata"].value("namespace", "");
        std::function<bool(Json&)> ready = [&](Json& o) {
          o["status"] = {{"replicas", replicas}, {"readyReplicas", replicas}, {"availableReplicas", replicas},
                         {"updatedReplicas", replicas}, {"observedGeneration", generation}};
          return true;
        };
        co_await api_.api().changeStatusIn(*t, ns, rec->name, ready);
      }
    }
  }

  net::io_context& ioc_;
  standin::ApiServer& api_;
  std::filesystem::path dir_;
  ServiceRange range_;
  std::map<std::string, VCluster> vclusters_;  // "namespace/statefulset"
  std::set<std::string> pods_;      // vClusters whose pod this process made (its emptyDir is new)
  std::set<std::string> crashing_;  // vClusters whose syncer exits at start
  // Stopped vClusters' servers, kept: connections still open on them end on their own.
  std::vector<std::unique_ptr<standin::ApiServer>> retired_;
  net::steady_timer timer_;
  bool stopping_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  auto parsed = standin::Flags::parse(
      args, {{"data-dir", false, {}, ""}, {"listen", false, {}, ""}, {"service-cluster-ip-range", false, {}, ""}}, true);
  if (!parsed) {
    return standin::commandError(parsed.error().message);
  }
  if (!parsed->has("data-dir")) {
    return standin::commandError("--data-dir is required");
  }
  std::filesystem::path dir = std::filesystem::absolute(parsed->get("data-dir"));
  // kube-apiserver's default range; a k3s host's is 10.43.0.0/16.
  auto range = ServiceRange::parse(parsed->get("service-cluster-ip-range", "10.96.0.0/12"));
  if (!range) {
    return standin::commandError("--service-cluster-ip-range: want an IPv4 CIDR such as 10.43.0.0/16");
  }
  std::string listen = parsed->get("listen", "127.0.0.1:0");
  auto colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return standin::commandError("--listen must be HOST:PORT");
  }
  auto pki = loadOrMakePki(dir / "pki");
  if (!pki) {
    return standin::commandError(pki.error().message);
  }
  auto ctx = tls::makeServerContext({pki->ca.cert_pem, pki->serving.cert_pem, pki->serving.key_pem});
  if (!ctx) {
    return standin::commandError(ctx.error().message);
  }
  net::io_context ioc{1};
  auto api = standin::ApiServer::start(ioc, ctx.value(), dir / "cluster.db", listen.substr(0, colon),
                                       static_cast<uint16_t>(std::atoi(listen.substr(colon + 1).c_str())),
                                       std::chrono::steady_clock::now(), {{"/livez", "ok"}});
  if (!api) {
    return standin::commandError(api.error().message);
  }
  std::string server = "https://127.0.0.1:" + std::to_string(api.value()->port());
  config::Kubeconfig kc = adminKubeconfig(pki.value(), server, "kube-cluster");
  if (auto r = kc.save(dir / "admin.kubeconfig"); !r) {
    return standin::commandError(r.error().message);
  }
  Controllers controllers(ioc, *api.value(), dir, range.value());
  controllers.start();
  log::info("kube-cluster serving", {{"url", server}, {"kubeconfig", (dir / "admin.kubeconfig").string()}});
  return standin::runUntilSignalled(ioc, [&] {
    controllers.stop();
    api.value()->stop();
  });
}
