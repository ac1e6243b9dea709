// SPDX-License-Identifier: Apache-2.0
#include "hub/app/hub_app.hpp"

#include <malloc.h>
#include <openssl/x509v3.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <csignal>
#include <thread>

#ifdef KFLEX_WITH_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#include "hub/agents/enrollment.hpp"
#include "hub/app/leader_elector.hpp"
#include "hub/app/shared_pki.hpp"
#include "hub/agents/gateway.hpp"
#include "hub/agents/tunnel_proxy.hpp"
#include "hub/agents/placement.hpp"
#include "hub/agents/release_controller.hpp"
#include "hub/api/api_service.hpp"
#include "hub/api/control_plane_secrets.hpp"
#include "hub/api/router.hpp"
#include "hub/clusters/cluster_controller.hpp"
#include "shared/tls/secret_box.hpp"
#include "hub/api/http_server.hpp"
#include "hub/store/object_store.hpp"
#include "hub/store/postgres_backend.hpp"
#include "shared/common/log.hpp"
#include "shared/common/service_manager.hpp"
#include "shared/common/util.hpp"
#include "shared/common/version.hpp"
#include "shared/config/kubeconfig.hpp"
#include "shared/protocol/link.hpp"
#include "shared/tls/context.hpp"

namespace kflex::hub {
namespace {

// How often process-wide housekeeping runs.
constexpr std::chrono::seconds kHousekeepingInterval{10};

// Gives freed memory back to the system. Agent links are set up with large TLS buffers that are
// freed right after (LeanStream), and a burst of reconnects would otherwise keep its peak as
// resident memory.
void releaseFreeMemory() {
#ifdef KFLEX_WITH_JEMALLOC
  // MALLCTL_ARENAS_ALL: every arena.
  std::string purge = "arena." + std::to_string(MALLCTL_ARENAS_ALL) + ".purge";
  mallctl(purge.c_str(), nullptr, nullptr, nullptr, 0);
#else
  ::malloc_trim(0);
#endif
}

namespace fs = std::filesystem;

// Routine log lines (one per request) wait at most this long to be written together.
constexpr std::chrono::milliseconds kLogFlushInterval{20};

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

// The store: SQLite in the data dir, or the PostgreSQL database cfg.datastore names.
Result<std::unique_ptr<ObjectStore>> openStore(const HubConfig& cfg, const StoreOptions& options) {
  if (cfg.datastore.empty()) {
    return ObjectStore::open(cfg.data_dir / "hub.db", options);
  }
  auto target = datastoreTarget(cfg);
  if (!target) {
    return target.error();
  }
  auto backend = PostgresBackend::open(target.value());
  if (!backend) {
    return backend.error();
  }
  log::info("storing objects in PostgreSQL", {{"datastore", backend.value()->where()}});
  return ObjectStore::open(std::move(backend.value()), options);
}

// This process's name in the leader election: host, pid and a random part (a restarted replica
// is another holder, which waits for the old lead to lapse).
std::string replicaName() {
  char host[256] = {};
  (void)::gethostname(host, sizeof host - 1);
  return std::string(host) + "/" + std::to_string(::getpid()) + "/" + newUuid().substr(0, 8);
}

}  // namespace

// The PostgreSQL database cfg.datastore names, with the password from its file.
Result<store::PostgresTarget> datastoreTarget(const HubConfig& cfg) {
  store::PostgresTarget target{cfg.datastore, ""};
  if (!cfg.datastore_password_file.empty()) {
    auto text = readFile(cfg.datastore_password_file);
    if (!text) {
      return fail(Errc::Invalid, "datastore_password_file: " + text.error().message);
    }
    std::string first = text->substr(0, text->find('\n'));
    target.password = std::string(trim(first));
  }
  return target;
}

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
  // A rotation in its overlap: the previous CA is still trusted.
  if (fs::exists(pki / "rotation.json", ec)) {
    auto meta = readFile(pki / "rotation.json");
    Json rot = meta ? Json::parse(meta.value(), nullptr, false) : Json();
    auto until = rot.is_object() ? parseTime(rot.value("previousUntil", "")) : std::nullopt;
    auto previous = readFile(pki / "ca-previous.crt");
    auto cross = readFile(pki / "ca-cross.crt");
    if (!until || !previous || !cross) {
      return fail(pki.string() + "/rotation.json, ca-previous.crt or ca-cross.crt is missing or unreadable; "
                  "restore them from a backup, or remove rotation.json to stop trusting the previous CA now");
    }
    if (clock.now() < *until) {
      out.previous_ca_pem = previous.value();
      out.cross_pem = cross.value();
      out.previous_until = *until;
      log::info("CA rotation in progress: the previous CA is trusted until the overlap ends",
                {{"until", formatTime(*until)}});
    } else {
      log::info("the previous CA was retired at the end of the rotation's overlap", {{"retired_at", formatTime(*until)}});
    }
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

Result<std::string> rotateCa(const fs::path& data_dir, std::chrono::seconds overlap, const Clock& clock) {
  fs::path pki = data_dir / "pki";
  std::error_code ec;
  if (!fs::exists(pki / "ca.crt", ec)) {
    return fail("there is no hub CA in " + pki.string() + ": start the hub once with this --data-dir first");
  }
  auto old_ca = loadPair(pki / "ca.crt", pki / "ca.key");
  if (!old_ca) {
    return old_ca.error();
  }
  if (auto meta = readFile(pki / "rotation.json")) {
    Json rot = Json::parse(meta.value(), nullptr, false);
    auto until = rot.is_object() ? parseTime(rot.value("previousUntil", "")) : std::nullopt;
    if (until && clock.now() < *until) {
      return fail("a CA rotation is still in its overlap until " + formatTime(*until) +
                  ": agents may not have the current CA yet; rotate again after that");
    }
  }
  if (overlap < std::chrono::hours(1)) {
    // (Tests use shorter overlaps through the same code; people should not.)
    log::warn("a CA rotation overlap under an hour leaves agents little time to pick up the new CA");
  }
  tls::CertRequest req;
  std::string stamp = formatTime(clock.now());
  std::string compact;
  for (char c : stamp.substr(0, 19)) {
    if (std::isdigit(static_cast<unsigned char>(c))) {
      compact += c;
    }
  }
  req.common_name = "kflex-hub-ca-" + compact;
  req.validity = std::chrono::hours(24 * 365 * 10);
  auto fresh = tls::createCa(req, clock);
  if (!fresh) {
    return fresh.error();
  }
  auto cross = tls::crossSign(fresh.value(), old_ca.value(), overlap + std::chrono::hours(24), clock);
  if (!cross) {
    return cross.error();
  }
  auto until = clock.now() + overlap;
  Json rot = {{"rotatedAt", stamp}, {"previousUntil", formatTime(until)},
              {"previousPin", tls::pinOrEmpty(old_ca->cert_pem)},
              {"currentPin", tls::pinOrEmpty(fresh->cert_pem)}};
  // The previous CA and the overlap first, so that a crash before the new CA is in place leaves
  // the old one working.
  // (One after the other: a failure stops before the next file is touched.)
  if (auto r = writeFileAtomic(pki / "ca-previous.crt", old_ca->cert_pem, 0644); !r) {
    return r.error();
  }
  if (auto r = writeFileAtomic(pki / "ca-cross.crt", cross.value(), 0644); !r) {
    return r.error();
  }
  if (auto r = writeFileAtomic(pki / "rotation.json", rot.dump(2) + "\n", 0644); !r) {
    return r.error();
  }
  if (auto r = savePair(fresh.value(), pki / "ca.crt", pki / "ca.key"); !r) {
    return r.error();
  }
  return "rotated the hub CA: new CA " + req.common_name + " (" + rot["currentPin"].get<std::string>() +
         "); the previous one (" + rot["previousPin"].get<std::string>() + ") stays trusted until " +
         formatTime(until) + ".\nRestart the hub to use it (systemctl restart kflex-hub). Connected agents receive "
         "the new CA bundle and a certificate from the new CA over their links; kubeconfigs made before the "
         "rotation keep working until the overlap ends, and " + (data_dir / "admin.kubeconfig").string() +
         " is rewritten at the restart. `kflex token create` prints the new --ca-cert-hash.";
}

Result<void> withSharedPki(const HubConfig& cfg, const std::function<Result<void>()>& step) {
  if (cfg.secrets_key_file.empty()) {
    return step();
  }
  auto key = tls::SecretBox::openExisting(cfg.secrets_key_file);
  if (!key) {
    return fail(Errc::Invalid, "secrets_key_file: " + key.error().message);
  }
  auto target = datastoreTarget(cfg);
  if (!target) {
    return target.error();
  }
  auto shared = SharedPki::open(target.value(), std::move(key.value()));
  if (!shared) {
    return fail(shared.error().code, "the datastore, which holds the hub's CA and keys, cannot be used: " +
                                         shared.error().message);
  }
  return shared.value()->withFiles(cfg.data_dir / "pki", step);
}

Result<std::string> rotateCa(const HubConfig& cfg, std::chrono::seconds overlap, const Clock& clock) {
  Result<std::string> out = fail("not rotated");
  auto r = withSharedPki(cfg, [&]() -> Result<void> {
    out = rotateCa(cfg.data_dir, overlap, clock);
    return out ? Result<void>{} : Result<void>(out.error());
  });
  if (!r) {
    return r.error();
  }
  if (!cfg.secrets_key_file.empty()) {
    out.value() += "\nThe new CA is in the datastore: restart every replica (one at a time), each picks it up.";
  }
  return out;
}

// Below this much free space on the data disk the hub says at start that writes will fail.
constexpr uint64_t kLowDiskBytes = 1024 * 1024;

Result<void> writeAdminKubeconfig(const fs::path& data_dir, const HubPki& pki, const std::string& host, uint16_t port) {
  config::Kubeconfig kc;
  nlohmann::json cluster = {{"server", "https://" + urlHost(host) + ":" + std::to_string(port)},
                            {"certificate-authority-data", base64Encode(pki.bundle())}};
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
  // A peer that goes away while the hub writes to it must cost only that connection: OpenSSL
  // writes through write(2), which raises SIGPIPE (exit 141) where send(MSG_NOSIGNAL) would not.
  std::signal(SIGPIPE, SIG_IGN);
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
  // (Among replicas, the CA and the sealing key come from the datastore, or go there.)
  Result<HubPki> pki = fail("no PKI");
  auto shared = withSharedPki(cfg, [&]() -> Result<void> {
    pki = ensurePki(cfg.data_dir, servingSans(cfg.host(), cfg.tls_sans), clock);
    if (!pki) {
      return pki.error();
    }
    auto key = tls::SecretBox::openOrCreate(cfg.data_dir / "pki" / "encryption.key");
    return key ? Result<void>{} : Result<void>(key.error());
  });
  if (!shared && pki) {
    pki = shared.error();
  }
  if (!pki) {
    log::error("cannot start: PKI", {{"error", pki.error().message}});
    return kExitRuntime;
  }
  StoreOptions store_options;
  store_options.event_retention = cfg.event_retention;
  auto store = openStore(cfg, store_options);
  if (!store) {
    log::error(cfg.datastore.empty()
                   ? "cannot start: the database cannot be used; if another kflex-hub serves this data dir, stop "
                     "it; otherwise check the file or restore it from a backup"
                   : "cannot start: the datastore cannot be used; check its address, password and that the "
                     "server runs",
               {{"error", store.error().message}});
    return kExitRuntime;
  }
  auto tls_ctx = tls::makeServerContext({pki->bundle(), pki->server.cert_pem + pki->cross_pem, pki->server.key_pem});
  if (!tls_ctx) {
    log::error("cannot start: TLS", {{"error", tls_ctx.error().message}});
    return kExitRuntime;
  }
  model::Registry registry = model::kflexRegistry();
  ApiService api(*store.value(), registry, clock, ApiOptions{});
  // The controllers write through a client of their own: only while this replica leads them,
  // each write fenced by the term it leads under (docs/dev/replicas.md).
  Leadership leadership;
  ApiOptions leader_options;
  leader_options.leadership = &leadership;
  ApiService leader_api(*store.value(), registry, clock, leader_options);
  // The control planes' kubeconfigs are sealed at rest under a key of their own.
  auto box = tls::SecretBox::openOrCreate(cfg.data_dir / "pki" / "encryption.key");
  if (!box) {
    log::error("cannot start: the encryption key", {{"error", box.error().message}});
    return kExitRuntime;
  }
  ControlPlaneSecrets secrets(*store.value(), std::move(box.value()), clock);
  size_t threads = cfg.threads != 0 ? cfg.threads : std::max(1u, std::thread::hardware_concurrency());
  // One event loop per thread. The first (the main thread's) also runs the controllers, the agent
  // gateway's own work, signals and the acceptor; connections are spread over all of them, and
  // each stays on its loop, so its handlers need no strand and wake no other thread.
  net::io_context ioc{1};
  std::vector<std::unique_ptr<net::io_context>> workers;
  std::vector<net::executor_work_guard<net::io_context::executor_type>> keep_running;
  std::vector<net::io_context*> loops = {&ioc};
  for (size_t i = 1; i < threads; ++i) {
    workers.push_back(std::make_unique<net::io_context>(1));
    keep_running.push_back(net::make_work_guard(*workers.back()));
    loops.push_back(workers.back().get());
  }
  // Set once the hub runs: stops it with an error (a listener that can no longer accept).
  std::function<void(std::string)> fail_hub;
  HttpOptions http_options;
  http_options.on_failure = [&ioc, &fail_hub](const std::string& why) {
    net::post(ioc, [&fail_hub, why] {
      if (fail_hub) {
        fail_hub(why);
      }
    });
  };
  http_options.max_connections = cfg.max_connections;
  http_options.max_unauthenticated_per_source = cfg.max_handshakes_per_source;
  http_options.handshake_timeout = cfg.handshake_timeout;
  http_options.header_timeout = cfg.header_timeout;
  http_options.body_timeout = cfg.body_timeout;
  http_options.stream_write_timeout = cfg.stream_write_timeout;
  if (!pki->previous_ca_pem.empty()) {
    // At the end of the overlap the previous CA's certificates stop working, restart or not.
    std::string retired_pin = tls::pinOrEmpty(pki->previous_ca_pem);
    TimePoint until = pki->previous_until;
    std::string when = formatTime(until);
    http_options.vet_identity = [retired_pin, until, when, &clock](tls::PeerIdentity& id) {
      if (!id.ca_pin.empty() && id.ca_pin == retired_pin && clock.now() >= until) {
        id.verified = false;
        id.expired_only = false;
        id.verify_error = "the certificate was issued by the hub's previous CA, retired at " + when +
                          " (CA rotation); use a kubeconfig or agent certificate from the current CA";
      }
    };
  }
  auto server = HttpServer::create(ioc, tls_ctx.value(), api, cfg.host(), cfg.port(), http_options);
  if (!server) {
    log::error("cannot start", {{"error", server.error().message}});
    return kExitRuntime;
  }
  server.value()->setLoops(loops);
  uint16_t port = server.value()->endpoint().port();
  if (auto r = writeAdminKubeconfig(cfg.data_dir, pki.value(), cfg.host(), port); !r) {
    std::error_code exists_ec;
    if (!fs::exists(cfg.data_dir / "admin.kubeconfig", exists_ec)) {
      log::error("cannot start: admin kubeconfig", {{"error", r.error().message}});
      return kExitRuntime;
    }
    // A full data disk must not keep the hub from serving what it has: the earlier file still
    // holds valid credentials (its address is right when the listen address is fixed).
    log::warn("cannot rewrite admin.kubeconfig; the one from an earlier start is kept as it is",
              {{"error", r.error().message}, {"url_now", "https://" + urlHost(cfg.host()) + ":" + std::to_string(port)}});
  }
  if (struct statvfs disk {}; ::statvfs(cfg.data_dir.c_str(), &disk) == 0 &&
                              uint64_t(disk.f_bavail) * disk.f_frsize < kLowDiskBytes) {
    log::warn("the data disk is full: the hub serves reads, and writes fail until space is freed there",
              {{"data_dir", cfg.data_dir.string()},
               {"free_bytes", std::to_string(uint64_t(disk.f_bavail) * disk.f_frsize)}});
  }
  std::string url = "https://" + urlHost(cfg.host()) + ":" + std::to_string(port);

  EnrollOptions enroll_options;
  enroll_options.cert_validity = cfg.agent_cert_validity;
  enroll_options.hub_urls = cfg.hub_urls.empty() ? std::vector<std::string>{url} : cfg.hub_urls;
  enroll_options.previous_ca_pem = pki->previous_ca_pem;
  enroll_options.previous_until = pki->previous_until;
  EnrollmentService enrollment(api, *store.value(), registry, pki->ca, pki->ca.cert_pem, clock, enroll_options);
  // With replicas, how the others reach this one (an agent's status.hubPeer names it).
  std::string peer_url;
  if (!cfg.datastore.empty()) {
    peer_url = cfg.peer_url;
    if (peer_url.empty()) {
      std::string host = cfg.host();
      if (host.empty() || host == "0.0.0.0" || host == "::") {
        char name[256] = {};
        host = ::gethostname(name, sizeof name - 1) == 0 ? name : "localhost";
      }
      peer_url = "https://" + urlHost(host) + ":" + std::to_string(port);
    }
  }
  GatewayOptions gateway_options;
  gateway_options.peer_url = peer_url;
  gateway_options.lease_renew = cfg.agent_lease_renew;
  gateway_options.lease_duration = cfg.agent_lease_duration;
  gateway_options.heartbeat_persist = std::min(cfg.agent_lease_duration / 2, 4 * cfg.agent_lease_renew);
  gateway_options.expired_grace = cfg.agent_expired_grace;
  gateway_options.status_limits = {cfg.agent_status_interval, double(cfg.agent_status_writes_per_second),
                                   cfg.agent_status_burst};
  AgentGateway gateway(ioc, api, leader_api, *store.value(), registry, enrollment, clock, gateway_options);
  gateway.setSecrets(&secrets);
  server.value()->addRoute("/enroll/", [&enrollment](ApiRequest r) { return enrollment.handle(std::move(r)); });
  server.value()->addRoute("/api/v1/", [&secrets](ApiRequest r) { return secrets.handle(std::move(r)); });
  server.value()->addUpgrade(protocol::kConnectPath,
                             [&gateway](std::unique_ptr<HttpStream>& s, http::request<http::string_body> r, tls::PeerIdentity id,
                                        std::string peer) { return gateway.serve(s, std::move(r), std::move(id), std::move(peer)); });
  TunnelProxy tunnel_proxy(*store.value(), registry, gateway, clock);
  if (!peer_url.empty()) {
    // Replicas pass tunnel streams on to the one an agent is linked to, verifying it by the hub's
    // CA as a server (agents' and users' certificates from the same CA are not server ones).
    auto peer_tls = tls::makeClientContext({pki->bundle(), "", ""});
    if (!peer_tls) {
      log::error("cannot start: TLS to the other replicas", {{"error", peer_tls.error().message}});
      return kExitRuntime;
    }
    SSL_CTX_set_purpose(peer_tls.value()->native_handle(), X509_PURPOSE_SSL_SERVER);
    tunnel_proxy.setPeers(peer_url, peer_tls.value());
  }
  server.value()->setConnect([&tunnel_proxy](std::unique_ptr<HttpStream>& s, http::request<http::string_body> r,
                                             tls::PeerIdentity id, std::string peer) {
    return tunnel_proxy.serve(s, std::move(r), std::move(id), std::move(peer));
  });
  // Served kubeconfig secrets reach their control planes through the tunnel (docs/dev/tunnel.md).
  ControlPlaneSecrets::TunnelRoute route;
  route.hub_url = enroll_options.hub_urls.front();
  route.hub_ca_pem = pki->bundle();
  route.api = &api;
  route.tokens = &tenancyType(registry, "bootstraptokens");
  route.reaches = [&tunnel_proxy](const Json& cp) { return tunnel_proxy.reaches(cp); };
  route.token_valid = [&tunnel_proxy](const std::string& token, const std::string& cp) {
    return tunnel_proxy.opens(token, cp);
  };
  secrets.setTunnelRoute(std::move(route));
  PlacementController placement(ioc, api, leader_api, *store.value(), registry, clock);
  ClusterOptions cluster_options;
  if (!cfg.hosting_kubeconfig.empty()) {
    auto kc = config::Kubeconfig::load(cfg.hosting_kubeconfig);
    auto access = kc ? kc->access(cfg.hosting_context) : Result<config::ClusterAccess>(kc.error());
    if (!access) {
      log::error("cannot start: the hosting cluster's kubeconfig",
                 {{"file", cfg.hosting_kubeconfig.string()}, {"error", access.error().message}});
      return kExitRuntime;
    }
    cluster_options.hosting = access.value();
  }
  ClusterController clusters(ioc, leader_api, *store.value(), registry, secrets, clock, cluster_options);
  ReleaseController release(ioc, leader_api, *store.value(), registry, clock, cfg.agent_lost_release);
  release.setSecrets(&secrets);
  // On a database of its own the hub always leads; among replicas it takes part in the election.
  std::unique_ptr<LeaderElector> elector;
  if (auto election = store.value()->leaderElection(replicaName(), LeadOptions{}.lease)) {
    elector = std::make_unique<LeaderElector>(std::move(election), leadership, LeadOptions{});
  } else {
    leadership.set(1);
  }
  // SIGTERM and SIGINT are ours before the hub says it serves (systemd may stop it as soon as it is
  // ready): one that comes before the wait below is queued for it, never the default death.
  net::signal_set signals(ioc, SIGTERM, SIGINT);
  gateway.start();
  placement.start();
  clusters.start();
  release.start();
  if (elector) {
    elector->start();
  }
  server.value()->start();
  log::info("kflex-hub serving", {{"version", kVersion}, {"url", url},
                                  {"kubeconfig", (cfg.data_dir / "admin.kubeconfig").string()},
                                  {"objects", std::to_string(store.value()->size())},
                                  {"revision", std::to_string(store.value()->revision())}});
  // From here on, request lines and other routine lines are written in batches (warnings and
  // errors at once): one write(2) per batch instead of one per request.
  log::setBuffered(kLogFlushInterval);
  service::ready("serving " + url + ", " + std::to_string(store.value()->size()) + " objects");
  service::Watchdog watchdog(ioc.get_executor());
  watchdog.start();
  net::steady_timer housekeeping(ioc);
  std::function<void()> housekeep = [&] {
    housekeeping.expires_after(kHousekeepingInterval);
    housekeeping.async_wait([&](boost::system::error_code ec) {
      if (!ec) {
        releaseFreeMemory();
        housekeep();
      }
    });
  };
  housekeep();

  net::steady_timer drain(ioc);
  auto deadline = std::make_shared<std::chrono::steady_clock::time_point>();
  std::function<void()> poll = [&] {
    if (server.value()->connections() == 0 || std::chrono::steady_clock::now() >= *deadline) {
      if (server.value()->connections() > 0) {
        log::warn("stopping with requests still open", {{"connections", std::to_string(server.value()->connections())}});
      }
      ioc.stop();  // the other loops are stopped once the main one returns
      return;
    }
    drain.expires_after(std::chrono::milliseconds(50));
    drain.async_wait([&](boost::system::error_code) { poll(); });
  };
  bool stopping = false;
  int exit_code = kExitOk;
  auto stop_all = [&] {
    if (std::exchange(stopping, true)) {
      return;
    }
    service::stopping();
    watchdog.stop();
    *deadline = std::chrono::steady_clock::now() + cfg.shutdown_grace;
    api.shutdown();
    if (elector) {
      elector->stop();  // another replica's controllers take over at once
    }
    housekeeping.cancel();
    gateway.stop();
    placement.stop();
    release.stop();
    clusters.stop();
    server.value()->stop();
    poll();
  };
  signals.async_wait([&](boost::system::error_code ec, int sig) {
    if (ec) {
      return;
    }
    log::info("stopping", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
    stop_all();
  });
  fail_hub = [&](const std::string& why) {
    // No more pings: a supervisor restarts a hub that cannot serve.
    log::error("stopping: the hub can no longer serve", {{"error", why}});
    exit_code = kExitRuntime;
    signals.cancel();
    stop_all();
  };
  std::vector<std::thread> pool;
  for (size_t i = 0; i < workers.size(); ++i) {
    pool.emplace_back([w = workers[i].get(), i] {
      setThreadName("net-" + std::to_string(i + 1));
      w->run();
    });
  }
  ioc.run();
  for (auto& worker : workers) {
    worker->stop();  // they never end on their own
  }
  for (auto& t : pool) {
    t.join();
  }
  fail_hub = nullptr;
  store.value()->stop();
  log::info("stopped");
  log::flush();
  return exit_code;
}

}  // namespace kflex::hub
