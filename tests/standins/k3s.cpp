// SPDX-License-Identifier: Apache-2.0
// Stand-in for `k3s server` v1.30.13+k3s1 (k3s-io/k3s), for tests on machines where k3s cannot
// be installed. It is strict where the agent depends on it, as docs/launch-contract.md lists
// with the source files each behaviour was read from: the real server's flags (unknown ones
// refused), its config file (the host's /etc/rancher/k3s/config.yaml and config.yaml.d/ unless
// --config names another; a missing one ignored), the start-up lookup of the host's IP (fatal
// without a default route unless --node-ip is given), its data directory layout (server/tls,
// server/cred, server/token, server/db), the kubeconfig it writes and the link to it that
// replaces /etc/rancher/k3s/k3s.yaml as root ($HOME/.kube/k3s.yaml otherwise), the ports it holds
// (the HTTPS port, its embedded API server on 127.0.0.1 one above it, the fixed controller
// manager, scheduler, etcd and, with the node agent, kubelet, flannel and containerd ones, so that
// two of them collide exactly as two real ones would), /ping, /cacerts, and /readyz answering 503
// until its apiserver has "started". Behind the port is a real Kubernetes-style API (the hub's
// machinery) that accepts the admin client certificate it writes into the kubeconfig.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <sstream>

#include <iostream>

#include <nlohmann/json.hpp>

#include "shared/common/log.hpp"
#include "shared/common/util.hpp"
#include "shared/config/yaml_json.hpp"
#include "shared/tls/context.hpp"
#include "shared/tls/pki.hpp"
#include "tests/standins/standin.hpp"

