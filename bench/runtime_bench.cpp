// SPDX-License-Identifier: Apache-2.0
// kflex-bench-runtime: what running control planes costs the agent, and how long a control plane
// takes from `create` to Ready through the whole path (hub, link, agent), with the stand-ins for
// k3s. The agent's own overhead per control plane is read against the same agent idle with none
// (its baseline in the same run); the agent's share of create-to-Ready against the stand-in's
// configured start-up delay (the part no agent can shorten).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <map>
#include <iterator>
#include <sstream>
#include <thread>

#include "bench/bench_common.hpp"
#include "shared/common/time.hpp"
#include "shared/common/util.hpp"
#include "shared/config/kubeconfig.hpp"
#include "shared/net/https_client.hpp"
#include "shared/tls/pki.hpp"

namespace {

using namespace kflex;
using namespace kflex::bench;
constexpr const char* kApi = "/apis/tenancy.kflex.kubestellar.org/v1alpha1/";

pid_t spawn(const std::vector<std::string>& args, const fs::path& log, const std::vector<std::string>& env) {
  pid_t pid = fork();
  if (pid == 0) {
    FILE* f = std::freopen(log.c_str(), "w", stderr);
    (void)f;
    for (const auto& e : env) {
      ::putenv(const_cast<char*>(e.c_str()));
    }
    std::vector<char*> argv;
    for (const auto& a : args) {
      argv.push_back(const_cast<char*>(a.c_str()));
    }
    argv.push_back(nullptr);
    execv(args[0].c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

// Log times (millisecond precision) of lines with `msg`, by the value of `key=` in them.
std::map<std::string, TimePoint> logTimes(const fs::path& log, const std::string& msg, const std::string& key) {
  std::map<std::string, TimePoint> out;
  std::istringstream in(slurp(log));
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(msg) == std::string::npos || line.rfind("time=", 0) != 0) {
      continue;
    }
    std::string stamp = line.substr(5, line.find(' ') - 5);  // 2026-01-02T03:04:05.678Z
    auto dot = stamp.find('.');
    auto t = parseTime(stamp.substr(0, dot) + "Z");
    auto c = line.find(key + "=");
    if (!t || c == std::string::npos || out.count(line.substr(c + key.size() + 1, line.find(' ', c) - c - key.size() - 1))) {
      continue;
    }
    if (dot != std::string::npos) {
      *t += std::chrono::milliseconds(std::atoi(stamp.substr(dot + 1, 3).c_str()));
    }
    out[line.substr(c + key.size() + 1, line.find(' ', c) - c - key.size() - 1)] = *t;
  }
  return out;
}

double msBetween(TimePoint a, TimePoint b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kflex-bench-runtime: the agent's overhead per control plane and create-to-Ready latency"};
  std::string bin = fs::absolute(fs::path(argv[0]).parent_path()).string();
  std::string counts_text = "1,10,50";
  int startup_ms = 300;
  int idle_seconds = 10;
  std::string json_out;
  int kills = 10;
  app.add_option("--bin-dir", bin, "Where kflex-hub, kflex-agent and standins/ are")->capture_default_str();
  app.add_option("--counts", counts_text, "Control planes running at each measurement (cumulative)")->capture_default_str();
  app.add_option("--startup-ms", startup_ms, "The k3s stand-in's start-up delay (its /readyz says 503 until then)")
      ->capture_default_str();
  app.add_option("--idle-seconds", idle_seconds, "How long the agent's CPU is measured at each count")->capture_default_str();
  app.add_option("--json", json_out, "Also write the figures as JSON to this file");
  app.add_option("--kills", kills,
                 "Status phase: stand-ins killed one by one (each restart is reported), to count what the agent "
                 "stores and spends per status write")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  bin = fs::absolute(bin).string();
  std::vector<size_t> counts;
  for (const auto& c : split(counts_text, ',')) {
    counts.push_back(std::stoul(c));
  }
  raiseFdLimit();
  fs::path dir = workDir("", "kflex-bench-runtime");
  HubProcess hub;
  if (!hub.start(bin + "/kflex-hub", dir / "hub", "127.0.0.1:0", dir / "hub.log")) {
    std::cerr << "the hub did not start; see " << (dir / "hub.log") << "\n";
    return 1;
  }
  auto access = config::Kubeconfig::load(dir / "hub" / "admin.kubeconfig").value().access().value();
  auto client = net_client::HttpsClient::create(access).value();
  std::string id = tls::randomAlnum(6);
  std::string secret = tls::randomAlnum(16);
  std::transform(id.begin(), id.end(), id.begin(), ::tolower);
  std::transform(secret.begin(), secret.end(), secret.begin(), ::tolower);
  Json tok = {{"apiVersion", "tenancy.kflex.kubestellar.org/v1alpha1"}, {"kind", "BootstrapToken"},
              {"metadata", {{"name", id}}}, {"spec", {{"secret", secret}, {"usages", {"enroll"}}}}};
  if (client->request(http::verb::post, std::string(kApi) + "bootstraptokens", tok.dump()).value().status != 201) {
    std::cerr << "cannot create a bootstrap token\n";
    return 1;
  }
  std::string pin = tls::spkiPin(access.ca_pem).value();
  std::string startup_env = "KFLEX_STANDIN_STARTUP_MS=" + std::to_string(startup_ms);
  writeFileAtomic(dir / "bench-1.token", id + "." + secret + "\n", 0600).value();  // never on a command line
  // Enough capacity offered for every count (placement otherwise keeps to the host's cores).
  std::ofstream(dir / "agent.yaml") << "capacity: {cpu: \"512\", memory: 1Ti}\n";
  pid_t agent = spawn({bin + "/kflex-agent", "run", "--config", (dir / "agent.yaml").string(), "--data-dir", (dir / "agent").string(),
                       "--hub", hub.url(), "--name", "bench-1", "--token-file", (dir / "bench-1.token").string(),
                       "--ca-cert-hash", pin,
                       "--bin-dir", bin + "/standins"},
                      dir / "agent.log", {startup_env});
  auto get = [&](const std::string& path) {
    auto r = client->request(http::verb::get, path);
    return r && r->status == 200 ? Json::parse(r->body, nullptr, false) : Json();
  };
  for (int i = 0; i < 200 && !get(std::string(kApi) + "agents/bench-1").is_object(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::cerr << "agent enrolled; measuring it idle with no control plane for " << idle_seconds << " s\n";
  auto measure = [&] {
    double cpu0 = cpuSeconds(agent);
    std::this_thread::sleep_for(std::chrono::seconds(idle_seconds));
    return std::make_pair(rssKb(agent), (cpuSeconds(agent) - cpu0) / idle_seconds);
  };
  auto [rss0, cpu0] = measure();
  Json out = {{"baseline", {{"rssKiB", rss0}, {"cpuCores", cpu0}}}, {"startupMs", startup_ms}, {"counts", Json::array()}};
  std::vector<double> hub_ms, link_ms, agent_ms, total_ms;
  size_t made = 0;
  bool failed = false;
  for (size_t n : counts) {
    std::map<std::string, TimePoint> sent, placed, ready;
    std::cerr << "creating control planes up to " << n << "...\n";
    for (; made < n; ++made) {
      std::string name = "cp-" + std::to_string(made);
      Json cp = {{"apiVersion", "tenancy.kflex.kubestellar.org/v1alpha1"}, {"kind", "ControlPlane"},
                 {"metadata", {{"name", name}}}, {"spec", {{"type", "k3s"}}}};
      sent[name] = std::chrono::system_clock::now();
      client->request(http::verb::post, std::string(kApi) + "controlplanes", cp.dump());
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120 + 2 * n);
    while (ready.size() < sent.size() && std::chrono::steady_clock::now() < deadline) {
      Json list = get(std::string(kApi) + "controlplanes");
      auto now = std::chrono::system_clock::now();
      for (const auto& item : list.value("items", Json::array())) {
        std::string name = item["metadata"].value("name", "");
        if (!sent.count(name)) {
          continue;
        }
        Json st = item.value("status", Json::object());
        if (!st.value("agent", "").empty() && !placed.count(name)) {
          placed[name] = now;
        }
        for (const auto& c : st.value("conditions", Json::array())) {
          if (c.value("type", "") == "Ready" && c.value("status", "") == "True" && !ready.count(name)) {
            ready[name] = now;
          }
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (ready.size() < sent.size()) {
      std::cerr << "only " << ready.size() << " of " << sent.size() << " became Ready; see " << dir << "\n";
      failed = true;
      break;
    }
    // hub: sent -> placed (the hub's log); link: placed -> the agent starts it (the agent's log);
    // agent: from there to Ready as the hub shows it (probes, the report back, the status write).
    auto placements = logTimes(dir / "hub.log", "msg=\"control plane placed\"", "control_plane");
    auto starts = logTimes(dir / "agent.log", "msg=\"starting a control plane\"", "controlPlane");
    for (const auto& [name, t0] : sent) {
      TimePoint p = placements.count(name) ? placements[name] : placed[name];
      TimePoint st = starts.count(name) ? starts[name] : p;
      hub_ms.push_back(msBetween(t0, p));
      link_ms.push_back(msBetween(p, st));
      agent_ms.push_back(msBetween(st, ready[name]));
      total_ms.push_back(msBetween(t0, ready[name]));
    }
    std::cerr << n << " Ready; measuring the agent for " << idle_seconds << " s\n";
    auto [rss, cpu] = measure();
    Json row = {{"controlPlanes", n},
                {"agentRssKiB", rss},
                {"agentCpuCores", cpu},
                {"perControlPlaneRssKiB", n ? double(rss - rss0) / double(n) : 0},
                {"perControlPlaneMillicores", n ? (cpu - cpu0) * 1000 / double(n) : 0}};
    out["counts"].push_back(row);
    std::cerr << row.dump() << "\n";
  }
  if (!failed && made > 0 && kills > 0) {
    // Status reports: kill stand-ins one at a time; each restart is reported (Ready False, then
    // True, restarts counted). What the agent stores of desired state meanwhile (each store is a
    // SQLite commit with its fsyncs, then a rescan of every control plane) is what it was sent
    // back; its fsyncs are counted by strace when there is one.
    std::cerr << "status phase: killing " << kills << " stand-ins one by one\n";
    auto revision = [&] {
      Json list = get(std::string(kApi) + "controlplanes?limit=1");
      return std::stoll(list.value("metadata", Json::object()).value("resourceVersion", "0"));
    };
    auto storedLines = [&] {
      std::istringstream in(slurp(dir / "agent.log"));
      size_t n = 0;
      for (std::string line; std::getline(in, line);) {
        n += line.find("msg=\"desired state stored\"") != std::string::npos ? 1 : 0;
      }
      return n;
    };
    pid_t tracer = -1;
    fs::path trace = dir / "fsync.strace";
    if (::access("/usr/bin/strace", X_OK) == 0) {
      tracer = spawn({"/usr/bin/strace", "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", trace.string(), "-p",
                      std::to_string(agent)},
                     dir / "strace.log", {});
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    int64_t rev0 = revision();
    size_t stored0 = storedLines();
    double cpu_start = cpuSeconds(agent);
    auto t0 = std::chrono::steady_clock::now();
    for (int k = 0; k < kills; ++k) {
      fs::path pid_file = dir / "agent" / "cp" / ("cp-" + std::to_string(size_t(k) % made)) / "run" / "k3s.pid";
      Json j = Json::parse(slurp(pid_file), nullptr, false);
      if (j.is_object() && j.value("pid", 0) > 0) {
        ::kill(-j.value("pid", 0), SIGKILL);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(startup_ms + 2500));  // restarted, Ready, reported
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double cpu = cpuSeconds(agent) - cpu_start;
    int64_t writes = revision() - rev0;
    size_t stored = storedLines() - stored0;
    int64_t fsyncs = -1;
    if (tracer > 0) {
      ::kill(tracer, SIGINT);
      waitpid(tracer, nullptr, 0);
      // strace -c: "... calls errors syscall" rows; sum the calls of fsync and fdatasync.
      std::istringstream in(slurp(trace));
      fsyncs = 0;
      for (std::string line; std::getline(in, line);) {
        if ((line.find("fsync") != std::string::npos || line.find("fdatasync") != std::string::npos) &&
            line.find("total") == std::string::npos) {
          std::istringstream cols(line);
          std::vector<std::string> c{std::istream_iterator<std::string>(cols), {}};
          if (c.size() >= 5) {
            fsyncs += std::stoll(c[3]);
          }
        }
      }
    }
    Json phase = {{"kills", kills},
                  {"seconds", seconds},
                  {"hubWrites", writes},
                  {"desiredStoredByAgent", stored},
                  {"desiredStoredPerWrite", writes > 0 ? double(stored) / double(writes) : 0},
                  {"agentFsyncs", fsyncs},
                  {"agentFsyncsPerWrite", writes > 0 && fsyncs >= 0 ? double(fsyncs) / double(writes) : -1},
                  {"agentCpuMsPerWrite", writes > 0 ? cpu * 1000 / double(writes) : 0}};
    out["statusPhase"] = phase;
    std::cerr << phase.dump() << "\n";
  }
  Stats h{hub_ms}, l{link_ms}, a{agent_ms}, t{total_ms};
  out["createToReadyMs"] = {{"hub", {{"p50", h.pct(0.5)}, {"p99", h.pct(0.99)}}},
                            {"link", {{"p50", l.pct(0.5)}, {"p99", l.pct(0.99)}}},
                            {"agent", {{"p50", a.pct(0.5)}, {"p99", a.pct(0.99)}}},
                            {"total", {{"p50", t.pct(0.5)}, {"p99", t.pct(0.99)}}},
                            {"agentOverStartupDelay", {{"p50", a.pct(0.5) / startup_ms}}}};
  std::cout << out.dump(2) << "\n";
  if (!json_out.empty()) {
    std::ofstream(json_out) << out.dump(2) << "\n";
  }
  // Leave nothing running: the agent, then what it started (it leaves control planes on purpose).
  ::kill(agent, SIGTERM);
  waitpid(agent, nullptr, 0);
  std::error_code ec;
  for (const auto& cp : fs::directory_iterator(dir / "agent" / "cp", ec)) {
    auto pid_text = slurp(cp.path() / "run" / "k3s.pid");
    Json j = Json::parse(pid_text, nullptr, false);
    if (j.is_object() && j.value("pid", 0) > 0) {
      ::kill(-j.value("pid", 0), SIGKILL);
    }
  }
  hub.stop();
  if (failed) {
    return 1;  // (the logs stay in the work directory)
  }
  fs::remove_all(dir, ec);
  return 0;
}
