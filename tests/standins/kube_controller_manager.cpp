// SPDX-License-Identifier: Apache-2.0
// Stand-in for kube-controller-manager as the k8s type runs it. spf13/pflag parsing (unknown
// flags refused), the files it is given must exist, the --controllers names must be known ones,
// it reaches its API server with the client certificate of --kubeconfig, and serves /healthz on
// --bind-address:--secure-port (default 0.0.0.0:10257) with a self-signed certificate, 200 once
// it has reached the API server (it "acquires its lease"), 500 while it cannot.
#include <iostream>
#include <set>

#include "shared/common/log.hpp"
#include "shared/common/util.hpp"
#include "shared/config/kubeconfig.hpp"
#include "shared/net/https_client.hpp"
#include "shared/tls/context.hpp"
#include "shared/tls/pki.hpp"
#include "tests/standins/standin.hpp"

namespace {

using namespace kflex;

std::vector<standin::FlagSpec> kcmFlags() {
  std::vector<standin::FlagSpec> f;
  for (const char* n : {"kubeconfig", "authentication-kubeconfig", "authorization-kubeconfig", "bind-address",
                        "secure-port", "client-ca-file", "cluster-name", "cluster-signing-cert-file",
                        "cluster-signing-key-file", "controllers", "requestheader-client-ca-file", "root-ca-file",
                        "service-account-private-key-file", "service-cluster-ip-range", "cluster-cidr", "master",
                        "v", "authorization-always-allow-paths", "feature-gates", "node-monitor-grace-period",
                        "tls-cert-file", "tls-private-key-file", "cert-dir", "leader-elect-resource-namespace",
                        "cluster-signing-kube-apiserver-client-cert-file", "cluster-signing-kube-apiserver-client-key-file",
                        "cluster-signing-kubelet-client-cert-file", "cluster-signing-kubelet-client-key-file",
                        "cluster-signing-kubelet-serving-cert-file", "cluster-signing-kubelet-serving-key-file",
                        "cluster-signing-legacy-unknown-cert-file", "cluster-signing-legacy-unknown-key-file"}) {
    f.push_back({n, false, {}, ""});
  }
  for (const char* n : {"leader-elect", "use-service-account-credentials", "profiling", "allocate-node-cidrs"}) {
    f.push_back({n, true, {}, ""});
  }
  return f;
}

// The controllers kube-controller-manager v1.29 knows (--controllers; "*" and "-name" too).
const std::set<std::string> kControllers = {
    "attachdetach", "bootstrapsigner", "clusterrole-aggregation", "cronjob", "csrapproving", "csrcleaner",
    "csrsigning", "daemonset", "deployment", "disruption", "endpoint", "endpointslice", "endpointslicemirroring",
    "ephemeral-volume", "garbagecollector", "horizontalpodautoscaling", "job", "legacy-serviceaccount-token-cleaner",
    "namespace", "nodeipam", "nodelifecycle", "persistentvolume-binder", "persistentvolume-expander", "podgc",
    "pv-protection", "pvc-protection", "replicaset", "replicationcontroller", "resourcequota", "root-ca-cert-publisher",
    "serviceaccount", "serviceaccount-token", "statefulset", "tokencleaner", "ttl", "ttl-after-finished",
    "cloud-node-lifecycle", "route", "service", "storage-version-gc", "resourceclaim", "validatingadmissionpolicy-status",
    "service-cidr-controller", "storageversion-garbage-collector"};

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args[0] == "--version") {
    std::cout << "Kubernetes v1.29.9 (kflex-standin)\n";
    return 0;
  }
  auto parsed = standin::Flags::parse(args, kcmFlags(), true);
  if (!parsed) {
    return standin::commandError(parsed.error().message);
  }
  const auto& f = parsed.value();
  for (const auto& c : f.all("controllers")) {
    std::string name = c[0] == '-' ? c.substr(1) : c;
    if (name != "*" && !kControllers.count(name)) {
      return standin::commandError("\"" + name + "\" is not in the list of known controllers");
    }
  }
  for (const char* flag : {"kubeconfig", "authentication-kubeconfig", "authorization-kubeconfig", "client-ca-file",
                           "cluster-signing-cert-file", "cluster-signing-key-file", "requestheader-client-ca-file",
                           "root-ca-file", "service-account-private-key-file"}) {
    if (f.has(flag) && !readFile(f.get(flag))) {
      return standin::commandError("open " + f.get(flag) + ": no such file or directory");
    }
  }
  if (!f.has("kubeconfig") && !f.has("master")) {
    return standin::commandError("--kubeconfig or --master is required (this stand-in does not run in a cluster)");
  }
  auto kc = config::Kubeconfig::load(f.get("kubeconfig"));
  auto access = kc ? kc->access() : Result<config::ClusterAccess>(kc.error());
  if (!access) {
    return standin::commandError("invalid kubeconfig: " + access.error().message);
  }
  if (f.has("master")) {
    access->server = f.get("master");
  }
  // Its own serving certificate, self-signed in memory as the real one's is without --tls-cert-file.
  SystemClock clock;
  tls::CertRequest req;
  req.common_name = "localhost@" + std::to_string(::getpid());
  req.is_ca = true;
  req.server_auth = true;
  req.dns_names = {"localhost"};
  req.ip_addresses = {"127.0.0.1"};
  auto self = tls::createCa(req, clock);
  auto ctx = self ? tls::makeServerContext({"", self->cert_pem, self->key_pem}) : Result<std::shared_ptr<ssl::context>>(self.error());
  if (!ctx) {
    return standin::commandError(ctx.error().message);
  }
  net::io_context ioc{1};
  std::string apiserver_problem = "not reached yet";
  int port = std::atoi(f.get("secure-port", "10257").c_str());
  std::string bind = f.get("bind-address", "0.0.0.0");
  auto server = standin::ApiServer::start(ioc, ctx.value(), "kcm-standin.db", bind, static_cast<uint16_t>(port),
                                          std::chrono::steady_clock::now(), {});
  if (!server) {
    return standin::commandError("failed to create listener: failed to listen on " + bind + ":" + std::to_string(port) + ": " +
                server.error().message);
  }
  server.value()->setReadiness([&](std::string& body) {
    body = "[-]leaderElection failed: " + apiserver_problem + "\nhealthz check failed\n";
    return apiserver_problem.empty();
  });
  log::info("Serving securely on " + bind + ":" + std::to_string(port));
  auto client = net_client::HttpsClient::create(access.value());
  if (!client) {
    return standin::commandError(client.error().message);
  }
  // Reaches the API server like its leader election does; /healthz follows.
  std::thread prober([&] {
    bool announced = false;
    while (!ioc.stopped()) {
      auto r = client.value()->request(http::verb::get, "/readyz", "", "application/json", std::chrono::seconds(2));
      std::string now = !r ? r.error().message : r->status == 200 ? "" : "the API server answered " + std::to_string(r->status);
      net::post(ioc, [&, now] { apiserver_problem = now; });
      if (now.empty() && !announced) {
        log::info("successfully acquired lease kube-system/kube-controller-manager");
        announced = true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  });
  int rc = standin::runUntilSignalled(ioc, [&] { server.value()->stop(); });
  prober.join();
  return rc;
}
