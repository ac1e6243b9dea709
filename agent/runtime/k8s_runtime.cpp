// SPDX-License-Identifier: Apache-2.0
#include "agent/runtime/k8s_runtime.hpp"

#include <sys/stat.h>

#include "agent/host/ports.hpp"
#include "agent/host/versions.hpp"
#include "agent/runtime/probe.hpp"
#include "shared/common/log.hpp"
#include "shared/common/util.hpp"
#include "shared/store/postgres.hpp"
#include "shared/tls/pki.hpp"
#include "shared/protocol/tunnel.hpp"

namespace kflex::agent::runtime {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

constexpr uint16_t kInnerPort = 6443;  // the API server's port inside the namespace
constexpr const char* kServiceRange = "10.96.0.0/12";
constexpr const char* kIssuer = "https://kubernetes.default.svc.cluster.local";
// KubeFlex's k8s control planes are API servers only: no workload controllers.
constexpr const char* kControllers =
    "csrapproving,csrcleaner,csrsigning,namespace,root-ca-cert-publisher,serviceaccount,"
    "serviceaccount-token,"
    "bootstrapsigner,tokencleaner,garbagecollector,pv-protection,pvc-protection";

// A kubeconfig with embedded credentials, named as KubeFlex names a control plane's.
std::string kubeconfig(const std::string& cp, const std::string& server, const std::string& ca,
                       const tls::KeyPair& client) {
  Json doc = {
      {"apiVersion", "v1"},
      {"kind", "Config"},
      {"clusters",
       {{{"name", cp + "-cluster"},
         {"cluster", {{"server", server}, {"certificate-authority-data", base64Encode(ca)}}}}}},
      {"users",
       {{{"name", cp + "-admin"},
         {"user",
          {{"client-certificate-data", base64Encode(client.cert_pem)},
           {"client-key-data", base64Encode(client.key_pem)}}}}}},
      {"contexts",
       {{{"name", cp},
         {"context",
          {{"cluster", cp + "-cluster"}, {"user", cp + "-admin"}, {"namespace", "default"}}}}}},
      {"current-context", cp},
      {"preferences", Json::object()}};
  return doc.dump(2) + "\n";
}

Result<void> writePair(const fs::path& dir, const std::string& base, const tls::KeyPair& p) {
  if (auto r = writeFileAtomic(dir / (base + ".crt"), p.cert_pem, 0644); !r) {
    return r;
  }
  return writeFileAtomic(dir / (base + ".key"), p.key_pem, 0600);
}

}  // namespace

K8sRuntime::K8sRuntime(RuntimeEnv& env, ControlPlaneState state)
    : env_(env), state_(std::move(state)), name_(state_.name()), dir_(env.cp_root / name_) {}

K8sRuntime::~K8sRuntime() { net_.close(); }

std::string K8sRuntime::database() const { return store::databaseNameFor(name_); }

