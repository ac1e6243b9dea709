// SPDX-License-Identifier: Apache-2.0
// Agent fleet benchmark: enrolls N simulated agents against a real kflex-hub (each with its own
// key and certificate, through the real enrollment API), holds N mutual-TLS WebSocket links from
// one process, and measures the hub's RSS and CPU while it holds them, the desired-state fan-out
// latency from an API create to the agent's acknowledgement, and the time for all N to come back
// after a hub restart.
#include <atomic>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_set>

#include <CLI/CLI.hpp>

#include "bench/bench_common.hpp"
#include "bench/sim_agents.hpp"
#include "shared/config/kubeconfig.hpp"
#include "shared/protocol/link.hpp"
#include "shared/tls/context.hpp"
#include "shared/tls/pki.hpp"
#include "shared/tls/secret_box.hpp"

int main(int argc, char** argv) {
  using namespace kflex;
  using namespace kflex::bench;
  CLI::App app{"kflex-bench-agents: N simulated agents (real enrollment, real mTLS WebSocket links) against a real kflex-hub"};
  size_t agents = 1000;
  size_t fanout = 500;
  double fanout_rate = 50;
  int idle_seconds = 30;
  bool restart = true;
  std::string hub_bin = (fs::path(argv[0]).parent_path() / "kflex-hub").string();
  std::string work;
  std::string json_out;
  app.add_option("--agents", agents, "Simulated agents")->capture_default_str();
  app.add_option("--fanout", fanout, "ControlPlanes created (each placed on an agent) for the fan-out latency")->capture_default_str();
  app.add_option("--fanout-rate", fanout_rate, "Creates per second during the fan-out phase")->capture_default_str();
  app.add_option("--idle-seconds", idle_seconds, "How long the hub's CPU is measured while it holds the idle fleet")->capture_default_str();
  app.add_flag("!--no-restart", restart, "Skip the hub-restart (reconnect) phase");
  app.add_option("--hub", hub_bin, "kflex-hub binary")->capture_default_str();
  app.add_option("--work-dir", work, "Directory for the hub's data (default: a new temp dir)");
  app.add_option("--json", json_out, "Also write the figures as JSON to this file");
  size_t replicas = 1;
  std::string datastore;
  std::string datastore_password_file;
  std::string secrets_key_file;
  bool failover = false;
  app.add_option("--replicas", replicas, "Hub replicas, each agent starting on one of them (more than one needs --datastore)")
      ->capture_default_str();
  app.add_option("--datastore", datastore, "PostgreSQL URI for the hubs (an empty database)");
  app.add_option("--datastore-password-file", datastore_password_file, "Its password, in a file");
  app.add_option("--secrets-key-file", secrets_key_file, "The replicas' secrets key (default: one made in the work dir)");
  app.add_flag("--failover", failover,
               "Instead of the restart: kill (SIGKILL) the first replica and time its agents' return to the others");
  CLI11_PARSE(app, argc, argv);
  if (replicas == 0 || (replicas > 1 && datastore.empty())) {
    std::cerr << "--replicas " << replicas << " needs --datastore (several replicas share one PostgreSQL database)\n";
    return 2;
  }
  if (failover && replicas < 2) {
    std::cerr << "--failover needs --replicas 2 or more\n";
    return 2;
  }

  raiseFdLimit();
  fs::path dir = workDir(work, "kflex-bench-agents");
  std::vector<std::string> hub_args;
  if (!datastore.empty()) {
    if (secrets_key_file.empty()) {
      // (The hub's own key-file maker: 32 random bytes, base64, 0600.)
      secrets_key_file = (dir / "secrets.key").string();
      if (auto made = tls::SecretBox::openOrCreate(secrets_key_file); !made) {
        std::cerr << made.error().message << "\n";
        return 1;
      }
    }
    hub_args = {"--datastore", datastore, "--secrets-key-file", secrets_key_file};
    if (!datastore_password_file.empty()) {
      hub_args.insert(hub_args.end(), {"--datastore-password-file", datastore_password_file});
    }
  }
  // Replica 0 first: on an empty database it makes the CA the others take.
  std::vector<HubProcess> hubs(replicas);
  auto hub_dir = [&](size_t i) { return dir / (i == 0 ? std::string("hub") : "hub-" + std::to_string(i)); };
  auto hub_log = [&](size_t i) { return dir / (i == 0 ? std::string("hub.log") : "hub-" + std::to_string(i) + ".log"); };
  for (size_t i = 0; i < replicas; ++i) {
    fs::remove_all(hub_dir(i));
    std::cerr << "starting " << hub_bin << (replicas > 1 ? " (replica " + std::to_string(i) + ")" : "") << "...\n";
    if (!hubs[i].start(hub_bin, hub_dir(i), "127.0.0.1:0", hub_log(i), hub_args)) {
      std::cerr << "the hub did not start; see " << hub_log(i) << "\n";
      for (size_t j = 0; j < i; ++j) {
        hubs[j].stop();
      }
      return 1;
    }
  }
  HubProcess& hub = hubs[0];
  long rss_empty = rssKb(hub.pid());
  auto [admin, anon] = hubContexts(dir / "hub");
  auto ep = hub.endpoint();
  net::io_context ioc;

  std::vector<SimAgent> fleet_agents(agents);
  Stats enroll;
  if (!enrollAgents(ioc, *admin, *anon, ep, fleet_agents, "sim", enroll)) {
    hub.stop();
    return 1;
  }
  std::printf("enrolled %zu agents in %.1f s (%.0f/s, p99 %.1f ms, %zu errors)\n", enroll.ms.size(), enroll.seconds,
              enroll.rate(), enroll.pct(0.99), enroll.errors);
  long rss_enrolled = rssKb(hub.pid());

  // The fleet, on its own thread (one core's worth of agents, like the real ones: idle).
  Fleet fleet(fanout);
  auto sim_ctx = hubContexts(dir / "hub").anon;
  net::io_context agent_ioc;
  auto work_guard = net::make_work_guard(agent_ioc);
  std::string hp = hub.hostPort();
  std::vector<Replica> addresses;
  for (auto& h : hubs) {
    addresses.push_back({h.endpoint(), h.hostPort()});
  }
  for (auto& a : fleet_agents) {
    net::co_spawn(agent_ioc, runAgent(a, fleet, *sim_ctx, addresses), net::detached);
  }
  auto connect_start = bench::Clock::now();
  std::thread fleet_thread([&] { agent_ioc.run(); });
  auto progress = [&] {
    return std::to_string(fleet.welcomed.load()) + " linked, " + std::to_string(fleet.synced.load()) + " synced, " +
           std::to_string(fleet.failures.load()) + " failed attempts";
  };
  bool all_up = waitFor([&] { return fleet.synced.load() == agents; }, std::chrono::seconds(600), progress);
  double connect_s = std::chrono::duration<double>(bench::Clock::now() - connect_start).count();
  std::printf("%s: %zu of %zu agents linked and synced in %.1f s\n", all_up ? "ok" : "TIMEOUT", fleet.synced.load(),
              agents, connect_s);

  // Idle: the hub holds the fleet; its CPU use over the window (leases renewed every 10 s).
  std::this_thread::sleep_for(std::chrono::seconds(2));
  double cpu0 = cpuSeconds(hub.pid());
  auto idle_start = bench::Clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(idle_seconds));
  double idle_cores = (cpuSeconds(hub.pid()) - cpu0) / std::chrono::duration<double>(bench::Clock::now() - idle_start).count();
  long rss_fleet = rssKb(hub.pid());
  std::printf("hub holding %zu agents: RSS %.1f MB (%.1f MB empty, %.1f MB enrolled, not linked), CPU %.3f cores -> %.0f agents per core\n",
              agents, double(rss_fleet) / 1024, double(rss_empty) / 1024, double(rss_enrolled) / 1024, idle_cores,
              idle_cores > 0 ? double(agents) / idle_cores : 0.0);

  // Fan-out: creates placed on agents; delay from the request to the agent's acknowledgement.
  std::cerr << "fan-out: " << fanout << " ControlPlanes at " << fanout_rate << "/s...\n";
  size_t create_errors = createPlaced(ioc, *admin, ep, fleet, "fan-", fanout, agents, 7, fanout_rate, true);
  waitFor([&] { std::lock_guard lock(fleet.mu); return fleet.fanout_ms.size() + create_errors >= fanout; },
          std::chrono::seconds(60), [&] { std::lock_guard lock(fleet.mu); return std::to_string(fleet.fanout_ms.size()) + " delivered"; });
  Stats fan;
  {
    std::lock_guard lock(fleet.mu);
    fan.ms = fleet.fanout_ms;
  }
  std::printf("fan-out: %zu of %zu delivered and acknowledged, p50 %.1f ms, p99 %.1f ms, max %.1f ms (%zu create errors)\n",
              fan.ms.size(), fanout, fan.pct(0.5), fan.pct(0.99), fan.pct(1.0), create_errors);

  // Restart: SIGTERM the hub, start it again on the same address, time until every agent is
  // linked and synced again.
  double reconnect_s = -1;
  double reconnect_after_ready_s = -1;
  long rss_after = -1;
  // Failover: the first replica dies; its agents move to the others (as a real agent with several
  // hub URLs does) and resume by revision: no full snapshot, no lease running out.
  double failover_s = -1;
  size_t moved = 0;
  size_t full_resyncs = 0;
  size_t lease_expiries = 0;
  bool failed_over = !failover;
  if (failover) {
    for (const auto& a : fleet_agents) {
      moved += a.at == 0 ? 1 : 0;
    }
    size_t snapshots_before = fleet.snapshots.load();
    std::cerr << "killing replica 0 (" << moved << " agents on it)...\n";
    auto kill_start = bench::Clock::now();
    hubs[0].kill();
    waitFor([&] { return fleet.synced.load() < agents; }, std::chrono::seconds(30), progress);
    bool back = waitFor([&] { return fleet.synced.load() == agents; }, std::chrono::seconds(120), progress);
    failover_s = std::chrono::duration<double>(bench::Clock::now() - kill_start).count();
    std::this_thread::sleep_for(std::chrono::seconds(2));  // (a late snapshot would come now)
    full_resyncs = fleet.snapshots.load() - snapshots_before;
    for (size_t i = 1; i < replicas; ++i) {
      std::ifstream in(hub_log(i));
      for (std::string line; std::getline(in, line);) {
        lease_expiries += line.find("agent lease expired") != std::string::npos ? 1 : 0;
      }
    }
    std::printf("%s: replica 0 killed; its %zu agents back on the others and synced in %.1f s, %zu full resyncs, "
                "%zu lease expiries\n",
                back ? "ok" : "TIMEOUT", moved, failover_s, full_resyncs, lease_expiries);
    failed_over = back && full_resyncs == 0 && lease_expiries == 0;
    restart = false;
  }
  if (restart) {
    std::cerr << "restarting the hub...\n";
    hub.stop();
    waitFor([&] { return fleet.welcomed.load() == 0; }, std::chrono::seconds(60), progress);
    auto restart_start = bench::Clock::now();
    if (!hub.start(hub_bin, dir / "hub", hp, dir / "hub-restart.log")) {
      std::cerr << "the hub did not start again; see " << (dir / "hub-restart.log") << "\n";
      fleet.stop = true;
      agent_ioc.stop();
      fleet_thread.join();
      return 1;
    }
    auto ready = bench::Clock::now();
    bool back = waitFor([&] { return fleet.synced.load() == agents; }, std::chrono::seconds(300), progress);
    reconnect_s = std::chrono::duration<double>(bench::Clock::now() - restart_start).count();
    reconnect_after_ready_s = std::chrono::duration<double>(bench::Clock::now() - ready).count();
    std::this_thread::sleep_for(std::chrono::seconds(2));
    rss_after = rssKb(hub.pid());
    std::printf("%s: %zu of %zu agents back and synced %.1f s after the restart (%.1f s after it was serving); RSS %.1f MB\n",
                back ? "ok" : "TIMEOUT", fleet.synced.load(), agents, reconnect_s, reconnect_after_ready_s,
                double(rss_after) / 1024);
  }

  fleet.stop = true;
  for (auto& h : hubs) {
    h.stop();
  }
  work_guard.reset();
  agent_ioc.stop();
  fleet_thread.join();
  if (!json_out.empty()) {
    Json j = {{"agents", agents}, {"enroll_per_s", enroll.rate()}, {"connect_all_s", connect_s},
              {"hub_rss_mb_empty", double(rss_empty) / 1024}, {"hub_rss_mb_enrolled", double(rss_enrolled) / 1024}, {"hub_rss_mb", double(rss_fleet) / 1024},
              {"hub_idle_cores", idle_cores}, {"agents_per_core", idle_cores > 0 ? double(agents) / idle_cores : 0.0},
              {"fanout", fan.ms.size()}, {"fanout_p50_ms", fan.pct(0.5)}, {"fanout_p99_ms", fan.pct(0.99)},
              {"reconnect_s", reconnect_s}, {"reconnect_after_serving_s", reconnect_after_ready_s},
              {"hub_rss_mb_after_restart", double(rss_after) / 1024}, {"replicas", replicas}};
    if (failover) {
      j["failover_agents_moved"] = moved;
      j["failover_s"] = failover_s;
      j["failover_full_resyncs"] = full_resyncs;
      j["failover_lease_expiries"] = lease_expiries;
    }
    std::ofstream(json_out) << j.dump(2) << "\n";
  }
  return all_up && fan.ms.size() == fanout && failed_over ? 0 : 1;
}