namespace {

namespace fs = std::filesystem;
using namespace kflex;
using standin::FlagSpec;

constexpr const char* kVersion = "v1.30.13+k3s1";

std::vector<FlagSpec> serverFlags() {
  std::vector<FlagSpec> f;
  auto value = [&](std::string n, std::vector<std::string> aliases = {}, std::string env = "") {
    f.push_back({std::move(n), false, std::move(aliases), std::move(env)});
  };
  auto boolean = [&](std::string n, std::string env = "") { f.push_back({std::move(n), true, {}, std::move(env)}); };
  // pkg/cli/cmds/server.go (ServerFlags) and the agent flags a server also takes.
  value("config", {"c"}, "K3S_CONFIG_FILE");
  boolean("debug", "K3S_DEBUG");
  value("v");
  value("vmodule");
  value("log", {"l"});
  boolean("alsologtostderr");
  for (const char* n : {"bind-address", "https-listen-port", "advertise-address", "advertise-port", "tls-san",
                        "cluster-cidr", "service-cidr", "service-node-port-range", "cluster-dns", "cluster-domain",
                        "flannel-backend", "egress-selector-mode", "servicelb-namespace", "write-kubeconfig-group",
                        "helm-job-image", "cluster-reset-restore-path", "kube-apiserver-arg", "etcd-arg",
                        "kube-controller-manager-arg", "kube-scheduler-arg", "kube-cloud-controller-manager-arg",
                        "etcd-snapshot-name", "etcd-snapshot-schedule-cron", "etcd-snapshot-retention",
                        "etcd-snapshot-dir", "etcd-s3-endpoint", "etcd-s3-endpoint-ca", "etcd-s3-access-key",
                        "etcd-s3-secret-key", "etcd-s3-bucket", "etcd-s3-region", "etcd-s3-folder", "etcd-s3-timeout",
                        "default-local-storage-path", "disable", "node-name", "node-label", "node-taint",
                        "image-credential-provider-bin-dir", "image-credential-provider-config",
                        "container-runtime-endpoint", "default-runtime", "image-service-endpoint", "pause-image",
                        "snapshotter", "private-registry", "system-default-registry", "airgap-extra-registry",
                        "node-ip", "node-external-ip", "resolv-conf", "flannel-iface", "flannel-conf",
                        "flannel-cni-conf-file", "vpn-auth", "vpn-auth-file", "kubelet-arg", "kube-proxy-arg",
                        "lb-server-port", "kube-controller-arg", "kube-cloud-controller-arg"}) {
    value(n);
  }
  value("data-dir", {"d"}, "K3S_DATA_DIR");
  value("write-kubeconfig", {"o"}, "K3S_KUBECONFIG_OUTPUT");
  value("write-kubeconfig-mode", {}, "K3S_KUBECONFIG_MODE");
  value("token", {"t"}, "K3S_TOKEN");
  value("token-file", {}, "K3S_TOKEN_FILE");
  value("agent-token", {}, "K3S_AGENT_TOKEN");
  value("agent-token-file", {}, "K3S_AGENT_TOKEN_FILE");
  value("server", {"s"}, "K3S_URL");
  value("datastore-endpoint", {}, "K3S_DATASTORE_ENDPOINT");
  value("datastore-cafile", {}, "K3S_DATASTORE_CAFILE");
  value("datastore-certfile", {}, "K3S_DATASTORE_CERTFILE");
  value("datastore-keyfile", {}, "K3S_DATASTORE_KEYFILE");
  boolean("cluster-init", "K3S_CLUSTER_INIT");
  boolean("cluster-reset", "K3S_CLUSTER_RESET");
  for (const char* n : {"tls-san-security", "flannel-ipv6-masq", "flannel-external-ip", "etcd-expose-metrics",
                        "etcd-disable-snapshots", "etcd-snapshot-compress", "etcd-s3", "etcd-s3-skip-ssl-verify",
                        "etcd-s3-insecure", "disable-scheduler", "disable-cloud-controller", "disable-kube-proxy",
                        "disable-network-policy", "disable-helm-controller", "disable-apiserver",
                        "disable-controller-manager", "disable-etcd", "embedded-registry", "with-node-id", "docker",
                        "disable-default-registry-endpoint", "protect-kernel-defaults", "secrets-encryption",
                        "enable-pprof", "rootless", "prefer-bundled-bin", "selinux", "disable-agent"}) {
    boolean(n);
  }
  return f;
}

// The value of NAME=VALUE in a pass-through flag list (--kube-controller-manager-arg=secure-port=N).
std::string passThrough(const std::vector<std::string>& args, const std::string& name) {
  std::string out;
  for (const auto& a : args) {
    if (a.rfind(name + "=", 0) == 0) {
      out = a.substr(name.size() + 1);
    }
  }
  return out;
}

int usageError(const std::string& msg) {
  std::cerr << "Incorrect Usage. " << msg << "\n\nNAME:\n   k3s server - Run management server\n\n"
            << "USAGE:\n   k3s server [OPTIONS]\n";
  return 1;
}

int fatal(const std::string& msg) {
  log::error(msg);
  return 1;
}

Result<tls::KeyPair> loadOrCreateCa(const fs::path& dir, const std::string& name, const Clock& clock) {
  auto cert = readFile(dir / (name + ".crt"));
  auto key = readFile(dir / (name + ".key"));
  if (cert && key) {
    return tls::KeyPair{cert.value(), key.value()};
  }
  tls::CertRequest req;
  req.common_name = "k3s-" + name + "@" + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                                             clock.now().time_since_epoch()).count());
  req.is_ca = true;
  req.validity = std::chrono::hours(24 * 3650);
  auto ca = tls::createCa(req, clock);
  if (!ca) {
    return ca.error();
  }
  if (auto r = writeFileAtomic(dir / (name + ".crt"), ca->cert_pem, 0644); !r) {
    return r.error();
  }
  if (auto r = writeFileAtomic(dir / (name + ".key"), ca->key_pem, 0600); !r) {
    return r.error();
  }
  return ca;
}

