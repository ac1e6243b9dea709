// SPDX-License-Identifier: Apache-2.0
#include "hub/app/hub_app.hpp"

#include <sys/resource.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

#include "hub/agents/enrollment.hpp"
#include "hub/agents/gateway.hpp"
#include "hub/agents/placement.hpp"
#include "hub/api/api_service.hpp"
#include "hub/api/http_server.hpp"
#include "hub/store/object_store.hpp"
#include "shared/common/log.hpp"
#include "shared/common/util.hpp"
#include "shared/common/version.hpp"
#include "shared/config/kubeconfig.hpp"
#include "shared/protocol/link.hpp"
#include "shared/tls/context.hpp"

namespace kflex::hub {
namespace {

namespace fs = std::filesystem;

Result<void> ensureDir(const fs::path& dir, mode_t mode) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return fail("cannot create " + dir.string() + ": " + ec.message());
  }
  if (::chmod(dir.c_str(), mode) != 0) {
    return fail("cannot set the mode of " + dir.string() + ": " + std::strerror(errno));
  }
  return {};
}

Result<tls::KeyPair> loadPair(const fs::path& crt, const fs::path& key) {
  auto c = readFile(crt);
  if (!c) {
    return c.error();
  }
  auto k = readFile(key);
  if (!k) {
    return k.error();
  }
  if (auto r = tls::checkKeyMatches(c.value(), k.value()); !r) {
    return fail(crt.string() + " and " + key.string() + ": " + r.error().message);
  }
  return tls::KeyPair{c.value(), k.value()};
}

Result<void> savePair(const tls::KeyPair& pair, const fs::path& crt, const fs::path& key) {
  if (auto r = writeFileAtomic(key, pair.key_pem, 0600); !r) {
    return r;
  }
  return writeFileAtomic(crt, pair.cert_pem, 0644);
}

bool covers(const tls::CertInfo& info, const std::vector<std::string>& sans) {
  for (const auto& s : sans) {
    const auto& list = tls::isIpAddress(s) ? info.ip_addresses : info.dns_names;
    if (std::find(list.begin(), list.end(), s) == list.end()) {
      return false;
    }
  }
  return true;
}

std::string urlHost(const std::string& host) {
  std::string h = host;
  if (h == "0.0.0.0") {
    h = "127.0.0.1";
  } else if (h == "::") {
    h = "::1";
  }
  return h.find(':') != std::string::npos ? "[" + h + "]" : h;
}

}  // namespace

std::vector<std::string> servingSans(const std::string& host, const std::vector<std::string>& extra) {
  std::vector<std::string> sans = {"localhost", "kflex-hub", "127.0.0.1"};
  auto add = [&](const std::string& s) {
    if (!s.empty() && std::find(sans.begin(), sans.end(), s) == sans.end()) {
      sans.push_back(s);
    }
  };
  if (host == "0.0.0.0" || host == "::") {
    add("::1");
    char name[256] = {};
    if (::gethostname(name, sizeof name - 1) == 0 && isDns1123Subdomain(name)) {
      add(name);
    }
  } else {
    add(host);
  }
  for (const auto& s : extra) {
    add(s);
  }
  return sans;
}

