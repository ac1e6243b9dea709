// SPDX-License-Identifier: Apache-2.0
// A whole Kubernetes cluster in one process, for tests: the cluster an agent runs vCluster in,
// a hub's hosting cluster, a cluster to adopt. Not a stand-in for one program but for a
// cluster's API and the controllers kflex relies on:
// - the API (core, RBAC, apps, batch, apiextensions; TokenRequest and service-account bearer
//   tokens, cluster-admin bindings honoured) on the hub's machinery;
// - the namespace controller (a deleting namespace is emptied, then goes);
// - workloads: Deployments and StatefulSets report their replicas ready; Jobs end as their
//   containers' command lines say (jobs.cpp);
// - vCluster: a StatefulSet with a loft-sh/vcluster syncer container gets a Kubernetes API of its
//   own, served on the node port of the namespace's NodePort service, and its kubeconfig in the
//   secret the syncer writes (vc-NAME, key config, server --out-kube-config-server).
//
//   kube-cluster --data-dir DIR [--listen 127.0.0.1:0]
//
// writes DIR/admin.kubeconfig (client certificate, system:masters) once it serves.
#include <iostream>
#include <optional>
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

// What a vCluster's syncer container is told (vCluster 0.16 flags).
struct SyncerArgs {
  std::string name = "vcluster";
  std::string out_server = "https://localhost:8443";
  std::string out_secret;
  std::vector<std::string> tls_sans;
};

// The syncer container of a StatefulSet (image loft-sh/vcluster), if it has one.
std::optional<SyncerArgs> syncerOf(const Json& sts) {
  const Json containers = sts.value("spec", Json::object()).value("template", Json::object())
                              .value("spec", Json::object()).value("containers", Json::array());
  for (const auto& c : containers) {
    if (!c.is_object() || c.value("image", "").find("loft-sh/vcluster") == std::string::npos) {
      continue;
    }
    SyncerArgs a;
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
      }
    }
    if (a.out_secret.empty()) {
      a.out_secret = "vc-" + a.name;
    }
    return a;
  }
  return std::nullopt;
}

// The controllers: look at the store every tick and act through the API as a controller would.
class Controllers {
 public:
  Controllers(net::io_context& ioc, standin::ApiServer& api, std::filesystem::path dir)
      : ioc_(ioc), api_(api), dir_(std::move(dir)), timer_(ioc) {}
  void start() { net::co_spawn(ioc_, loop(), net::detached); }
  void stop() {
    stopping_ = true;
    timer_.cancel();
    for (auto& [_, v] : vclusters_) {
      v->stop();
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
      co_await standin::runCrds(api_);
      for (auto& [_, v] : vclusters_) {
        co_await standin::runJobs(*v);  // (its pods are synced to this cluster and run here)
      }
      timer_.expires_after(std::chrono::milliseconds(200));
      co_await timer_.async_wait(net::as_tuple(net::use_awaitable));
    }
  }