std::string kubeconfigYaml(const std::string& server, const std::string& ca, const tls::KeyPair& admin) {
  nlohmann::json doc = {
      {"apiVersion", "v1"},
      {"kind", "Config"},
      {"clusters", {{{"name", "default"}, {"cluster", {{"server", server}, {"certificate-authority-data", base64Encode(ca)}}}}}},
      {"users", {{{"name", "default"},
                  {"user", {{"client-certificate-data", base64Encode(admin.cert_pem)},
                            {"client-key-data", base64Encode(admin.key_pem)}}}}}},
      {"contexts", {{{"name", "default"}, {"context", {{"cluster", "default"}, {"user", "default"}}}}}},
      {"current-context", "default"},
      {"preferences", nlohmann::json::object()}};
  return doc.dump(2) + "\n";  // JSON is YAML; kubectl reads either
}

// k3s's config file (pkg/configfilearg): K3S_CONFIG_FILE, else --config/-c, else the default
// /etc/rancher/k3s/config.yaml; then FILE.d/*.yaml. A missing file is ignored (an explicit one
// too, as v1.29.7 and v1.30.3 on do). Keys become --key=value flags put in front of the command
// line's (so the command line wins); keys that are not server flags are skipped with a warning.
Result<std::vector<std::string>> configArgs(const std::vector<std::string>& args, const std::vector<FlagSpec>& specs) {
  std::string file = "/etc/rancher/k3s/config.yaml";
  for (size_t i = 0; i < args.size(); ++i) {
    for (const char* flag : {"--config", "-c", "-config", "--c"}) {
      if (args[i] == flag && i + 1 < args.size()) {
        file = args[i + 1];
      } else if (args[i].rfind(std::string(flag) + "=", 0) == 0) {
        file = args[i].substr(std::strlen(flag) + 1);
      }
    }
  }
  if (const char* env = std::getenv("K3S_CONFIG_FILE"); env != nullptr && *env != '\0') {
    file = env;
  }
  std::vector<fs::path> files = {file};
  std::error_code ec;
  std::vector<fs::path> dropins;
  for (fs::directory_iterator it(file + ".d", ec), end; !ec && it != end; it.increment(ec)) {
    std::string ext = it->path().extension().string();
    if (it->is_regular_file() && (ext == ".yaml" || ext == ".yml")) {
      dropins.push_back(it->path());
    }
  }
  std::sort(dropins.begin(), dropins.end());
  files.insert(files.end(), dropins.begin(), dropins.end());
  std::vector<std::string> out;
  for (const auto& path : files) {
    auto text = readFile(path);
    if (!text) {
      continue;
    }
    auto doc = config::yamlToJson(text.value());
    if (!doc) {
      return fail(doc.error().message);
    }
    if (!doc->is_object()) {
      continue;
    }
    for (const auto& [raw_key, value] : doc->items()) {
      std::string key = raw_key.size() > 1 && raw_key.back() == '+' ? raw_key.substr(0, raw_key.size() - 1) : raw_key;
      bool known = std::any_of(specs.begin(), specs.end(), [&](const FlagSpec& f) {
        return f.name == key || std::find(f.aliases.begin(), f.aliases.end(), key) != f.aliases.end();
      });
      if (!known) {
        log::warn("Unknown flag --" + key + " found in config.yaml, skipping");
        continue;
      }
      std::string dash = key.size() == 1 ? "-" : "--";
      for (const auto& item : value.is_array() ? value : nlohmann::json::array({value})) {
        out.push_back(dash + key + "=" + (item.is_string() ? item.get<std::string>() : item.dump()));
      }
    }
  }
  return out;
}