Result<HubPki> ensurePki(const fs::path& data_dir, const std::vector<std::string>& sans, const Clock& clock) {
  fs::path pki = data_dir / "pki";
  if (auto r = ensureDir(pki, 0700); !r) {
    return r.error();
  }
  HubPki out;
  std::error_code ec;
  if (fs::exists(pki / "ca.crt", ec)) {
    auto ca = loadPair(pki / "ca.crt", pki / "ca.key");
    if (!ca) {
      return ca.error();
    }
    out.ca = ca.value();
  } else {
    tls::CertRequest req;
    req.common_name = "kflex-hub-ca";
    req.validity = std::chrono::hours(24 * 365 * 10);
    auto ca = tls::createCa(req, clock);
    if (!ca) {
      return ca.error();
    }
    if (auto r = savePair(ca.value(), pki / "ca.crt", pki / "ca.key"); !r) {
      return r.error();
    }
    out.ca = ca.value();
    log::info("created the hub CA", {{"cert", (pki / "ca.crt").string()}});
  }
  // The serving certificate: reuse unless it misses a SAN, is not from this CA or expires soon.
  bool issue = true;
  if (fs::exists(pki / "server.crt", ec)) {
    auto server = loadPair(pki / "server.crt", pki / "server.key");
    if (server) {
      auto info = tls::inspectCertificate(server->cert_pem);
      if (info && covers(info.value(), sans) && tls::signedBy(server->cert_pem, out.ca.cert_pem) &&
          info->not_after - clock.now() > std::chrono::hours(24 * 30)) {
        out.server = server.value();
        issue = false;
      }
    }
  }
  if (issue) {
    tls::CertRequest req;
    req.common_name = "kflex-hub";
    for (const auto& s : sans) {
      (tls::isIpAddress(s) ? req.ip_addresses : req.dns_names).push_back(s);
    }
    req.server_auth = true;
    req.validity = std::chrono::hours(24 * 365);
    auto server = tls::issueCertificate(out.ca, req, clock);
    if (!server) {
      return server.error();
    }
    if (auto r = savePair(server.value(), pki / "server.crt", pki / "server.key"); !r) {
      return r.error();
    }
    out.server = server.value();
    std::string list;
    for (const auto& s : sans) {
      list += (list.empty() ? "" : ",") + s;
    }
    log::info("issued the hub serving certificate", {{"sans", list}});
  }
  bool admin_ok = false;
  if (fs::exists(pki / "admin.crt", ec)) {
    auto admin = loadPair(pki / "admin.crt", pki / "admin.key");
    if (admin && tls::signedBy(admin->cert_pem, out.ca.cert_pem)) {
      auto info = tls::inspectCertificate(admin->cert_pem);
      if (info && info->not_after - clock.now() > std::chrono::hours(24 * 30)) {
        out.admin = admin.value();
        admin_ok = true;
      }
    }
  }
  if (!admin_ok) {
    tls::CertRequest req;
    req.common_name = "kflex-admin";
    req.organizations = {"system:masters"};
    req.client_auth = true;
    req.validity = std::chrono::hours(24 * 365);
    auto admin = tls::issueCertificate(out.ca, req, clock);
    if (!admin) {
      return admin.error();
    }
    if (auto r = savePair(admin.value(), pki / "admin.crt", pki / "admin.key"); !r) {
      return r.error();
    }
    out.admin = admin.value();
  }
  return out;
}

Result<void> writeAdminKubeconfig(const fs::path& data_dir, const HubPki& pki, const std::string& host, uint16_t port) {
  config::Kubeconfig kc;
  nlohmann::json cluster = {{"server", "https://" + urlHost(host) + ":" + std::to_string(port)},
                            {"certificate-authority-data", base64Encode(pki.ca.cert_pem)}};
  nlohmann::json user = {{"client-certificate-data", base64Encode(pki.admin.cert_pem)},
                         {"client-key-data", base64Encode(pki.admin.key_pem)}};
  kc.setContext("kflex-hub", "kflex-hub", "kflex-admin", cluster, user);
  kc.setCurrentContext("kflex-hub");
  return kc.save(data_dir / "admin.kubeconfig");
}

