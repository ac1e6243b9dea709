// SPDX-License-Identifier: Apache-2.0
#include "agent/agent_app.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <iostream>
#include <thread>

#include <optional>

#include "agent/host/cgroups.hpp"
#include "agent/host/ports.hpp"
#include "agent/host/supervisor.hpp"
#include "agent/link/enroll.hpp"
#include "agent/link/hub_link.hpp"
#include "agent/reconcile/reconciler.hpp"
#include "agent/state/agent_state.hpp"
#include "shared/common/file_lock.hpp"
#include "shared/common/log.hpp"
#include "shared/common/service_manager.hpp"
#include "shared/common/time.hpp"
#include "shared/common/util.hpp"
#include "shared/common/version.hpp"
#include "shared/config/kubeconfig.hpp"
#include "shared/net/https_client.hpp"
#include "shared/model/resource.hpp"
#include "shared/tls/pki.hpp"

namespace kflex::agent {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
std::atomic<bool> g_stop{false};

void onSignal(int) { g_stop = true; }

// Log level, umask, the data directory (0700), its lock (held in `lock` until the caller ends)
// and agent.db: what running and enrolling share. One agent per data directory: a second one
// would take the hub link from the first and start the same control planes twice.
Result<std::unique_ptr<AgentState>> openState(const AgentConfig& cfg, std::optional<FileLock>& lock) {
  log::setLevel(cfg.log_level == "debug" ? log::Level::Debug
                : cfg.log_level == "warn" ? log::Level::Warn
                : cfg.log_level == "error" ? log::Level::Error
                                           : log::Level::Info);
  ::umask(077);
  std::error_code ec;
  fs::create_directories(cfg.data_dir, ec);
  if (ec || ::chmod(cfg.data_dir.c_str(), 0700) != 0) {
    return fail("the data directory " + cfg.data_dir.string() + " is not usable: " +
                (ec ? ec.message() : std::string(std::strerror(errno))));
  }
  auto held = FileLock::acquire(cfg.data_dir / "agent.lock",
                                "another kflex-agent uses this data directory; stop it first (systemctl stop "
                                "kflex-agent) or give this one another --data-dir");
  if (!held) {
    return held.error();
  }
  lock.emplace(std::move(held.value()));
  auto state = AgentState::open(cfg.data_dir);
  if (!state) {
    return fail("agent.db: " + state.error().message);
  }
  return std::move(state.value());
}

// agent.yaml as `enroll` leaves it: what later starts need, never the token (it is spent).
std::string renderConfig(const AgentConfig& cfg, const std::string& name) {
  std::string out = "# Written by `kflex-agent enroll`; see kflex-agent(8). The token is not kept: it was used once.\n";
  out += "hub_urls: " + Json(cfg.hub_urls).dump() + "\n";
  out += "name: " + Json(name).dump() + "\n";
  if (!cfg.labels.empty()) {
    out += "labels: " + Json(cfg.labels).dump() + "\n";
  }
  if (cfg.data_dir != AgentConfig{}.data_dir) {
    out += "data_dir: " + Json(cfg.data_dir.string()).dump() + "\n";
  }
  if (cfg.log_level != AgentConfig{}.log_level) {
    out += "log_level: " + Json(cfg.log_level).dump() + "\n";
  }
  return out;
}

}  // namespace