// k8s.io/apimachinery ChooseHostInterface as k3s calls it when no --node-ip is given: a default
// route (IPv4 destination 00000000; IPv6 ::/0 with a gateway) must exist.
bool hasDefaultRoute() {
  if (auto v4 = readFile("/proc/net/route"); v4) {
    for (const auto& line : split(v4.value(), '\n')) {
      auto fields = split(line, '\t');
      if (fields.size() > 2 && fields[0] != "Iface" && fields[1] == "00000000") {
        return true;
      }
    }
  }
  if (auto v6 = readFile("/proc/net/ipv6_route"); v6) {
    for (const auto& line : split(v6.value(), '\n')) {
      std::istringstream in(line);
      std::string dest, dest_len, src, src_len, gateway;
      in >> dest >> dest_len >> src >> src_len >> gateway;
      if (dest == std::string(32, '0') && dest_len == "00" && !gateway.empty() && gateway != std::string(32, '0')) {
        return true;
      }
    }
  }
  return false;
}

// Holds a unix socket at `path` (containerd's), as a running containerd does.
Result<int> holdSocket(const fs::path& path) {
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  ::unlink(path.c_str());
  int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  if (s < 0 || ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(s, 16) != 0) {
    int err = errno;
    if (s >= 0) {
      ::close(s);
    }
    return fail("listen unix " + path.string() + ": bind: " + std::strerror(err));
  }
  return s;
}