Result<void> K8sRuntime::makePki() {
  fs::path pki = dir_ / "pki";
  std::error_code ec;
  fs::create_directories(pki, ec);
  if (fs::exists(pki / "admin.kubeconfig", ec)) {
    return {};  // made before (an agent restart)
  }
  SystemClock clock;
  auto ca = tls::createCa(
      {"kubernetes", {"Kubernetes"}, {}, {}, true, false, false, std::chrono::hours(24 * 3650)},
      clock);
  auto fp_ca = tls::createCa(
      {"front-proxy-ca", {}, {}, {}, true, false, false, std::chrono::hours(24 * 3650)}, clock);
  if (!ca || !fp_ca) {
    return fail("cannot make the control plane's CAs");
  }
  tls::CertRequest serving{
      "kube-apiserver",
      {},
      {"kubernetes", "kubernetes.default", "kubernetes.default.svc",
       "kubernetes.default.svc.cluster.local", "localhost", name_, name_ + "." + name_ + "-system",
       protocol::tunnel::tunnelHost(name_)},  // (reached through the hub's tunnel: docs/dev/tunnel.md)
      {"127.0.0.1", "10.96.0.1"},
      false,
      true,
      true,
      std::chrono::hours(24 * 365)};
  if (!env_.config.advertise_address.empty() && env_.config.advertise_address != "127.0.0.1") {
    (tls::isIpAddress(env_.config.advertise_address) ? serving.ip_addresses : serving.dns_names)
        .push_back(env_.config.advertise_address);
  }
  auto apiserver = tls::issueCertificate(ca.value(), serving, clock);
  // Client certificates (clientAuth, one year).
  auto client = [&](const tls::KeyPair& issuer, std::string cn, std::vector<std::string> orgs) {
    return tls::issueCertificate(
        issuer, {std::move(cn), std::move(orgs), {}, {}, false, false, true, std::chrono::hours(24 * 365)}, clock);
  };
  auto kubelet_client = client(ca.value(), "apiserver-kubelet-client", {"system:masters"});
  auto fp_client = client(fp_ca.value(), "front-proxy-client", {});
  auto admin = client(ca.value(), "kubernetes-admin", {"system:masters"});
  auto kcm = client(ca.value(), "system:kube-controller-manager", {});
  auto sa_key = tls::createPrivateKey();
  auto sa_pub = sa_key ? tls::publicKeyPem(sa_key.value()) : Result<std::string>(sa_key.error());
  if (!apiserver || !kubelet_client || !fp_client || !admin || !kcm || !sa_pub) {
    return fail("cannot issue the control plane's certificates");
  }
  for (const auto& [base, pair] : std::vector<std::pair<std::string, tls::KeyPair>>{
           {"ca", ca.value()},
           {"front-proxy-ca", fp_ca.value()},
           {"apiserver", apiserver.value()},
           {"apiserver-kubelet-client", kubelet_client.value()},
           {"front-proxy-client", fp_client.value()},
           {"admin", admin.value()},
           {"controller-manager", kcm.value()}}) {
    if (auto r = writePair(pki, base, pair); !r) {
      return r.error();
    }
  }
  if (auto r = writeFileAtomic(pki / "sa.key", sa_key.value(), 0600); !r) {
    return r.error();
  }
  if (auto r = writeFileAtomic(pki / "sa.pub", sa_pub.value(), 0644); !r) {
    return r.error();
  }
  std::string local =
      env_.isolate ? "https://127.0.0.1:" + std::to_string(kInnerPort) : net_.endpoint(env_);
  if (auto r = writeFileAtomic(pki / "controller-manager.kubeconfig",
                               kubeconfig(name_, local, ca->cert_pem, kcm.value()), 0600);
      !r) {
    return r.error();
  }
  // Written last: its presence says the PKI is complete.
  return writeFileAtomic(pki / "admin.kubeconfig",
                         kubeconfig(name_, local, ca->cert_pem, admin.value()), 0600);
}

Result<void> K8sRuntime::makeDatabase() {
  if (env_.config.postgres_dsn.empty()) {
    return fail(
        "the k8s type needs the shared PostgreSQL: set postgres_dsn and postgres_password_file in "
        "agent.yaml "
        "(or --postgres-dsn), or use --type k3s");
  }
  store::PostgresTarget target{env_.config.postgres_dsn, env_.config.postgres_password};
  return store::createDatabase(target, database());
}

Result<void> K8sRuntime::prepare() {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec || ::chmod(dir_.c_str(), 0700) != 0) {
    return fail("cannot create " + dir_.string() + ": " +
                (ec ? ec.message() : std::strerror(errno)));
  }
  // (An agent restart finds the namespace through the API server, which runs in it; Kine runs on
  // the host's network.)
  if (auto r = net_.prepare(env_, state_, dir_ / "run" / "kube-apiserver.pid", kInnerPort, env_.isolate); !r) {
    return r;
  }
  cgroup_ = env_.joinCgroup(name_, "k8s");
  if (!env_.isolate) {
    // On the host's network every port must be this control plane's own.
    auto kcm = persistentPort(state_, PortRole::ControllerManager, "127.0.0.1");
    if (!kcm) {
      return fail(kcm.error().code, "cannot pick a port for the controller manager: " + kcm.error().message);
    }
    kcm_port_ = *kcm;
  }
  // An earlier agent gave Kine its database only as KINE_ENDPOINT, which Kine before v0.14.1 does
  // not read: such a Kine kept the control plane in SQLite here. Starting it on PostgreSQL would
  // bring the control plane back empty; say so instead.
  if (fs::exists(dir_ / "db" / "state.db", ec)) {
    return fail("this control plane's objects are in " + (dir_ / "db" / "state.db").string() +
                " (SQLite: its Kine did not read the PostgreSQL endpoint it was given), not in database " + database() +
                ": move them with etcdctl or kine's tools, or delete and create the control plane again; the agent "
                "starts nothing on an empty database");
  }
  // Kine reads the password from a file of its own (PGPASSFILE), never from its command line.
  if (auto r = writeFileAtomic(dir_ / "pgpass", store::passfileLine(env_.config.postgres_password), 0600); !r) {
    return r;
  }
  return makePki();
}