  net::awaitable<void> ensureNamespaces() {
    for (const char* ns : {"default", "kube-system", "kube-public"}) {
      Json obj = {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", ns}}}};
      co_await api_.api().internal(http::verb::post, "/api/v1/namespaces", obj.dump());
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
            co_await api_.api().internal(http::verb::delete_, hub::objectPath(*t, obj->name, false, ns));
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

  // vCluster StatefulSets: the "pod" is a Kubernetes API served in this process on the node port
  // of the namespace's NodePort service; its kubeconfig goes to the secret the syncer writes.
  net::awaitable<void> vclusters() {
    const auto* t = api_.registry().find("apps", "v1", "statefulsets");
    std::set<std::string> seen;
    for (const auto& rec : api_.store().listPrefix(hub::resourceKey(*t, "")).first) {
      Json sts = Json::parse(rec->bytes, nullptr, false);
      auto syncer = sts.is_object() ? syncerOf(sts) : std::nullopt;
      if (!syncer || sts["metadata"].contains("deletionTimestamp")) {
        continue;
      }
      std::string ns = sts["metadata"].value("namespace", "");
      std::string key = ns + "/" + rec->name;
      seen.insert(key);
      if (vclusters_.count(key)) {
        continue;
      }
      int port = 0;
      for (const auto& svc : api_.store().list("/services/" + ns).first) {
        Json o = Json::parse(svc->bytes, nullptr, false);
        if (o.is_object() && o["spec"].value("type", "") == "NodePort" && o["spec"]["ports"].is_array() &&
            !o["spec"]["ports"].empty()) {
          port = o["spec"]["ports"][0].value("nodePort", 0);
        }
      }
      std::vector<std::string> sans = syncer->tls_sans;
      std::string host;
      std::string out_port;
      if (net_client::splitHttpsUrl(syncer->out_server, host, out_port)) {
        sans.push_back(host);
      }
      std::filesystem::path dir = dir_ / "vclusters" / (ns + "_" + rec->name);
      auto pki = loadOrMakePki(dir / "pki", sans);
      auto ctx = pki ? tls::makeServerContext({pki->ca.cert_pem, pki->serving.cert_pem, pki->serving.key_pem})
                     : Result<std::shared_ptr<ssl::context>>(pki.error());
      if (!ctx) {
        log::error("cannot start a vcluster", {{"statefulset", key}, {"error", ctx.error().message}});
        continue;
      }
      auto vc = standin::ApiServer::start(ioc_, ctx.value(), dir / "vcluster.db", "127.0.0.1",
                                          static_cast<uint16_t>(port), std::chrono::steady_clock::now(),
                                          {{"/livez", "ok"}});
      if (!vc) {
        log::error("cannot start a vcluster", {{"statefulset", key}, {"error", vc.error().message}});
        continue;
      }
      config::Kubeconfig kc = adminKubeconfig(pki.value(), syncer->out_server, "my-vcluster");
      Json secret = {{"apiVersion", "v1"}, {"kind", "Secret"},
                     {"metadata", {{"name", syncer->out_secret}, {"namespace", ns}}},
                     {"data", {{"config", base64Encode(kc.toYaml())}}}};
      auto r = co_await api_.api().internal(
          http::verb::patch, "/api/v1/namespaces/" + ns + "/secrets/" + syncer->out_secret + "?fieldManager=vcluster&force=true",
          secret.dump(), "application/apply-patch+yaml");
      if (r.status != 200 && r.status != 201) {
        log::error("cannot write a vcluster's kubeconfig", {{"statefulset", key}, {"answer", r.body}});
      }
      log::info("vcluster started", {{"statefulset", key}, {"port", std::to_string(vc.value()->port())}});
      vclusters_[key] = std::move(vc.value());
    }
    for (auto it = vclusters_.begin(); it != vclusters_.end();) {
      if (seen.count(it->first)) {
        ++it;
        continue;
      }
      it->second->stop();
      log::info("vcluster stopped", {{"statefulset", it->first}});
      it = vclusters_.erase(it);
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
        if (syncerOf(obj) &&
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
  std::map<std::string, std::unique_ptr<standin::ApiServer>> vclusters_;  // "namespace/statefulset"
  net::steady_timer timer_;
  bool stopping_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  auto parsed = standin::Flags::parse(args, {{"data-dir", false, {}, ""}, {"listen", false, {}, ""}}, true);
  if (!parsed) {
    return standin::commandError(parsed.error().message);
  }
  if (!parsed->has("data-dir")) {
    return standin::commandError("--data-dir is required");
  }
  std::filesystem::path dir = std::filesystem::absolute(parsed->get("data-dir"));
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
  Controllers controllers(ioc, *api.value(), dir);
  controllers.start();
  log::info("kube-cluster serving", {{"url", server}, {"kubeconfig", (dir / "admin.kubeconfig").string()}});
  return standin::runUntilSignalled(ioc, [&] {
    controllers.stop();
    api.value()->stop();
  });
}