int server(const std::vector<std::string>& args) {
  auto specs = serverFlags();
  auto from_config = configArgs(args, specs);
  if (!from_config) {
    return fatal(from_config.error().message);
  }
  std::vector<std::string> all_args = from_config.value();
  all_args.insert(all_args.end(), args.begin(), args.end());
  auto flags = standin::Flags::parse(all_args, specs);
  if (!flags) {
    return usageError(flags.error().message);
  }
  const standin::Flags& f = flags.value();
  static const std::set<std::string> kDisable = {"coredns", "servicelb", "traefik", "local-storage", "metrics-server",
                                                 "runtimes"};
  for (const auto& d : f.all("disable")) {
    if (!kDisable.count(d)) {
      return fatal("invalid value provided for --disable flag: " + d);
    }
  }
  std::string endpoint = f.get("datastore-endpoint");
  if (f.flag("cluster-init") && !endpoint.empty() && endpoint.rfind("https://", 0) != 0 &&
      endpoint.rfind("http://", 0) != 0) {
    return fatal("invalid flag use; --cluster-init cannot be used with --datastore-endpoint");
  }
  int https_port = std::atoi(f.get("https-listen-port", "6443").c_str());
  if (https_port <= 0 || https_port > 65535) {
    return usageError("invalid value \"" + f.get("https-listen-port") + "\" for flag -https-listen-port: parse error");
  }
  std::string mode_text = f.get("write-kubeconfig-mode", "0600");
  char* end = nullptr;
  long mode = std::strtol(mode_text.c_str(), &end, 8);
  if (end == mode_text.c_str() || *end != '\0' || mode < 0 || mode > 0777) {
    return fatal("failed to parse --write-kubeconfig-mode " + mode_text);
  }
  // (cli/server/server.go run -> util.GetHostnameAndIPs, before anything is written.)
  std::string node_ip = f.get("node-ip");
  if (node_ip.empty() && !f.has("flannel-iface") && !hasDefaultRoute()) {
    return fatal("no default routes found in \"/proc/net/route\" or \"/proc/net/ipv6_route\"");
  }
  if (!f.flag("disable-agent") && (node_ip.rfind("127.", 0) == 0 || node_ip == "::1")) {
    return fatal("kubelet exited: failed to validate nodeIP: nodeIP can't be loopback address");
  }
  std::string bind = f.get("bind-address", "0.0.0.0");
  std::string home = std::getenv("HOME") ? std::getenv("HOME") : "/root";
  fs::path data_dir = f.get("data-dir", ::geteuid() == 0 ? "/var/lib/rancher/k3s" : home + "/.rancher/k3s");
  std::error_code ec;
  fs::path server_dir = fs::absolute(data_dir) / "server";
  for (const char* sub : {"tls", "cred", "db", "manifests", "static"}) {
    fs::create_directories(server_dir / sub, ec);
    if (ec) {
      return fatal("mkdir " + (server_dir / sub).string() + ": " + ec.message());
    }
  }
  ::chmod(server_dir.c_str(), 0700);
  if (::chdir(server_dir.c_str()) != 0) {
    return fatal("chdir " + server_dir.string() + ": " + std::strerror(errno));
  }
  log::info(std::string("Starting k3s ") + kVersion + " (kflex stand-in)");
  SystemClock clock;

  // Token: K10<sha256 of the server CA>::server:<secret>; a given one must match what is stored.
  fs::path tls_dir = server_dir / "tls";
  auto server_ca = loadOrCreateCa(tls_dir, "server-ca", clock);
  auto client_ca = server_ca ? loadOrCreateCa(tls_dir, "client-ca", clock) : server_ca;
  if (!server_ca || !client_ca) {
    return fatal("failed to generate certificates: " + (server_ca ? client_ca : server_ca).error().message);
  }
  std::string secret = f.get("token");
  if (secret.empty() && f.has("token-file")) {
    auto t = readFile(f.get("token-file"));
    if (!t) {
      return fatal("failed to read token file: " + t.error().message);
    }
    secret = std::string(trim(t.value()));
  }
  fs::path token_file = server_dir / "token";
  auto stored = readFile(token_file);
  std::string stored_secret;
  if (stored) {
    auto pos = stored.value().find("::server:");
    stored_secret = pos == std::string::npos ? "" : std::string(trim(stored.value().substr(pos + 9)));
  }
  if (!secret.empty() && !stored_secret.empty() && secret != stored_secret) {
    return fatal("starting kubernetes: preparing server: bootstrap data already found and encrypted with different token");
  }
  if (secret.empty()) {
    secret = stored_secret.empty() ? tls::sha256Hex(tls::randomAlnum(32)).substr(0, 32) : stored_secret;
  }
  std::string full_token = "K10" + tls::sha256Hex(server_ca->cert_pem) + "::server:" + secret;
  if (auto r = writeFileAtomic(token_file, full_token + "\n", 0600); !r) {
    return fatal(r.error().message);
  }
  fs::remove(server_dir / "node-token", ec);
  fs::create_symlink(token_file, server_dir / "node-token", ec);
  log::info("Node token is available at " + token_file.string());

  // Certificates: the serving one names every address a client may use.
  tls::CertRequest serving;
  serving.common_name = "kube-apiserver";
  serving.server_auth = true;
  serving.dns_names = {"kubernetes", "kubernetes.default", "kubernetes.default.svc",
                       "kubernetes.default.svc.cluster.local", "localhost"};
  serving.ip_addresses = {"127.0.0.1", "10.43.0.1"};
  for (const auto& s : f.all("tls-san")) {
    (tls::isIpAddress(s) ? serving.ip_addresses : serving.dns_names).push_back(s);
  }
  for (const auto& a : {f.get("advertise-address"), bind}) {
    if (!a.empty() && a != "0.0.0.0" && tls::isIpAddress(a)) {
      serving.ip_addresses.push_back(a);
    }
  }
  auto serving_pair = tls::issueCertificate(server_ca.value(), serving, clock);
  tls::CertRequest admin;
  admin.common_name = "system:admin";
  admin.organizations = {"system:masters"};
  admin.client_auth = true;
  auto admin_pair = tls::issueCertificate(client_ca.value(), admin, clock);
  if (!serving_pair || !admin_pair) {
    return fatal("failed to issue certificates");
  }
  (void)writeFileAtomic(tls_dir / "serving-kube-apiserver.crt", serving_pair->cert_pem, 0644);
  (void)writeFileAtomic(tls_dir / "serving-kube-apiserver.key", serving_pair->key_pem, 0600);
  (void)writeFileAtomic(tls_dir / "client-admin.crt", admin_pair->cert_pem, 0644);
  (void)writeFileAtomic(tls_dir / "client-admin.key", admin_pair->key_pem, 0600);

  // The embedded API server on 127.0.0.1, one above the HTTPS port (daemons/control/server.go
  // defaults), and the fixed ports (docs/installation/requirements.md, "Local Ports").
  std::vector<int> held;
  const int api_port = https_port + 1;
  std::vector<std::pair<std::string, uint16_t>> fixed = {{"127.0.0.1", static_cast<uint16_t>(api_port)}};
  if (!f.flag("disable-controller-manager")) {
    std::string p = passThrough(f.all("kube-controller-manager-arg"), "secure-port");
    fixed.push_back({"127.0.0.1", static_cast<uint16_t>(p.empty() ? 10257 : std::atoi(p.c_str()))});
  }
  if (!f.flag("disable-scheduler")) {
    std::string p = passThrough(f.all("kube-scheduler-arg"), "secure-port");
    fixed.push_back({"127.0.0.1", static_cast<uint16_t>(p.empty() ? 10259 : std::atoi(p.c_str()))});
  }
  if (!f.flag("disable-cloud-controller")) {
    fixed.push_back({"127.0.0.1", 10258});
  }
  if (f.flag("cluster-init")) {
    for (uint16_t p : {2379, 2380, 2381, 2382}) {
      fixed.push_back({"127.0.0.1", p});
    }
    fs::create_directories(server_dir / "db" / "etcd" / "member", ec);
  }
  if (!f.flag("disable-agent")) {
    fixed.push_back({"0.0.0.0", 10250});
    for (uint16_t p : {10248, 10010}) {
      fixed.push_back({"127.0.0.1", p});
    }
    if (!f.flag("disable-kube-proxy")) {
      fixed.push_back({"127.0.0.1", 10249});
      fixed.push_back({"127.0.0.1", 10256});
    }
  }
  for (const auto& [addr, port] : fixed) {
    if (port == 0) {
      continue;  // secure-port=0 turns the listener off
    }
    if (auto r = standin::holdPort(addr, port, held); !r) {
      return fatal(r.error().message);
    }
  }
  if (!f.flag("disable-agent")) {
    // Flannel's VXLAN port and containerd's socket are fixed too: one node agent per host.
    if (f.get("flannel-backend", "vxlan") == "vxlan") {
      int u = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(8472);
      if (u < 0 || ::bind(u, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        return fatal(std::string("flannel exited: listen udp 0.0.0.0:8472: bind: ") + std::strerror(errno));
      }
      held.push_back(u);
    }
    auto sock = holdSocket("/run/k3s/containerd/containerd.sock");
    if (!sock) {
      return fatal("containerd: " + sock.error().message);
    }
    held.push_back(sock.value());
  }

  auto ctx = tls::makeServerContext({client_ca->cert_pem, serving_pair->cert_pem, serving_pair->key_pem});
  if (!ctx) {
    return fatal(ctx.error().message);
  }
  net::io_context ioc{1};
  auto ready_at = std::chrono::steady_clock::now() + standin::startupDelay(std::chrono::milliseconds(1500));
  fs::path db = f.flag("cluster-init") ? server_dir / "db" / "etcd" / "member" / "state.db" : server_dir / "db" / "state.db";
  auto api = standin::ApiServer::start(ioc, ctx.value(), db, bind, static_cast<uint16_t>(https_port), ready_at,
                                       {{"/ping", "pong"}, {"/cacerts", server_ca->cert_pem}});
  if (!api) {
    return fatal("starting kubernetes: " + api.error().message);
  }
  log::info("Running kube-apiserver --advertise-port=" + std::to_string(https_port) +
            " --bind-address=127.0.0.1 --secure-port=" + std::to_string(api_port));

  // Kubeconfigs: cred/admin.kubeconfig for the server's own use, and the admin one for people.
  std::string host = bind == "0.0.0.0" ? "127.0.0.1" : bind;
  std::string url = "https://" + host + ":" + std::to_string(https_port);
  (void)writeFileAtomic(server_dir / "cred" / "admin.kubeconfig",
                        kubeconfigYaml("https://127.0.0.1:" + std::to_string(api_port), server_ca->cert_pem,
                                       admin_pair.value()),
                        0600);
  // server/server.go writeKubeConfig: the default path is /etc/rancher/k3s/k3s.yaml as root,
  // else $HOME/.kube/k3s.yaml (without HOME, server/kubeconfig-k3s.yaml, and no link); a link
  // there is removed; with --write-kubeconfig elsewhere, whatever is at the default path is
  // removed and replaced by a link to it (errors only logged).
  const char* home_env = std::getenv("HOME");
  bool root = ::geteuid() == 0 && !f.flag("rootless");
  fs::path default_path = root ? fs::path("/etc/rancher/k3s/k3s.yaml")
                               : (home_env != nullptr && *home_env != '\0' ? fs::path(home_env) / ".kube" / "k3s.yaml"
                                                                            : server_dir / "kubeconfig-k3s.yaml");
  bool linkable = root || (home_env != nullptr && *home_env != '\0');
  fs::path out = f.has("write-kubeconfig") ? fs::path(f.get("write-kubeconfig")) : default_path;
  if (linkable && fs::is_symlink(default_path, ec)) {
    fs::remove(default_path, ec);
  }
  fs::create_directories(fs::absolute(out).parent_path(), ec);
  if (auto r = writeFileAtomic(out, kubeconfigYaml(url, server_ca->cert_pem, admin_pair.value()),
                               static_cast<mode_t>(mode));
      !r) {
    return fatal("failed to write kubeconfig: " + r.error().message);
  }
  ::chmod(out.c_str(), static_cast<mode_t>(mode));
  log::info("Wrote kubeconfig " + out.string());
  if (linkable && out.string() != default_path.string()) {
    fs::remove(default_path, ec);
    fs::create_directories(default_path.parent_path(), ec);
    fs::create_symlink(out, default_path, ec);
    if (ec) {
      log::warn("Failed to write kubeconfig symlink: " + ec.message());
    }
  }
  log::info("k3s is up and running");
  // With its node agent (kubelet) the server runs pods: Jobs end as their command lines say, and
  // pods serve exec, port-forward and logs (their files under agent/standin-pods).
  bool stopping = false;
  net::steady_timer jobs_timer(ioc);
  if (!f.flag("disable-agent")) {
    api.value()->servePodStreams(fs::absolute(data_dir) / "agent" / "standin-pods");
    net::co_spawn(ioc, [&]() -> net::awaitable<void> {
      while (!stopping) {
        co_await standin::runJobs(*api.value());
        co_await standin::runPods(*api.value());
        jobs_timer.expires_after(std::chrono::milliseconds(200));
        co_await jobs_timer.async_wait(net::as_tuple(net::use_awaitable));
      }
    }, net::detached);
  }
  int rc = standin::runUntilSignalled(ioc, [&] {
    log::info("Received SIGTERM, shutting down");
    stopping = true;
    jobs_timer.cancel();
    api.value()->stop();
  });
  for (int s : held) {
    ::close(s);
  }
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::cout << "NAME:\n   k3s - Kubernetes, but small and simple (kflex stand-in)\n\nUSAGE:\n   k3s [global options] "
                 "command [command options]\n\nCOMMANDS:\n   server  Run management server\n";
    return args.empty() ? 1 : 0;
  }
  if (args[0] == "--version" || args[0] == "-v") {
    std::cout << "k3s version " << kVersion << " (kflex-standin)\ngo version go1.22.12\n";
    return 0;
  }
  if (args[0] != "server") {
    std::cerr << "No help topic for '" << args[0] << "'\n";
    return 3;
  }
  return server(std::vector<std::string>(args.begin() + 1, args.end()));
}