ProcessSpec K8sRuntime::componentSpec(const char* component, std::vector<std::string> argv,
                                      std::chrono::seconds grace) const {
  ProcessSpec s;
  s.argv = std::move(argv);
  s.work_dir = dir_;
  s.log_file = dir_ / "logs" / (std::string(component) + ".log");
  s.pid_file = dir_ / "run" / (std::string(component) + ".pid");
  s.net_ns_fd = net_.nsFd();
  s.cgroup_procs = cgroup_;
  s.stop_grace = grace;
  return s;
}

std::filesystem::path K8sRuntime::kineSocket() const { return dir_ / "run" / "kine.sock"; }

ProcessSpec K8sRuntime::kineSpec() const {
  // Kine runs on the host's network, where the database's name resolves and its certificate's
  // name matches (sslmode=verify-full), and serves the API server on a unix socket, which
  // reaches into the control plane's namespace. Metrics off: no TCP port at all.
  ProcessSpec s = componentSpec(
      "kine",
      {env_.program("kine").string(),
       "--endpoint=" + store::kineEndpoint(store::withDatabase({env_.config.postgres_dsn, ""}, database())),
       "--listen-address=unix://" + kineSocket().string(), "--metrics-bind-address=0"},
      std::chrono::seconds(5));
  s.net_ns_fd = -1;
  s.env = {"PGPASSFILE=" + (dir_ / "pgpass").string()};
  return s;
}

ProcessSpec K8sRuntime::apiserverSpec() const {
  fs::path pki = dir_ / "pki";
  std::string listen = env_.isolate ? "127.0.0.1" : env_.config.advertise_address;
  uint16_t port = env_.isolate ? kInnerPort : net_.port();
  auto f = [&](const char* file) { return (pki / file).string(); };
  return componentSpec("kube-apiserver",
                       {env_.program("kube-apiserver").string(),
                        "--advertise-address=" + listen,
                        "--allow-privileged=true",
                        "--authorization-mode=Node,RBAC",
                        "--bind-address=" + listen,
                        "--client-ca-file=" + f("ca.crt"),
                        "--enable-admission-plugins=NodeRestriction",
                        "--enable-bootstrap-token-auth=true",
                        "--endpoint-reconciler-type=none",
                        "--etcd-servers=unix://" + kineSocket().string(),
                        "--kubelet-client-certificate=" + f("apiserver-kubelet-client.crt"),
                        "--kubelet-client-key=" + f("apiserver-kubelet-client.key"),
                        "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
                        "--profiling=false",
                        "--proxy-client-cert-file=" + f("front-proxy-client.crt"),
                        "--proxy-client-key-file=" + f("front-proxy-client.key"),
                        "--requestheader-allowed-names=front-proxy-client",
                        "--requestheader-client-ca-file=" + f("front-proxy-ca.crt"),
                        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                        "--requestheader-group-headers=X-Remote-Group",
                        "--requestheader-username-headers=X-Remote-User",
                        "--secure-port=" + std::to_string(port),
                        std::string("--service-account-issuer=") + kIssuer,
                        "--service-account-key-file=" + f("sa.pub"),
                        "--service-account-signing-key-file=" + f("sa.key"),
                        std::string("--service-cluster-ip-range=") + kServiceRange,
                        "--tls-cert-file=" + f("apiserver.crt"),
                        "--tls-private-key-file=" + f("apiserver.key")},
                       std::chrono::seconds(15));
}