int enrollAgent(const AgentConfig& cfg, const std::filesystem::path& config_path, std::ostream& out,
                std::ostream& err) {
  if (cfg.hub_urls.empty() || (cfg.token.empty() && cfg.token_file.empty()) || cfg.ca_cert_hash.empty()) {
    err << "kflex-agent enroll: --hub, --token (or --token-file) and --ca-cert-hash are required; "
           "`kflex token create` on the hub prints them\n";
    return kExitConfig;
  }
  std::optional<FileLock> lock;
  auto state = openState(cfg, lock);
  if (!state) {
    err << "kflex-agent enroll: " << state.error().message << "\n";
    return kExitRuntime;
  }
  if (fs::exists(certPath(cfg.data_dir))) {
    auto identity = loadIdentity(cfg.data_dir, *state.value());
    if (identity) {
      out << "already enrolled as " << identity->name << "; nothing to do (to enroll again, stop the agent and "
          << "remove " << (cfg.data_dir / "pki").string() << ")\n";
      return kExitOk;
    }
    err << "kflex-agent enroll: " << (cfg.data_dir / "pki").string() << " holds unusable credentials ("
        << identity.error().message << "); remove it to enroll again\n";
    return kExitRuntime;
  }
  std::signal(SIGTERM, onSignal);
  std::signal(SIGINT, onSignal);
  auto identity = enroll(cfg, *state.value(), g_stop);
  if (!identity) {
    err << "kflex-agent enroll: " << identity.error().message << "\n";
    return g_stop ? kExitOk : kExitRuntime;
  }
  std::string text = renderConfig(cfg, identity->name);
  std::error_code ec;
  if (fs::exists(config_path, ec)) {
    fs::path backup = config_path;
    backup += ".bak";
    fs::copy_file(config_path, backup, fs::copy_options::overwrite_existing, ec);
    if (!ec) {
      out << "kept the previous " << config_path.string() << " as " << backup.string() << "\n";
    }
  }
  fs::create_directories(config_path.parent_path(), ec);
  if (auto r = writeFileAtomic(config_path, text, 0644); !r) {
    err << "kflex-agent enroll: enrolled, but cannot write " << config_path.string() << ": " << r.error().message
        << "; start the agent with --hub " << cfg.hub_urls.front() << "\n";
    return kExitRuntime;
  }
  out << "enrolled as " << identity->name << " with " << cfg.hub_urls.front() << "; wrote " << config_path.string()
      << "\nstart the agent: systemctl enable --now kflex-agent (or: kflex-agent run --config "
      << config_path.string() << ")\n";
  return kExitOk;
}

