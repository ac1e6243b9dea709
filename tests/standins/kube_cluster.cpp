// SPDX-License-Identifier: Apache-2.0
// A whole Kubernetes cluster in one process, for tests: the cluster an agent runs vCluster in,
// a hub's hosting cluster, a cluster to adopt. Not a stand-in for one program but for a
// cluster's API and the controllers kflex relies on:
// - the API (core, RBAC, apps, batch, apiextensions; TokenRequest and service-account bearer
//   tokens, cluster-admin bindings honoured) on the hub's machinery;
// - the namespace controller (a deleting namespace is emptied, then goes);
// - workloads: Deployments and StatefulSets report their replicas ready.
//
//   kube-cluster --data-dir DIR [--listen 127.0.0.1:0]
//
// writes DIR/admin.kubeconfig (client certificate, system:masters) once it serves.
#include <iostream>

#include "shared/common/log.hpp"
#include "shared/common/time.hpp"
#include "shared/common/util.hpp"
#include "shared/config/kubeconfig.hpp"
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

Result<ClusterPki> loadOrMakePki(const std::filesystem::path& dir) {
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
  auto serving = tls::issueCertificate(ca.value(),
                                       {"kube-apiserver", {}, {"localhost", "kubernetes", "kubernetes.default.svc"},
                                        {"127.0.0.1"}, false, true, false, std::chrono::hours(24 * 365)},
                                       clock);
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

// The controllers: look at the store every tick and act through the API as a controller would.
class Controllers {
 public:
  Controllers(net::io_context& ioc, standin::ApiServer& api) : ioc_(ioc), api_(api), timer_(ioc) {}
  void start() { net::co_spawn(ioc_, loop(), net::detached); }
  void stop() {
    stopping_ = true;
    timer_.cancel();
  }

 private:
  net::awaitable<void> loop() {
    co_await ensureNamespaces();
    while (!stopping_) {
      co_await namespaces();
      co_await workloads();
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

  // Deployments and StatefulSets: their pods are "running" as soon as they are asked for.
  net::awaitable<void> workloads() {
    for (const char* plural : {"deployments", "statefulsets"}) {
      const auto* t = api_.registry().find("apps", "v1", plural);
      for (const auto& rec : api_.store().listPrefix(hub::resourceKey(*t, "")).first) {
        Json obj = Json::parse(rec->bytes, nullptr, false);
        if (!obj.is_object()) {
          continue;
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
  config::ClusterAccess admin;
  admin.server = "https://127.0.0.1:" + std::to_string(api.value()->port());
  admin.ca_pem = pki->ca.cert_pem;
  admin.client_cert_pem = pki->admin.cert_pem;
  admin.client_key_pem = pki->admin.key_pem;
  config::Kubeconfig kc;
  kc.setAccess("kube-cluster", admin);
  kc.setCurrentContext("kube-cluster");
  if (auto r = kc.save(dir / "admin.kubeconfig"); !r) {
    return standin::commandError(r.error().message);
  }
  Controllers controllers(ioc, *api.value());
  controllers.start();
  log::info("kube-cluster serving", {{"url", admin.server}, {"kubeconfig", (dir / "admin.kubeconfig").string()}});
  return standin::runUntilSignalled(ioc, [&] {
    controllers.stop();
    api.value()->stop();
  });
}
