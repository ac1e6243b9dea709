// SPDX-License-Identifier: Apache-2.0
// kflex-bench-soak: a hub, several agents and the stand-ins for k3s and k8s under continuous
// creates and deletes while agents, stand-ins and the hub are killed with SIGKILL and (as root)
// agents' network namespaces are cut, for a set time. Then it checks what kflex promises:
//   - nothing acknowledged is lost: every create answered 201 and not deleted since exists, and
//     every delete answered 200/202 is gone;
//   - every control plane converges: Ready=True once the chaos stops, within a deadline;
//   - no process leaks: stand-ins run only for control planes that exist, one of each program,
//     under the agent the control plane is placed on, and none once everything is deleted;
//   - memory stays flat: the hub's and each agent's RSS over their longest life.
// Prints the figures as JSON (for bench/README.md); exits 1 when an invariant fails, and leaves
// its work directory (logs, data) for a look.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "bench/bench_common.hpp"
#include "shared/common/util.hpp"
#include "shared/config/kubeconfig.hpp"
#include "shared/net/https_client.hpp"
#include "shared/tls/pki.hpp"

extern char** environ;

namespace {

using namespace kflex;
using namespace kflex::bench;
using SteadyClock = std::chrono::steady_clock;
constexpr const char* kApi = "/apis/tenancy.kflex.kubestellar.org/v1alpha1/";

std::atomic<bool> g_interrupted{false};

double secondsSince(SteadyClock::time_point t0) { return std::chrono::duration<double>(SteadyClock::now() - t0).count(); }

void say(const std::string& line) {
  static std::mutex m;
  std::lock_guard lock(m);
  std::cerr << "soak: " << line << std::endl;
}

/// Starts argv (PATH is searched) with stdout and stderr appended to `log`, stdin from /dev/null,
/// and `env` added to this process's environment. posix_spawn: safe from a threaded process.
pid_t spawnLogged(const std::vector<std::string>& args, const fs::path& log, const std::vector<std::string>& env = {}) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  std::vector<char*> argv;
  for (const auto& a : args) {
    argv.push_back(const_cast<char*>(a.c_str()));
  }
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) {
    envp.push_back(*e);
  }
  for (const auto& e : env) {
    envp.push_back(const_cast<char*>(e.c_str()));
  }
  envp.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, args[0].c_str(), &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  return rc == 0 ? pid : -1;
}

int runQuiet(const std::vector<std::string>& args, const fs::path& log) {
  pid_t pid = spawnLogged(args, log);
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) < 0) {
    return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/// One process's resident memory over one life (a restart starts a new life).
struct Life {
  std::string who;
  double started = 0;  // seconds into the run
  std::vector<std::pair<double, long>> rss;  // (seconds into the run, KiB)
};

/// A child process we supervise: started again after we kill it.
struct Child {
  std::string name;
  std::vector<std::string> argv;
  fs::path log;
  std::vector<std::string> env;
  pid_t pid = -1;
  std::vector<Life> lives;

  bool start(double now) {
    pid = spawnLogged(argv, log, env);
    lives.push_back(Life{name, now, {}});
    return pid > 0;
  }
  /// SIGKILL and reap.
  void kill9() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      pid = -1;
    }
  }
  /// SIGTERM and reap, SIGKILL after `grace`; the exit status (-1 when killed).
  int stop(std::chrono::seconds grace) {
    if (pid <= 0) {
      return 0;
    }
    ::kill(pid, SIGTERM);
    auto deadline = SteadyClock::now() + grace;
    int status = 0;
    while (SteadyClock::now() < deadline) {
      if (waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    kill9();
    return -1;
  }
  /// Reaps it when it exited on its own; true when it did (an unexpected death).
  bool exited(int& status) {
    if (pid > 0 && waitpid(pid, &status, WNOHANG) == pid) {
      pid = -1;
      return true;
    }
    return false;
  }
};

/// Hard-links (or, across file systems, copies) kflex-hub, kflex-agent and standins/ from `from`
/// into `to`.
Result<void> snapshotPrograms(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::create_directories(to / "standins", ec);
  std::vector<fs::path> files = {"kflex-hub", "kflex-agent"};
  for (const auto& e : fs::directory_iterator(from / "standins", ec)) {
    if (e.is_regular_file()) {
      files.push_back(fs::path("standins") / e.path().filename());
    }
  }
  for (const auto& f : files) {
    std::error_code lec;
    fs::create_hard_link(from / f, to / f, lec);
    if (lec) {
      fs::copy_file(from / f, to / f, fs::copy_options::overwrite_existing, lec);
    }
    if (lec) {
      return fail("cannot copy " + (from / f).string() + ": " + lec.message());
    }
  }
  return {};
}

/// A stand-in process found in /proc: its program and the control plane directory it serves.
struct StandinProc {
  pid_t pid;
  std::string program;
  std::string agent_dir;  // the agent data directory its command line names
  std::string control_plane;
};

/// Calls fn(pid, command line with spaces for NULs, /proc/PID) for every process but this one.
void forEachProcess(const std::function<void(pid_t, const std::string&, const fs::path&)>& fn) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    std::string pid_text = entry.path().filename().string();
    if (pid_text.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos ||
        std::stoi(pid_text) == ::getpid()) {
      continue;
    }
    std::string cmdline = slurp(entry.path() / "cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    fn(std::stoi(pid_text), cmdline, entry.path());
  }
}