int runAgent(const AgentConfig& cfg) {
  std::optional<FileLock> lock;
  auto state = openState(cfg, lock);
  if (!state) {
    log::error("cannot start", {{"error", state.error().message}});
    return kExitRuntime;
  }
  std::error_code ec;
  // A hub (or a control plane's client) that goes away while the agent writes to it costs only
  // that connection: OpenSSL writes through write(2), which raises SIGPIPE. (Its programs start
  // with every signal at its default.)
  std::signal(SIGPIPE, SIG_IGN);
  // Enrollment blocks (with its own retries) before the event loop starts; signals stop it.
  std::signal(SIGTERM, onSignal);
  std::signal(SIGINT, onSignal);
  auto identity = loadIdentity(cfg.data_dir, *state.value());
  if (!identity) {
    if (fs::exists(certPath(cfg.data_dir), ec)) {
      log::error("cannot start: the agent's credentials are unusable", {{"error", identity.error().message}});
      return kExitRuntime;
    }
    identity = enroll(cfg, *state.value(), g_stop);
    if (!identity) {
      log::error("enrollment failed", {{"error", identity.error().message}});
      return g_stop ? kExitOk : kExitRuntime;
    }
  } else if (!cfg.name.empty() && cfg.name != identity->name) {
    log::error("cannot start: this host is enrolled under another name",
               {{"enrolled_as", identity->name}, {"configured", cfg.name},
                {"hint", "remove --name or delete " + (cfg.data_dir / "pki").string() + " to enroll again"}});
    return kExitConfig;
  }
  // URLs given now come first; the ones learned at enrollment stay as fallbacks.
  std::vector<std::string> urls = cfg.hub_urls;
  for (const auto& u : identity->hub_urls) {
    if (std::find(urls.begin(), urls.end(), u) == urls.end()) {
      urls.push_back(u);
    }
  }
  if (urls.empty()) {
    log::error("cannot start: no hub URL is known; pass --hub or set hub_urls in agent.yaml");
    return kExitConfig;
  }
  identity->hub_urls = urls;
  if (auto info = tls::inspectCertificate(identity->cert_pem); info) {
    log::info("kflex-agent starting", {{"version", kVersion}, {"agent", identity->name}, {"hub", urls.front()},
                                       {"certificate_expires", formatTime(info->not_after)},
                                       {"data_dir", cfg.data_dir.string()}});
  }

  net::io_context ioc{1};
  // The control planes: started (or adopted) from agent.db before the hub is reached, so that
  // they run whether or not the hub answers (the reconciler's first round).
  runtime::RuntimeConfig rcfg;
  // (Absolute: programs start in their own working directories.)
  rcfg.bin_dir = std::filesystem::absolute(cfg.bin_dir);
  rcfg.programs = cfg.programs;
  rcfg.isolate = cfg.isolate;
  rcfg.k3s_node_agent = cfg.k3s_node_agent;
  rcfg.advertise_address = cfg.advertise_address;
  rcfg.postgres_dsn = cfg.postgres_dsn;
  if (!cfg.postgres_password_file.empty()) {
    auto pw = readFile(cfg.postgres_password_file);
    if (!pw) {
      log::error("cannot start: postgres_password_file is not readable", {{"error", pw.error().message}});
      return kExitConfig;
    }
    rcfg.postgres_password = std::string(trim(pw.value()));
  }
  for (const auto& [type, limits] : cfg.control_plane_limits) {
    runtime::Limits l = runtime::defaultLimits(type);
    if (auto it = limits.find("memory"); it != limits.end()) {
      l.memory_bytes = model::parseQuantity(it->second, false).value_or(l.memory_bytes);
    }
    if (auto it = limits.find("cpu"); it != limits.end()) {
      l.cpu_millis = model::parseQuantity(it->second, true).value_or(l.cpu_millis);
    }
    rcfg.limits[type] = l;
  }
  if (!cfg.cluster_kubeconfig.empty()) {
    auto kc = config::Kubeconfig::load(cfg.cluster_kubeconfig);
    auto access = kc ? kc->access(cfg.cluster_context) : Result<config::ClusterAccess>(kc.error());
    if (!access) {
      log::error("cannot start: cluster_kubeconfig", {{"file", cfg.cluster_kubeconfig}, {"error", access.error().message}});
      return kExitConfig;
    }
    rcfg.cluster = access.value();
    rcfg.cluster_node = cfg.cluster_node_address;
  }
  if (rcfg.advertise_address.empty()) {
    std::string host;
    std::string port;
    if (splitHttpsUrl(urls.front(), host, port)) {
      rcfg.advertise_address = runtime::localAddressTowards(host);
    }
  }
  // The tunnel's streams go to the API servers of the control planes desired here, at the address
  // they are reached at, and nowhere else (docs/dev/tunnel.md).
  LinkOptions link_options;
  const Reconciler* reconciling = nullptr;  // (made below; the link starts after it)
  link_options.resolve_api = [&state, &rcfg, &reconciling](const std::string& name) -> Result<Tunnels::Target> {
    bool desired = false;
    for (const auto& d : state.value()->desired()) {
      desired = desired || d.name == name;
    }
    if (!desired) {
      return fail(Errc::NotFound, "no control plane " + name + " on this agent");
    }
    // Where its runtime says it serves (a vCluster: its NodePort on its cluster's node; an adopted
    // cluster: its server, maybe a name this host resolves); otherwise the port kept for it here.
    auto observed = reconciling != nullptr ? reconciling->observe(name) : std::nullopt;
    std::string host;
    std::string port_text;
    if (observed && observed->endpoint && splitHttpsUrl(*observed->endpoint, host, port_text)) {
      int port = std::atoi(port_text.c_str());
      if (port > 0 && port < 65536) {
        return Tunnels::Target(host, uint16_t(port));  // (an adopted cluster's may be a name)
      }
    }
    uint16_t port = state.value()->controlPlane(name).port(PortRole::Api);
    boost::system::error_code ec;
    auto address = net::ip::make_address(rcfg.advertise_address, ec);
    if (port == 0 || ec) {
      return fail(Errc::Unavailable, "control plane " + name + " has no API server on this agent's network (yet)");
    }
    return net::ip::tcp::endpoint(address, port);
  };
  std::unique_ptr<HubLink> link;
  try {
    link = std::make_unique<HubLink>(ioc, identity.value(), *state.value(), cfg.data_dir, std::move(link_options));
  } catch (const std::exception& e) {
    log::error("cannot start", {{"error", e.what()}});
    return kExitRuntime;
  }
  SystemClock clock;
  Reconciler reconciler(ioc.get_executor(), rcfg, *state.value(), cfg.data_dir, clock);
  reconciling = &reconciler;
  link->setCapacity(cfg.capacity);
  // What this host can run: vcluster needs a cluster near it, k8s a shared PostgreSQL.
  std::vector<std::string> types;
  for (const auto& t : model::controlPlaneTypes()) {
    bool needs_met = t.agent_needs == model::AgentNeeds::Nothing ||
                     (t.agent_needs == model::AgentNeeds::Datastore && !rcfg.postgres_dsn.empty()) ||
                     (t.agent_needs == model::AgentNeeds::Cluster && rcfg.cluster);
    if (model::agentServes(t.name) && needs_met) {
      types.emplace_back(t.name);
    }
  }
  link->setControlPlaneTypes(types);
  std::signal(SIGTERM, SIG_DFL);
  std::signal(SIGINT, SIG_DFL);
  net::signal_set signals(ioc, SIGTERM, SIGINT);
  if (g_stop) {
    return kExitOk;
  }
  // The agent serves as soon as its state is open and its link runs: it keeps working (and
  // keeps its control planes running) while the hub is out of reach.
  service::Watchdog watchdog(ioc.get_executor());
  signals.async_wait([&](boost::system::error_code e, int sig) {
    if (e) {
      return;
    }
    log::info("stopping", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
    service::stopping();
    watchdog.stop();
    reconciler.stop();  // (the control planes keep running; the next agent adopts them)
    link->stop();
  });
  // The reconciler first: control planes start (or are adopted) before the hub is reached.
  net::co_spawn(ioc, reconciler.run(), net::detached);
  net::co_spawn(ioc, link->run(), [&](std::exception_ptr e) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        log::error("hub link failed", {{"error", ex.what()}});
      }
    }
    signals.cancel();
    watchdog.stop();
    reconciler.stop();
  });
  service::ready("agent " + identity->name + ", hub " + urls.front());
  watchdog.start();
  ioc.run();
  log::info("stopped");
  return kExitOk;
}