ProcessSpec K8sRuntime::controllerManagerSpec() const {
  fs::path pki = dir_ / "pki";
  auto f = [&](const char* file) { return (pki / file).string(); };
  return componentSpec(
      "kube-controller-manager",
      {env_.program("kube-controller-manager").string(),
       "--authentication-kubeconfig=" + f("controller-manager.kubeconfig"),
       "--authorization-kubeconfig=" + f("controller-manager.kubeconfig"),
       "--bind-address=127.0.0.1", "--client-ca-file=" + f("ca.crt"), "--cluster-name=kubernetes",
       "--cluster-signing-cert-file=" + f("ca.crt"), "--cluster-signing-key-file=" + f("ca.key"),
       std::string("--controllers=") + kControllers,
       "--kubeconfig=" + f("controller-manager.kubeconfig"), "--leader-elect=false",
       "--requestheader-client-ca-file=" + f("front-proxy-ca.crt"), "--root-ca-file=" + f("ca.crt"),
       "--secure-port=" + std::to_string(kcm_port_),
       "--service-account-private-key-file=" + f("sa.key"),
       std::string("--service-cluster-ip-range=") + kServiceRange,
       "--use-service-account-credentials=true"},
      std::chrono::seconds(10));
}

void K8sRuntime::ensure(const Json&) {
  removing_ = false;
  auto setProblem = [&](const std::string& reason, const std::string& msg) {
    if (problem_ != msg) {
      log::warn("cannot prepare a control plane", {{"controlPlane", name_}, {"error", msg}});
    }
    problem_reason_ = reason;
    problem_ = msg;
  };
  if (!prepared_) {
    for (const char* program : {"kine", "kube-apiserver", "kube-controller-manager"}) {
      if (auto v = checkProgram(program, env_.program(program)); !v) {
        setProblem("UnsupportedVersion", v.error().message);
        return;
      }
    }
    if (auto r = prepare(); !r) {
      setProblem(r.error().code == Errc::Conflict ? "PortInUse" : "ReconcileError", r.error().message);
      return;
    }
    prepared_ = true;
    problem_.clear();
  }
  if (!database_ready_) {
    // (Connecting may take its timeout: not more often than every 10 s while PostgreSQL is away.)
    if (std::chrono::steady_clock::now() < next_database_try_) {
      return;
    }
    if (auto r = makeDatabase(); !r) {
      next_database_try_ = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      setProblem("DatabaseUnavailable", r.error().message);
      return;
    }
    database_ready_ = true;
    problem_.clear();
  }
  // In order: Kine, then the API server once Kine answers, then the controller manager once the
  // API server has been ready.
  env_.supervisor.ensure(key("kine"), kineSpec());
  if (kine_up_) {
    env_.supervisor.ensure(key("kube-apiserver"), apiserverSpec());
  }
  if (apiserver_ready_once_) {
    env_.supervisor.ensure(key("kube-controller-manager"), controllerManagerSpec());
  }
}

net::awaitable<void> K8sRuntime::probe() {
  if (!problem_.empty()) {
    ready_ = false;
    ready_reason_ = "Unavailable";
    ready_message_ = problem_;
    co_return;
  }
  if (!prepared_ || !database_ready_) {
    co_return;
  }
  if (!kine_up_ && unixReachable(kineSocket())) {
    kine_up_ = true;
  }
  std::string endpoint = net_.endpoint(env_);
  if (kubeconfig_.empty()) {
    if (auto text = readFile(dir_ / "pki" / "admin.kubeconfig"); text) {
      Json doc = Json::parse(text.value(), nullptr, false);
      if (doc.is_object()) {
        doc["clusters"][0]["cluster"]["server"] = endpoint;
        kubeconfig_ = doc.dump(2) + "\n";
      }
    }
  }
  ProbeResult result;
  if (kine_up_) {
    result = co_await readyz_.run(dir_ / "pki" / "admin.kubeconfig", endpoint);
  } else {
    result.message = "waiting for Kine to answer on " + kineSocket().string();
  }
  if (result.ready) {
    apiserver_ready_once_ = true;
  }
  // Ready: the API server answers /readyz, and all three programs run.
  std::string down;
  for (const char* c : {"kine", "kube-apiserver", "kube-controller-manager"}) {
    auto st = env_.supervisor.status(key(c));
    if (st.state != ProcessState::Running) {
      down += (down.empty() ? "" : "; ") + std::string(c) + " is " + toString(st.state) +
              (st.last_exit.empty() ? "" : " (last " + st.last_exit + ")") +
              (st.error.empty() ? "" : ": " + st.error);
    }
  }
  ready_ = result.ready && down.empty();
  ready_reason_ = ready_ ? "Available" : (result.reachable ? "Unavailable" : "Creating");
  ready_message_ = !result.ready ? result.message : down;
}