/// Every process running a program from `standins` whose command line names a control plane
/// directory under `work` (WORK/AGENT/cp/NAME/...).
std::vector<StandinProc> scanStandins(const fs::path& standins, const fs::path& work) {
  std::vector<StandinProc> out;
  const std::string prefix = work.string() + "/";
  forEachProcess([&](pid_t pid, const std::string& cmdline, const fs::path& proc) {
    std::error_code lec;
    fs::path exe = fs::read_symlink(proc / "exe", lec);
    if (lec || exe.parent_path() != standins) {
      return;
    }
    // The first WORK/AGENT/cp/NAME/ in it (the program itself is under WORK/bin/ too).
    for (auto at = cmdline.find(prefix); at != std::string::npos; at = cmdline.find(prefix, at + 1)) {
      std::string rest = cmdline.substr(at + prefix.size());
      auto parts = split(rest.substr(0, rest.find(' ')), '/');
      if (parts.size() >= 3 && parts[1] == "cp") {
        std::string program = exe.filename().string();
        program = program.substr(0, program.find(' '));  // "kine (deleted)"
        out.push_back({pid, program, parts[0], parts[2]});
        break;
      }
    }
  });
  return out;
}

/// Every process whose command line names `work` (what must be gone at the end).
std::vector<pid_t> scanAnything(const fs::path& work) {
  std::vector<pid_t> out;
  forEachProcess([&](pid_t pid, const std::string& cmdline, const fs::path&) {
    if (cmdline.find(work.string() + "/") != std::string::npos) {
      out.push_back(pid);
    }
  });
  return out;
}

/// What the load generator knows about each name it used.
struct Ledger {
  std::mutex m;
  std::set<std::string> live;           // create acknowledged (201), no delete tried since
  std::set<std::string> deleted;        // delete acknowledged (200/202)
  std::set<std::string> maybe;          // a create or delete whose answer never came
  std::vector<std::string> violations;  // what the hub answered that it must not have
  size_t creates_ok = 0, creates_unanswered = 0, deletes_ok = 0, deletes_unanswered = 0, refused = 0;
};

/// The veth/bridge network that puts each agent in a namespace of its own.
struct Network {
  bool enabled = false;
  std::string tag, bridge, subnet;
  std::vector<std::string> namespaces, host_ifs;
  fs::path log;

  bool setUp(size_t agents, const fs::path& work) {
    log = work / "network.log";
    tag = std::to_string(::getpid() % 100000);
    bridge = "kfsb" + tag;
    // A /24 no interface uses yet (two soaks may run side by side).
    fs::path addrs = work / "addresses.txt";
    runQuiet({"ip", "-o", "-4", "addr", "show"}, addrs);
    std::string used = slurp(addrs);
    for (int i = 0; i < 250; ++i) {
      subnet = "10.214." + std::to_string((::getpid() + i) % 250) + ".";
      if (used.find(" " + subnet) == std::string::npos) {
        break;
      }
    }
    std::vector<std::vector<std::string>> cmds = {{"ip", "link", "add", bridge, "type", "bridge"},
                                                  {"ip", "addr", "add", subnet + "1/24", "dev", bridge},
                                                  {"ip", "link", "set", bridge, "up"}};
    for (size_t i = 0; i < agents; ++i) {
      std::string ns = "kflex-soak" + tag + "-" + std::to_string(i + 1);
      std::string host_if = "kfs" + tag + "h" + std::to_string(i + 1);
      std::string agent_if = "kfs" + tag + "a" + std::to_string(i + 1);
      namespaces.push_back(ns);
      host_ifs.push_back(host_if);
      cmds.push_back({"ip", "netns", "add", ns});
      cmds.push_back({"ip", "link", "add", host_if, "type", "veth", "peer", "name", agent_if});
      cmds.push_back({"ip", "link", "set", agent_if, "netns", ns});
      cmds.push_back({"ip", "link", "set", host_if, "master", bridge});
      cmds.push_back({"ip", "link", "set", host_if, "up"});
      cmds.push_back({"ip", "netns", "exec", ns, "ip", "addr", "add", subnet + std::to_string(10 + i) + "/24", "dev", agent_if});
      cmds.push_back({"ip", "netns", "exec", ns, "ip", "link", "set", agent_if, "up"});
      cmds.push_back({"ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"});
    }
    for (const auto& c : cmds) {
      if (runQuiet(c, log) != 0) {
        tearDown();
        return false;
      }
    }
    enabled = true;
    return true;
  }
  void cut(size_t i, bool down) { runQuiet({"ip", "link", "set", host_ifs[i], down ? "down" : "up"}, log); }
  void tearDown() {
    if (!fs::exists(log.parent_path())) {
      log = "/dev/null";  // (the work directory is gone: nothing to log into, the work is the same)
    }
    for (const auto& ns : namespaces) {
      runQuiet({"ip", "netns", "del", ns}, log);  // takes its veth pair along
    }
    runQuiet({"ip", "link", "del", bridge}, log);
    namespaces.clear();
    host_ifs.clear();
    enabled = false;
  }
};

