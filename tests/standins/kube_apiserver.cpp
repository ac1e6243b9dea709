// SPDX-License-Identifier: Apache-2.0
// Stand-in for kube-apiserver as the k8s type runs it (KubeFlex's flags). Strict where the agent
// depends on it: spf13/pflag parsing (unknown flags refused), the required flags (--etcd-servers,
// the service-account trio), the certificate files it is given (read and served: TLS with
// --tls-cert-file, client certificates checked against --client-ca-file), --bind-address and
// --secure-port (default 0.0.0.0:6443), /livez, and /readyz that fails until start-up is over
// and while its storage (Kine) does not answer. Behind it is the hub's API machinery on a
// SQLite file in its working directory, not etcd.
#include <iostream>

#include "shared/common/log.hpp"
#include "shared/common/util.hpp"
#include "shared/tls/context.hpp"
#include "tests/standins/standin.hpp"

namespace {

using namespace kflex;

std::vector<standin::FlagSpec> apiserverFlags() {
  std::vector<standin::FlagSpec> f;
  for (const char* n : {"advertise-address", "authorization-mode", "bind-address", "client-ca-file",
                        "enable-admission-plugins", "disable-admission-plugins", "etcd-servers", "etcd-prefix",
                        "etcd-cafile", "etcd-certfile", "etcd-keyfile", "kubelet-client-certificate",
                        "kubelet-client-key", "kubelet-preferred-address-types", "proxy-client-cert-file",
                        "proxy-client-key-file", "requestheader-allowed-names", "requestheader-client-ca-file",
                        "requestheader-extra-headers-prefix", "requestheader-group-headers",
                        "requestheader-username-headers", "secure-port", "service-account-issuer",
                        "service-account-key-file", "service-account-signing-key-file", "service-cluster-ip-range",
                        "service-node-port-range", "tls-cert-file", "tls-private-key-file", "endpoint-reconciler-type",
                        "v", "feature-gates", "egress-selector-config-file", "encryption-provider-config",
                        "audit-log-path", "audit-policy-file", "api-audiences", "runtime-config",
                        "shutdown-delay-duration", "livez-grace-period", "external-hostname", "cert-dir",
                        "token-auth-file", "authorization-webhook-config-file", "oidc-issuer-url"}) {
    f.push_back({n, false, {}, ""});
  }
  for (const char* n : {"allow-privileged", "enable-bootstrap-token-auth", "profiling", "anonymous-auth",
                        "enable-aggregator-routing", "storage-backend-healthcheck"}) {
    f.push_back({n, true, {}, ""});
  }
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args[0] == "--version") {
    std::cout << "Kubernetes v1.29.9 (kflex-standin)\n";
    return 0;
  }
  auto parsed = standin::Flags::parse(args, apiserverFlags(), true);
  if (!parsed) {
    return standin::commandError(parsed.error().message);
  }
  const auto& f = parsed.value();
  std::vector<std::string> missing;
  if (!f.has("service-account-issuer")) {
    missing.push_back("service-account-issuer is a required flag");
  }
  if (!f.has("service-account-signing-key-file") || !f.has("service-account-issuer")) {
    missing.push_back("--service-account-signing-key-file and --service-account-issuer are required flags");
  }
  if (!missing.empty()) {
    std::string all;
    for (const auto& m : missing) {
      all += (all.empty() ? "" : ", ") + m;
    }
    return standin::commandError("[" + all + "]");
  }
  if (!f.has("etcd-servers")) {
    return standin::commandError("[--etcd-servers must be specified]");
  }
  // Every file it is given must be readable, as the real one loads them at start.
  for (const char* flag : {"tls-cert-file", "tls-private-key-file", "client-ca-file", "service-account-key-file",
                           "service-account-signing-key-file", "proxy-client-cert-file", "proxy-client-key-file",
                           "requestheader-client-ca-file", "kubelet-client-certificate", "kubelet-client-key"}) {
    if (f.has(flag)) {
      if (auto r = readFile(f.get(flag)); !r) {
        return standin::commandError("open " + f.get(flag) + ": no such file or directory");
      }
    }
  }
  if (!f.has("tls-cert-file") || !f.has("tls-private-key-file")) {
    return standin::commandError("this stand-in needs --tls-cert-file and --tls-private-key-file (it does not generate certificates)");
  }
  auto ctx = tls::makeServerContext({f.has("client-ca-file") ? readFile(f.get("client-ca-file")).value() : "",
                                     readFile(f.get("tls-cert-file")).value(),
                                     readFile(f.get("tls-private-key-file")).value()});
  if (!ctx) {
    return standin::commandError("unable to load server certificate: " + ctx.error().message);
  }
  std::string etcd = split(f.get("etcd-servers"), ',').front();
  int port = std::atoi(f.get("secure-port", "6443").c_str());
  std::string bind = f.get("bind-address", "0.0.0.0");
  net::io_context ioc{1};
  auto ready_at = std::chrono::steady_clock::now() + standin::startupDelay(std::chrono::milliseconds(1500));
  // /readyz, as the real one: every check, and etcd's from the storage it was given.
  std::string etcd_problem = standin::etcdHealth(etcd, std::chrono::milliseconds(500));
  auto api = standin::ApiServer::start(ioc, ctx.value(), "apiserver-standin.db", bind, static_cast<uint16_t>(port),
                                       ready_at, {{"/livez", "ok"}, {"/healthz", "ok"}});
  if (!api) {
    return standin::commandError("failed to listen on " + bind + ":" + std::to_string(port) + ": " + api.error().message);
  }
  auto* server = api.value().get();
  server->setReadiness([&](std::string& body) {
    if (!etcd_problem.empty()) {
      body = "[+]ping ok\n[+]log ok\n[-]etcd failed: " + etcd_problem + "\nreadyz check failed\n";
      return false;
    }
    return true;
  });
  log::info("Serving securely on " + bind + ":" + std::to_string(port));
  net::steady_timer probe(ioc);
  std::function<void()> tick = [&] {
    probe.expires_after(std::chrono::milliseconds(500));
    probe.async_wait([&](boost::system::error_code e) {
      if (e) {
        return;
      }
      std::string now = standin::etcdHealth(etcd, std::chrono::milliseconds(500));
      if (now != etcd_problem) {
        log::info(now.empty() ? "etcd is healthy" : "etcd check failed: " + now);
        etcd_problem = now;
      }
      tick();
    });
  };
  tick();
  return standin::runUntilSignalled(ioc, [&] {
    probe.cancel();
    server->stop();
  });
}