int runHub(const HubConfig& cfg) {
  log::setLevel(cfg.log_level == "debug" ? log::Level::Debug
                : cfg.log_level == "warn" ? log::Level::Warn
                : cfg.log_level == "error" ? log::Level::Error
                                           : log::Level::Info);
  SystemClock clock;
  // Everything the hub writes (database, WAL, keys) is for its own user only.
  ::umask(077);
  // One descriptor per connection: use the hard limit, as most servers do.
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &files);
  }
  if (auto r = ensureDir(cfg.data_dir, 0700); !r) {
    log::error("cannot start: the data directory is not usable", {{"error", r.error().message}});
    return kExitRuntime;
  }
  auto pki = ensurePki(cfg.data_dir, servingSans(cfg.host(), cfg.tls_sans), clock);
  if (!pki) {
    log::error("cannot start: PKI", {{"error", pki.error().message}});
    return kExitRuntime;
  }
  StoreOptions store_options;
  store_options.event_retention = cfg.event_retention;
  auto store = ObjectStore::open(cfg.data_dir / "hub.db", store_options);
  if (!store) {
    log::error("cannot start: the database cannot be used; check the file or restore it from a backup",
               {{"error", store.error().message}});
    return kExitRuntime;
  }
  auto tls_ctx = tls::makeServerContext({pki->ca.cert_pem, pki->server.cert_pem, pki->server.key_pem});
  if (!tls_ctx) {
    log::error("cannot start: TLS", {{"error", tls_ctx.error().message}});
    return kExitRuntime;
  }
  model::Registry registry = model::kflexRegistry();
  ApiService api(*store.value(), registry, clock, ApiOptions{});
  size_t threads = cfg.threads != 0 ? cfg.threads : std::max(1u, std::thread::hardware_concurrency());
  net::io_context ioc{static_cast<int>(threads)};
  HttpOptions http_options;
  http_options.max_connections = cfg.max_connections;
  http_options.header_timeout = cfg.header_timeout;
  http_options.body_timeout = cfg.body_timeout;
  auto server = HttpServer::create(ioc, tls_ctx.value(), api, cfg.host(), cfg.port(), http_options);
  if (!server) {
    log::error("cannot start", {{"error", server.error().message}});
    return kExitRuntime;
  }
  uint16_t port = server.value()->endpoint().port();
  if (auto r = writeAdminKubeconfig(cfg.data_dir, pki.value(), cfg.host(), port); !r) {
    log::error("cannot start: admin kubeconfig", {{"error", r.error().message}});
    return kExitRuntime;
  }
  std::string url = "https://" + urlHost(cfg.host()) + ":" + std::to_string(port);

  EnrollOptions enroll_options;
  enroll_options.cert_validity = cfg.agent_cert_validity;
  enroll_options.hub_urls = cfg.hub_urls.empty() ? std::vector<std::string>{url} : cfg.hub_urls;
  EnrollmentService enrollment(api, *store.value(), registry, pki->ca, pki->ca.cert_pem, clock, enroll_options);
  GatewayOptions gateway_options;
  gateway_options.lease_renew = cfg.agent_lease_renew;
  gateway_options.lease_duration = cfg.agent_lease_duration;
  gateway_options.heartbeat_persist = std::min(cfg.agent_lease_duration / 2, 4 * cfg.agent_lease_renew);
  gateway_options.expired_grace = cfg.agent_expired_grace;
  AgentGateway gateway(ioc, api, *store.value(), registry, enrollment, clock, gateway_options);
  server.value()->addRoute("/enroll/", [&enrollment](ApiRequest r) { return enrollment.handle(std::move(r)); });
  server.value()->addUpgrade(protocol::kConnectPath,
                             [&gateway](HttpStream& s, http::request<http::string_body> r, tls::PeerIdentity id,
                                        std::string peer) { return gateway.serve(s, std::move(r), std::move(id), std::move(peer)); });
  PlacementController placement(ioc, api, *store.value(), registry, clock);
  gateway.start();
  placement.start();
  server.value()->start();
  log::info("kflex-hub serving", {{"version", kVersion}, {"url", url},
                                  {"kubeconfig", (cfg.data_dir / "admin.kubeconfig").string()},
                                  {"objects", std::to_string(store.value()->size())},
                                  {"revision", std::to_string(store.value()->revision())}});

  net::signal_set signals(ioc, SIGTERM, SIGINT);
  net::steady_timer drain(ioc);
  auto deadline = std::make_shared<std::chrono::steady_clock::time_point>();
  std::function<void()> poll = [&] {
    if (server.value()->connections() == 0 || std::chrono::steady_clock::now() >= *deadline) {
      if (server.value()->connections() > 0) {
        log::warn("stopping with requests still open", {{"connections", std::to_string(server.value()->connections())}});
      }
      ioc.stop();
      return;
    }
    drain.expires_after(std::chrono::milliseconds(50));
    drain.async_wait([&](boost::system::error_code) { poll(); });
  };
  signals.async_wait([&](boost::system::error_code ec, int sig) {
    if (ec) {
      return;
    }
    log::info("stopping", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
    *deadline = std::chrono::steady_clock::now() + cfg.shutdown_grace;
    api.shutdown();
    gateway.stop();
    placement.stop();
    server.value()->stop();
    poll();
  });
  std::vector<std::thread> pool;
  for (size_t i = 1; i < threads; ++i) {
    pool.emplace_back([&ioc] { ioc.run(); });
  }
  ioc.run();
  for (auto& t : pool) {
    t.join();
  }
  store.value()->stop();
  log::info("stopped");
  return kExitOk;
}

}  // namespace kflex::hub