/// A throw-away PostgreSQL (Debian's postgresql package) for the k8s control planes' Kine:
/// initdb in the work directory, run as user postgres when we are root, on `host`.
struct Postgres {
  fs::path dir;
  std::string dsn, password_file, why_not;
  pid_t pid = -1;

  bool start(const fs::path& work, const std::string& host, const std::string& subnet) {
    std::string bin;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/usr/lib/postgresql", ec)) {
      if (fs::exists(e.path() / "bin" / "postgres") && fs::exists(e.path() / "bin" / "initdb")) {
        bin = std::max(bin, (e.path() / "bin").string());
      }
    }
    if (bin.empty()) {
      why_not = "PostgreSQL is not installed";
      return false;
    }
    dir = work / "postgres";
    fs::create_directories(dir);
    std::vector<std::string> as;
    if (::geteuid() == 0) {
      // (PostgreSQL refuses to run as root; user postgres must be able to pass the work directory.)
      fs::permissions(work, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec, ec);
      as = {"setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"};
      runQuiet({"chown", "-R", "postgres:postgres", dir.string()}, work / "postgres.log");
    }
    auto asPostgres = [&as](std::vector<std::string> argv) {
      argv.insert(argv.begin(), as.begin(), as.end());
      return argv;
    };
    password_file = (dir / "password").string();
    std::string password = tls::randomAlnum(20);
    std::ofstream(password_file) << password << "\n";
    ::chmod(password_file.c_str(), 0600);
    if (::geteuid() == 0) {
      runQuiet({"chown", "postgres:postgres", password_file}, work / "postgres.log");
    }
    if (runQuiet(asPostgres({bin + "/initdb", "-D", (dir / "data").string(), "-U", "postgres", "-E", "UTF8",
                             "--auth=scram-sha-256", "--pwfile=" + password_file}),
                 work / "postgres.log") != 0) {
      why_not = "initdb failed; see postgres.log";
      return false;
    }
    std::ofstream(dir / "data" / "pg_hba.conf", std::ios::app) << "host all all " << subnet << " scram-sha-256\n";
    // A free port: bind port 0 on the host address and let it go.
    int port = 0;
    {
      net::io_context ioc;
      net::ip::tcp::acceptor a(ioc, {net::ip::make_address(host), 0});
      port = a.local_endpoint().port();
    }
    pid = spawnLogged(asPostgres({bin + "/postgres", "-D", (dir / "data").string(), "-p", std::to_string(port), "-k",
                                  dir.string(), "-c", "listen_addresses=" + host, "-c", "fsync=off", "-c",
                                  "max_connections=400"}),
                      work / "postgres.log");
    for (int i = 0; i < 600; ++i) {
      if (slurp(work / "postgres.log").find("ready to accept connections") != std::string::npos) {
        dsn = "postgres://postgres@" + host + ":" + std::to_string(port) + "/postgres?sslmode=disable";
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    why_not = "PostgreSQL did not start; see postgres.log";
    stop();
    return false;
  }
  void stop() {
    if (pid > 0) {
      ::kill(pid, SIGINT);  // fast shutdown
      waitpid(pid, nullptr, 0);
      pid = -1;
    }
  }
  ~Postgres() { stop(); }
};

/// Reads `log` from `offset` until "kflex-hub serving" appears (true) or `timeout` passes.
bool waitServing(const fs::path& log, size_t offset, std::chrono::seconds timeout) {
  auto deadline = SteadyClock::now() + timeout;
  while (SteadyClock::now() < deadline) {
    std::string text = slurp(log);
    if (text.size() > offset && text.find("kflex-hub serving", offset) != std::string::npos) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return false;
}

std::string readyOf(const Json& cp) {
  for (const auto& c : cp.value("status", Json::object()).value("conditions", Json::array())) {
    if (c.is_object() && c.value("type", "") == "Ready") {
      return c.value("status", "") + "/" + c.value("reason", "");
    }
  }
  return "<none>";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kflex-bench-soak: hub, agents and stand-ins under churn and SIGKILLs; checks the invariants"};
  std::string bin = fs::absolute(fs::path(argv[0]).parent_path()).string();
  int duration = 300;
  size_t agents_n = 3;
  size_t live_target = 12;
  double ops_per_second = 4;
  double chaos_every = 4;
  int converge_seconds = 300;
  int startup_ms = 300;
  unsigned seed = std::random_device{}();
  std::string netns_mode = "auto";
  std::string json_out;
  std::string work_arg;
  std::string postgres_dsn, postgres_password_file;
  app.add_option("--bin-dir", bin, "Where kflex-hub, kflex-agent and standins/ are")->capture_default_str();
  app.add_option("--duration", duration, "Seconds of churn and chaos")->capture_default_str();
  app.add_option("--agents", agents_n, "Agents (each its own data directory, and namespace as root)")->capture_default_str();
  app.add_option("--control-planes", live_target, "Control planes alive at a time, about")->capture_default_str();
  app.add_option("--ops-per-second", ops_per_second, "Creates and deletes a second")->capture_default_str();
  app.add_option("--chaos-every", chaos_every, "Mean seconds between two kills or cuts")->capture_default_str();
  app.add_option("--converge-seconds", converge_seconds, "Deadline for convergence once the chaos stops")
      ->capture_default_str();
  app.add_option("--startup-ms", startup_ms, "The stand-ins' start-up delay")->capture_default_str();
  app.add_option("--seed", seed, "Seed of the random choices (printed; the same seed repeats the same choices)");
  app.add_option("--netns", netns_mode, "Agents in network namespaces, cut at random: auto (when root), on, off")
      ->check(CLI::IsMember({"auto", "on", "off"}))
      ->capture_default_str();
  app.add_option("--postgres-dsn", postgres_dsn,
                 "PostgreSQL for the k8s control planes' Kine (default: a throw-away one when Debian's postgresql is "
                 "installed; without either, only k3s control planes)");
  app.add_option("--postgres-password-file", postgres_password_file, "The password for --postgres-dsn");
  app.add_option("--json", json_out, "Also write the figures as JSON to this file");
  app.add_option("--work-dir", work_arg, "Work directory (default: a new one under /tmp)");
  CLI11_PARSE(app, argc, argv);
  bin = fs::absolute(bin).string();
  if (!fs::exists(fs::path(bin) / "kflex-hub") || !fs::exists(fs::path(bin) / "standins" / "k3s")) {
    std::cerr << "kflex-bench-soak: no kflex-hub or standins/k3s in " << bin << "; pass --bin-dir\n";
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, [](int) { g_interrupted = true; });
  signal(SIGTERM, [](int) { g_interrupted = true; });
  raiseFdLimit();
  std::mt19937 rng(seed);
  auto uniform = [&rng](double a, double b) { return std::uniform_real_distribution<double>(a, b)(rng); };
  const fs::path work = fs::canonical(workDir(work_arg, "kflex-bench-soak"));
  say("work directory " + work.string() + ", seed " + std::to_string(seed));
  // The programs of this run, linked (or copied) into the work directory: a build that replaces
  // them meanwhile must not change, or break, what the soak restarts.
  if (auto r = snapshotPrograms(bin, work / "bin"); !r) {
    std::cerr << "kflex-bench-soak: " << r.error().message << "\n";
    return 2;
  }
  bin = (work / "bin").string();
  const fs::path standins = work / "bin" / "standins";
  const auto t0 = SteadyClock::now();

  Network network;
  if (netns_mode != "off") {
    if (::geteuid() == 0 && network.setUp(agents_n, work)) {
      say("agents run in network namespaces on bridge " + network.bridge);
    } else if (netns_mode == "on") {
      std::cerr << "kflex-bench-soak: cannot make network namespaces (needs root and the ip tool); see "
                << (work / "network.log") << "\n";
      return 2;
    }
  }
  struct NetworkGuard {
    Network& n;
    ~NetworkGuard() {
      if (n.enabled) {
        n.tearDown();
      }
    }
  } network_guard{network};

  // The hub: first on port 0, then always on the port it got (agents and kubeconfigs keep it).
  const std::string host = network.enabled ? network.subnet + "1" : "127.0.0.1";
  Child hub{"hub", {bin + "/kflex-hub", "serve", "--config", "/dev/null", "--data-dir", (work / "hub").string(),
                    "--listen", host + ":0"},
            work / "hub.log", {}, -1, {}};
  hub.start(0);
  if (!waitServing(hub.log, 0, std::chrono::seconds(20))) {
    std::cerr << "kflex-bench-soak: the hub did not start; see " << hub.log << "\n";
    hub.kill9();
    return 1;
  }
  auto access = config::Kubeconfig::load(work / "hub" / "admin.kubeconfig").value().access().value();
  const std::string hub_url = access.server;
  hub.argv.back() = hub_url.substr(8);  // HOST:PORT from now on
  auto client = net_client::HttpsClient::create(access).value();
  const std::string pin = tls::spkiPin(access.ca_pem).value();

  // PostgreSQL for Kine: the k8s control planes need it (without, they are Unschedulable).
  Postgres postgres;
  if (postgres_dsn.empty()) {
    if (postgres.start(work, host, network.enabled ? network.subnet + "0/24" : "127.0.0.1/32")) {
      postgres_dsn = postgres.dsn;
      postgres_password_file = postgres.password_file;
    } else {
      say("only k3s control planes: " + postgres.why_not);
    }
  }
  const bool with_k8s = !postgres_dsn.empty();

  // Agents: one bootstrap token each (in a 0600 file, as the printed command passes it).
  std::ofstream(work / "agent.yaml") << "capacity: {cpu: \"512\", memory: 1Ti}\n";
  std::vector<Child> agents;
  for (size_t i = 0; i < agents_n; ++i) {
    std::string name = "soak-" + std::to_string(i + 1);
    std::string id = tls::randomAlnum(6), secret = tls::randomAlnum(16);
    std::transform(id.begin(), id.end(), id.begin(), ::tolower);
    std::transform(secret.begin(), secret.end(), secret.begin(), ::tolower);
    Json tok = {{"apiVersion", "tenancy.kflex.kubestellar.org/v1alpha1"}, {"kind", "BootstrapToken"},
                {"metadata", {{"name", id}}}, {"spec", {{"secret", secret}, {"usages", {"enroll"}}}}};
    auto r = client->request(http::verb::post, std::string(kApi) + "bootstraptokens", tok.dump());
    if (!r || r->status != 201) {
      std::cerr << "kflex-bench-soak: cannot create a bootstrap token\n";
      hub.kill9();
      return 1;
    }
    writeFileAtomic(work / (name + ".token"), id + "." + secret + "\n", 0600).value();
    std::vector<std::string> args;
    if (network.enabled) {
      args = {"ip", "netns", "exec", network.namespaces[i]};
    }
    for (const std::string& a : {bin + "/kflex-agent", std::string("run"), std::string("--config"),
                                 (work / "agent.yaml").string(), std::string("--data-dir"), (work / name).string(),
                                 std::string("--hub"), hub_url, std::string("--name"), name, std::string("--token-file"),
                                 (work / (name + ".token")).string(), std::string("--ca-cert-hash"), pin,
                                 std::string("--bin-dir"), standins.string()}) {
      args.push_back(a);
    }
    if (with_k8s) {
      args.insert(args.end(), {"--postgres-dsn", postgres_dsn});
      if (!postgres_password_file.empty()) {
        args.insert(args.end(), {"--postgres-password-file", postgres_password_file});
      }
    }
    agents.push_back(Child{name, args, work / (name + ".log"),
                           {"KFLEX_STANDIN_STARTUP_MS=" + std::to_string(startup_ms)}, -1, {}});
    agents.back().start(secondsSince(t0));
  }
  auto list = [&]() -> std::optional<Json> {
    auto r = client->request(http::verb::get, std::string(kApi) + "controlplanes", "", "application/json",
                             std::chrono::seconds(10));
    if (!r || r->status != 200) {
      return std::nullopt;
    }
    Json j = Json::parse(r->body, nullptr, false);
    return j.is_object() ? std::optional<Json>(j) : std::nullopt;
  };
  auto agentsReady = [&] {
    auto r = client->request(http::verb::get, std::string(kApi) + "agents");
    size_t ready = 0;
    if (r && r->status == 200) {
      for (const auto& a : Json::parse(r->body, nullptr, false).value("items", Json::array())) {
        ready += readyOf(a).rfind("True/", 0) == 0 ? 1 : 0;
      }
    }
    return ready;
  };
  for (int i = 0; i < 600 && agentsReady() < agents_n; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (agentsReady() < agents_n) {
    std::cerr << "kflex-bench-soak: the agents did not all become Ready in 30 s; see " << work << "\n";
    for (auto& a : agents) {
      a.kill9();
    }
    hub.kill9();
    return 1;
  }
  say(std::to_string(agents_n) + " agents Ready; churn and chaos for " + std::to_string(duration) + " s");

  // The load: creates and deletes, each answer recorded in the ledger.
  Ledger ledger;
  std::atomic<bool> stop_load{false};
  std::thread load([&] {
    auto lclient = net_client::HttpsClient::create(access).value();
    std::mt19937 lrng(seed + 1);
    size_t next = 0;
    auto period = std::chrono::duration<double>(1.0 / ops_per_second);
    auto due = SteadyClock::now();
    while (!stop_load && !g_interrupted) {
      due += std::chrono::duration_cast<SteadyClock::duration>(period);
      std::this_thread::sleep_until(due);
      size_t live;
      {
        std::lock_guard lock(ledger.m);
        live = ledger.live.size();
      }
      bool create = live < live_target / 2 || (live < live_target && lrng() % 2 == 0);
      if (create) {
        std::string name = "cp-" + std::to_string(++next);
        const char* type = with_k8s && lrng() % 3 == 0 ? "k8s" : "k3s";
        Json cp = {{"apiVersion", "tenancy.kflex.kubestellar.org/v1alpha1"}, {"kind", "ControlPlane"},
                   {"metadata", {{"name", name}}}, {"spec", {{"type", type}}}};
        auto r = lclient->request(http::verb::post, std::string(kApi) + "controlplanes", cp.dump(), "application/json",
                                  std::chrono::seconds(10));
        std::lock_guard lock(ledger.m);
        if (r && r->status == 201) {
          ledger.live.insert(name);
          ++ledger.creates_ok;
        } else if (!r || r->status >= 500) {
          ledger.maybe.insert(name);  // may or may not have been written
          ++ledger.creates_unanswered;
        } else if (r->status == 429) {
          ++ledger.refused;  // the hub sheds load: nothing was written
        } else {
          ++ledger.refused;
          ledger.violations.push_back("create " + name + " answered " + std::to_string(r->status) + ": " + r->body);
        }
        continue;
      }
      std::string name;
      {
        std::lock_guard lock(ledger.m);
        auto it = ledger.live.begin();
        std::advance(it, lrng() % ledger.live.size());
        name = *it;
        ledger.live.erase(it);
      }
      auto r = lclient->request(http::verb::delete_, std::string(kApi) + "controlplanes/" + name, "",
                                "application/json", std::chrono::seconds(10));
      std::lock_guard lock(ledger.m);
      if (r && (r->status == 200 || r->status == 202)) {
        ledger.deleted.insert(name);
        ++ledger.deletes_ok;
      } else if (r && r->status == 404) {
        ledger.violations.push_back("acknowledged create " + name + " is gone: delete answered 404");
      } else {
        ledger.maybe.insert(name);
        ++ledger.deletes_unanswered;
      }
    }
  });

  // The chaos: every few seconds one of: SIGKILL an agent (not soak-1, whose memory is watched over
  // the whole run) or a stand-in, SIGKILL the hub (not in the last quarter, so one hub life is
  // long), or cut an agent's network for 2-20 s. Everything killed is started again shortly.
  std::map<std::string, size_t> actions;
  std::vector<std::pair<double, std::function<void()>>> pending;  // (when, what): restarts, heals
  std::vector<double> cut_until(agents_n, 0);
  std::vector<std::string> unexpected;
  double next_chaos = secondsSince(t0) + uniform(0.5, 2 * chaos_every);
  double next_sample = 0;
  const double chaos_start = secondsSince(t0);
  const double chaos_end = chaos_start + duration;
  auto sample = [&](double now) {
    for (Child* c : [&] {
           std::vector<Child*> all{&hub};
           for (auto& a : agents) {
             all.push_back(&a);
           }
           return all;
         }()) {
      if (c->pid > 0 && !c->lives.empty()) {
        // Through `ip netns exec` the pid is the agent's own (ip execs it).
        c->lives.back().rss.emplace_back(now, rssKb(c->pid));
      }
    }
  };
  auto runPending = [&](double now) {
    for (size_t i = 0; i < pending.size();) {
      if (pending[i].first <= now) {
        auto what = std::move(pending[i].second);
        pending.erase(pending.begin() + long(i));
        what();
      } else {
        ++i;
      }
    }
  };
  // A process that dies without being killed is a finding; it is started again a second later
  // (as systemd would), and its exit status is in the report.
  auto checkAlive = [&](double now) {
    std::vector<Child*> all{&hub};
    for (auto& a : agents) {
      all.push_back(&a);
    }
    for (Child* c : all) {
      int status = 0;
      if (c->exited(status)) {
        std::string how = WIFEXITED(status) ? "exit code " + std::to_string(WEXITSTATUS(status))
                                            : "signal " + std::to_string(WTERMSIG(status));
        unexpected.push_back(c->name + " died on its own (" + how + ") at " + std::to_string(int(now)) + " s");
        say(unexpected.back());
        pending.emplace_back(now + 1, [&, c] { c->start(secondsSince(t0)); });
      }
    }
  };
  while (!g_interrupted) {
    double now = secondsSince(t0);
    if (now >= chaos_end && pending.empty()) {
      break;
    }
    runPending(now);
    checkAlive(now);
    if (now >= next_sample) {
      sample(now);
      next_sample = now + 1;
    }
    if (now >= next_chaos && now < chaos_end) {
      next_chaos = now + std::exponential_distribution<double>(1.0 / chaos_every)(rng);
      std::vector<std::string> kinds = {"agent", "standin", "standin"};
      if (now < chaos_start + 0.75 * duration && hub.pid > 0) {
        kinds.push_back("hub");
      }
      if (network.enabled) {
        kinds.push_back("netns");
        kinds.push_back("netns");
      }
      std::string kind = kinds[rng() % kinds.size()];
      if (kind == "agent" && agents_n > 1) {
        size_t i = 1 + rng() % (agents_n - 1);
        if (agents[i].pid > 0) {
          agents[i].kill9();
          ++actions["agent killed"];
          pending.emplace_back(now + uniform(0.2, 3), [&, i] { agents[i].start(secondsSince(t0)); });
        }
      } else if (kind == "standin") {
        auto procs = scanStandins(standins, work);
        if (!procs.empty()) {
          const auto& p = procs[rng() % procs.size()];
          ::kill(p.pid, SIGKILL);
          ++actions["stand-in killed (" + p.program + ")"];
        }
      } else if (kind == "hub") {
        hub.kill9();
        ++actions["hub killed"];
        pending.emplace_back(now + uniform(0.2, 2), [&] {
          size_t offset = fs::file_size(hub.log);
          hub.start(secondsSince(t0));
          if (!waitServing(hub.log, offset, std::chrono::seconds(30))) {
            unexpected.push_back("the hub did not serve again within 30 s of a restart");
            say(unexpected.back());
          }
        });
      } else if (kind == "netns") {
        size_t i = rng() % agents_n;
        if (cut_until[i] <= now) {
          double length = uniform(2, 20);
          network.cut(i, true);
          cut_until[i] = now + length;
          ++actions["network cut"];
          pending.emplace_back(now + length, [&, i] { network.cut(i, false); });
        }
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  stop_load = true;
  load.join();
  const double chaos_seconds = secondsSince(t0) - chaos_start;
  say("chaos over after " + std::to_string(int(chaos_seconds)) + " s; waiting for convergence");

  // Convergence: every acknowledged create exists and is Ready, every acknowledged delete is gone,
  // nothing else exists but names whose answer never came (and those are Ready too).
  std::vector<std::string> problems;
  const auto converge_start = SteadyClock::now();
  std::string last_state;
  bool converged = false;
  double converge_seconds_taken = -1;
  Json last_list;
  while (!g_interrupted && secondsSince(converge_start) < converge_seconds) {
    runPending(secondsSince(t0));
    checkAlive(secondsSince(t0));
    sample(secondsSince(t0));
    auto l = list();
    if (!l) {
      last_state = "the hub does not answer a list";
      std::this_thread::sleep_for(std::chrono::seconds(1));
      continue;
    }
    last_list = *l;
    std::vector<std::string> waiting;
    std::set<std::string> present;
    for (const auto& item : l->value("items", Json::array())) {
      std::string name = item["metadata"].value("name", "");
      present.insert(name);
      if (ledger.deleted.count(name)) {
        waiting.push_back(name + " (deleted, still there)");
      } else if (!ledger.live.count(name) && !ledger.maybe.count(name)) {
        waiting.push_back(name + " (never created by the soak)");
      } else if (readyOf(item).rfind("True/", 0) != 0) {
        waiting.push_back(name + " (" + readyOf(item) + ")");
      }
    }
    for (const auto& name : ledger.live) {
      if (!present.count(name)) {
        waiting.push_back(name + " (acknowledged, missing)");
      }
    }
    if (waiting.empty()) {
      converged = true;
      converge_seconds_taken = secondsSince(converge_start);
      break;
    }
    std::string state = std::to_string(waiting.size()) + " not converged: " + waiting.front();
    if (state != last_state) {
      say(state);
      last_state = state;
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  if (!converged) {
    problems.push_back("not converged within " + std::to_string(converge_seconds) + " s: " + last_state);
  } else {
    say("converged in " + std::to_string(converge_seconds_taken) + " s");
  }
  for (const auto& v : ledger.violations) {
    problems.push_back(v);
  }
  for (const auto& u : unexpected) {
    problems.push_back(u);
  }

  // Processes: one of each program per control plane that exists, under its agent, and none else.
  std::map<std::string, std::string> placed;  // control plane -> agent
  for (const auto& item : last_list.value("items", Json::array())) {
    placed[item["metadata"].value("name", "")] = item.value("status", Json::object()).value("agent", "");
  }
  auto checkProcesses = [&](const char* when) {
    std::map<std::string, size_t> seen;
    for (const auto& p : scanStandins(standins, work)) {
      auto it = placed.find(p.control_plane);
      if (it == placed.end()) {
        problems.push_back(std::string(when) + ": " + p.program + " (pid " + std::to_string(p.pid) +
                           ") still runs for " + p.control_plane + ", which does not exist");
      } else if (it->second != p.agent_dir) {
        problems.push_back(std::string(when) + ": " + p.program + " for " + p.control_plane + " runs under " +
                           p.agent_dir + " but the control plane is placed on " + it->second);
      } else if (++seen[p.control_plane + "/" + p.program] == 2) {
        problems.push_back(std::string(when) + ": two " + p.program + " processes for " + p.control_plane);
      }
    }
  };
  if (converged) {
    checkProcesses("after convergence");
  }

  // Everything is deleted: the hub empties, and no stand-in is left behind.
  for (const auto& item : list().value_or(last_list).value("items", Json::array())) {
    client->request(http::verb::delete_, std::string(kApi) + "controlplanes/" + item["metadata"].value("name", ""));
  }
  bool emptied = false;
  const auto delete_start = SteadyClock::now();
  while (!g_interrupted && secondsSince(delete_start) < 120) {
    auto l = list();
    if (l && l->value("items", Json::array()).empty()) {
      emptied = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  double delete_all_seconds = secondsSince(delete_start);
  if (!emptied) {
    problems.push_back("the hub still holds control planes 120 s after everything was deleted");
  }
  placed.clear();
  for (int i = 0; i < 100 && !scanStandins(standins, work).empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the last stops are under way
  }
  checkProcesses("after deleting everything");

  // Memory: over each process's longest life, the highest RSS in its last third against the
  // highest in its middle third (the first third is warm-up).
  Json memory = Json::array();
  for (Child* c : [&] {
         std::vector<Child*> all{&hub};
         for (auto& a : agents) {
           all.push_back(&a);
         }
         return all;
       }()) {
    const Life* longest = nullptr;
    for (const auto& l : c->lives) {
      if (l.rss.size() >= 6 && (longest == nullptr || l.rss.size() > longest->rss.size())) {
        longest = &l;
      }
    }
    if (longest == nullptr) {
      continue;
    }
    size_t n = longest->rss.size();
    long mid = 0, last = 0;
    for (size_t i = n / 3; i < 2 * n / 3; ++i) {
      mid = std::max(mid, longest->rss[i].second);
    }
    for (size_t i = 2 * n / 3; i < n; ++i) {
      last = std::max(last, longest->rss[i].second);
    }
    double growth = mid > 0 ? double(last - mid) / double(mid) : 0;
    memory.push_back({{"process", c->name},
                      {"lives", c->lives.size()},
                      {"longestLifeSeconds", longest->rss.back().first - longest->started},
                      {"rssMiddleThirdMaxKiB", mid},
                      {"rssLastThirdMaxKiB", last},
                      {"growth", growth}});
    // Flat: at most 10 % and 8 MiB above the middle third (allocator slack, SQLite's page cache).
    if (last > mid + std::max<long>(8 * 1024, mid / 10)) {
      problems.push_back(c->name + " grew from " + std::to_string(mid) + " KiB to " + std::to_string(last) +
                         " KiB over its longest life");
    }
  }

  // Stop everything; nothing of the run may be left running.
  int hub_exit = hub.stop(std::chrono::seconds(15));
  std::vector<int> agent_exits;
  for (auto& a : agents) {
    agent_exits.push_back(a.stop(std::chrono::seconds(15)));
  }
  if (hub_exit != 0) {
    problems.push_back("the hub exited " + std::to_string(hub_exit) + " on SIGTERM");
  }
  for (size_t i = 0; i < agents.size(); ++i) {
    if (agent_exits[i] != 0) {
      problems.push_back(agents[i].name + " exited " + std::to_string(agent_exits[i]) + " on SIGTERM");
    }
  }
  postgres.stop();
  for (pid_t p : scanAnything(work)) {
    problems.push_back("process " + std::to_string(p) + " of the run still runs: " + slurp("/proc/" + std::to_string(p) + "/cmdline"));
    ::kill(p, SIGKILL);  // ours: its command line names our work directory
  }

  Json out = {{"seed", seed},
              {"agents", agents_n},
              {"networkNamespaces", network.enabled},
              {"k8sControlPlanes", with_k8s},
              {"chaosSeconds", chaos_seconds},
              {"controlPlanesAlive", live_target},
              {"createsAcknowledged", ledger.creates_ok},
              {"createsUnanswered", ledger.creates_unanswered},
              {"deletesAcknowledged", ledger.deletes_ok},
              {"deletesUnanswered", ledger.deletes_unanswered},
              {"actions", actions},
              {"convergeSeconds", converge_seconds_taken},
              {"deleteAllSeconds", delete_all_seconds},
              {"memory", memory},
              {"problems", problems}};
  std::cout << out.dump(2) << "\n";
  if (!json_out.empty()) {
    std::ofstream(json_out) << out.dump(2) << "\n";
  }
  if (!problems.empty() || g_interrupted) {
    say(std::to_string(problems.size()) + " problem(s); the work directory stays: " + work.string());
    return 1;
  }
  say("every invariant held");
  network.tearDown();  // (before the work directory, which holds its log, goes)
  std::error_code ec;
  fs::remove_all(work, ec);
  return 0;
}