protocol::StatusReport K8sRuntime::observe() const {
  std::string failed;
  std::vector<protocol::Component> components;
  for (const char* c : {"kine", "kube-apiserver", "kube-controller-manager"}) {
    auto st = env_.supervisor.status(key(c));
    if (st.state == ProcessState::Failed) {
      failed = std::string(c) + " cannot start: " + st.error;
    }
    components.push_back(componentOf(c, st));
  }
  protocol::ReportedCondition synced;
  if (!problem_.empty()) {
    synced = {"Synced", "False", problem_reason_, problem_};
  } else if (!failed.empty()) {
    synced = {"Synced", "False", "ReconcileError", failed};
  } else {
    synced = {"Synced", "True", "ReconcileSuccess",
              "Kine, kube-apiserver and kube-controller-manager supervised by the agent, on database " + database() +
                  env_.limitsNote()};
  }
  protocol::StatusReport out;
  out.conditions = {synced,
                    {"Ready", ready_ ? "True" : "False", ready_reason_,
                     ready_ ? "the API server answers /readyz" : ready_message_}};
  out.components = std::move(components);
  if (net_.prepared()) {
    out.endpoint = net_.endpoint(env_);
  }
  if (!kubeconfig_.empty()) {
    // As KubeFlex keeps a k8s control plane's: secret admin-kubeconfig, keys kubeconfig and
    // kubeconfig-incluster.
    out.kubeconfig = {"admin-kubeconfig", {{"kubeconfig", kubeconfig_}, {"kubeconfig-incluster", kubeconfig_}}};
  }
  return out;
}

void K8sRuntime::detach() { net_.close(); }

bool K8sRuntime::remove() {
  if (!removing_) {
    removing_ = true;
    ready_ = false;
    ready_reason_ = "Deleting";
    ready_message_ = "stopping it, dropping its database and removing its data";
    env_.supervisor.stop(key("kube-controller-manager"), controllerManagerSpec());
    env_.supervisor.stop(key("kube-apiserver"), apiserverSpec());
    env_.supervisor.stop(key("kine"), kineSpec());
    net_.close();
  }
  for (const char* c : {"kine", "kube-apiserver", "kube-controller-manager"}) {
    if (!env_.supervisor.gone(key(c)) || runningPid(dir_ / "run" / (std::string(c) + ".pid")) > 0) {
      return false;
    }
  }
  if (!env_.config.postgres_dsn.empty()) {
    if (std::chrono::steady_clock::now() < next_database_try_) {
      return false;
    }
    store::PostgresTarget target{env_.config.postgres_dsn, env_.config.postgres_password};
    if (auto r = store::dropDatabase(target, database()); !r) {
      next_database_try_ = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      log::warn("cannot drop a control plane's database yet; retrying",
                {{"controlPlane", name_}, {"error", r.error().message}});
      return false;
    }
  }
  std::error_code ec;
  fs::remove_all(dir_, ec);
  if (env_.cgroups != nullptr) {
    env_.cgroups->remove(name_);
  }
  if (ec) {
    log::warn("cannot remove a control plane's data",
              {{"dir", dir_.string()}, {"error", ec.message()}});
    return false;
  }
  net_.forget(state_);
  (void)state_.setPort(PortRole::ControllerManager, 0);
  log::info("control plane removed",
            {{"controlPlane", name_}, {"database", database()}, {"dir", dir_.string()}});
  return true;
}

}  // namespace kflex::agent::runtime