int printLogs(const AgentConfig& cfg, const std::string& cp, const std::string& component, size_t max_bytes,
              std::ostream& out, std::ostream& err) {
  fs::path dir = cfg.data_dir / "cp" / cp / "logs";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    err << "kflex-agent logs: no control plane \"" << cp << "\" runs on this agent (no " << dir.string() << ")\n";
    return kExitRuntime;
  }
  std::vector<std::string> components;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".log") {
      components.push_back(e.path().stem().string());
    }
  }
  std::sort(components.begin(), components.end());
  if (!component.empty()) {
    if (std::find(components.begin(), components.end(), component) == components.end()) {
      std::string known;
      for (const auto& c : components) {
        known += (known.empty() ? "" : ", ") + c;
      }
      err << "kflex-agent logs: control plane " << cp << " has no component \"" << component << "\" (it has: "
          << (known.empty() ? "none yet" : known) << ")\n";
      return kExitRuntime;
    }
    components = {component};
  }
  for (const auto& c : components) {
    auto text = runtime::readLogTail(dir / (c + ".log"), max_bytes);
    if (!text) {
      err << "kflex-agent logs: " << text.error().message << "\n";
      return kExitRuntime;
    }
    if (components.size() > 1) {
      out << "==> " << c << " <==\n";
    }
    out << text.value();
  }
  return kExitOk;
}

int printStatus(const AgentConfig& cfg, bool json, std::ostream& out, std::ostream& err) {
  std::error_code ec;
  if (!fs::exists(cfg.data_dir / "agent.db", ec)) {
    err << "kflex-agent status: no agent state in " << cfg.data_dir.string()
        << " (not enrolled yet, or another --data-dir)\n";
    return kExitRuntime;
  }
  auto state = AgentState::open(cfg.data_dir, true);
  if (!state) {
    err << "kflex-agent status: " << state.error().message << "\n";
    return kExitRuntime;
  }
  Json s = Json::object();
  auto& st = *state.value();
  auto str = [&](const char* key) { return st.get(key).value_or(""); };
  s["dataDir"] = cfg.data_dir.string();
  s["name"] = str("name");
  s["hubURLs"] = Json::parse(st.get("hub_urls").value_or("[]"), nullptr, false);
  s["enrolledAt"] = str("enrolled_at");
  s["link"] = {{"state", str("link_state")}, {"since", str("link_since")}, {"detail", str("link_detail")}};
  s["leaseRenewSeconds"] = str("lease_renew_seconds");
  if (auto cert = readFile(certPath(cfg.data_dir)); cert) {
    if (auto info = tls::inspectCertificate(cert.value()); info) {
      s["name"] = info->common_name;
      s["certificate"] = {{"notAfter", formatTime(info->not_after)}, {"notBefore", formatTime(info->not_before)}};
    }
  }
  s["acknowledgedRevision"] = st.acknowledgedRevision();
  Json cps = Json::array();
  for (const auto& d : st.desired()) {
    Json cp = Json::parse(d.body, nullptr, false);
    Json reported = Json::parse(d.reported.empty() ? "{}" : d.reported, nullptr, false);
    Json ready = Json::object();
    for (const auto& c : reported.is_object() ? reported.value("conditions", Json::array()) : Json::array()) {
      if (c.is_object() && c.value("type", "") == "Ready") {
        ready = {{"status", c.value("status", "")}, {"reason", c.value("reason", "")}};
      }
    }
    cps.push_back({{"name", d.name}, {"revision", d.revision},
                   {"type", cp.is_object() ? cp.value("spec", Json::object()).value("type", "") : ""},
                   {"ready", ready}});
  }
  s["controlPlanes"] = cps;
  s["unsentReports"] = st.outbox().pending(100000).size();
  if (json) {
    out << s.dump(2) << "\n";
    return kExitOk;
  }
  auto now = std::chrono::system_clock::now();
  out << "Agent:        " << s.value("name", "") << "\n";
  std::string hubs;
  for (const auto& u : s["hubURLs"]) {
    hubs += (hubs.empty() ? "" : ", ") + u.get<std::string>();
  }
  out << "Hub:          " << (hubs.empty() ? "<unknown>" : hubs) << "\n";
  out << "Enrolled:     " << (s.value("enrolledAt", "").empty() ? "<no>" : s.value("enrolledAt", "")) << "\n";
  if (s.contains("certificate")) {
    std::string na = s["certificate"].value("notAfter", "");
    auto t = parseTime(na);
    std::string left = t && *t > now ? "valid for " + humanDuration(std::chrono::duration_cast<std::chrono::seconds>(*t - now))
                                     : "EXPIRED";
    out << "Certificate:  until " << na << " (" << left << ")\n";
  }
  const Json& link_info = s["link"];
  std::string since = link_info.value("since", "");
  std::string ago;
  if (auto t = parseTime(since)) {
    ago = " for " + humanDuration(std::chrono::duration_cast<std::chrono::seconds>(now - *t));
  }
  out << "Link:         " << (link_info.value("state", "").empty() ? "never connected" : link_info.value("state", "") + ago);
  if (!link_info.value("detail", "").empty()) {
    out << " (" << link_info.value("detail", "") << ")";
  }
  out << "\n";
  out << "Desired:      " << cps.size() << " control plane(s) as of hub revision " << s["acknowledgedRevision"].get<int64_t>()
      << "; " << s["unsentReports"].get<size_t>() << " status report(s) not yet acknowledged by the hub\n";
  for (const auto& cp : cps) {
    const Json& r = cp["ready"];
    out << "  " << cp["name"].get<std::string>() << " (" << cp["type"].get<std::string>() << "): "
        << (r.empty() ? "not reported yet" : "Ready=" + r.value("status", "") + " " + r.value("reason", "")) << "\n";
  }
  return kExitOk;
}

}  // namespace kflex::agent
