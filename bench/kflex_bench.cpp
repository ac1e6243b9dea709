// SPDX-License-Identifier: Apache-2.0
// Load generator for kflex-hub: creates, reads, updates and watches N ControlPlane objects over
// HTTPS with many keep-alive connections, and measures two raw SQLite baselines in the same run.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "bench/bench_common.hpp"
#include "shared/common/util.hpp"
#include "shared/config/kubeconfig.hpp"
#include "shared/net/asio.hpp"
#include "shared/store/postgres.hpp"
#include "shared/store/sqlite.hpp"
#include "shared/tls/context.hpp"
#include "shared/tls/secret_box.hpp"

namespace kflex::bench {
namespace {

constexpr const char* kBase = "/apis/tenancy.kflex.kubestellar.org/v1alpha1/controlplanes";

std::string objectJson(size_t i) {
  return Json{{"apiVersion", "tenancy.kflex.kubestellar.org/v1alpha1"},
              {"kind", "ControlPlane"},
              {"metadata", {{"name", "cp-" + std::to_string(i)}, {"labels", {{"bench", "yes"}, {"shard", std::to_string(i % 16)}}}}},
              {"spec", {{"type", "k3s"}, {"backend", "shared"}, {"globalVars", {{"region", "edge-" + std::to_string(i % 7)}}}}}}
      .dump();
}

// --- SQLite baselines: the same rows the hub writes (object row + event row with the stored
// object's JSON, `bodies`), same durability.
double sqliteBaseline(const fs::path& dir, const std::vector<std::string>& bodies, size_t rows, size_t group) {
  fs::remove(dir / "baseline.db");
  fs::remove(dir / "baseline.db-wal");
  fs::remove(dir / "baseline.db-shm");
  auto db = store::Database::open(dir / "baseline.db").value();
  // The hub's tables (schema version 3: the body in the event row) and statements.
  (void)db->exec("CREATE TABLE objects (id INTEGER PRIMARY KEY, resource TEXT NOT NULL, name TEXT NOT NULL, "
                 "revision INTEGER NOT NULL);"
                 "CREATE UNIQUE INDEX objects_key ON objects (resource, name);"
                 "CREATE TABLE events (revision INTEGER PRIMARY KEY, type INTEGER NOT NULL, resource TEXT NOT NULL, "
                 "name TEXT NOT NULL, body BLOB NOT NULL);");
  auto put = store::Statement::prepare(*db,
      "INSERT INTO objects (resource, name, revision) VALUES (?, ?, ?) "
      "ON CONFLICT (resource, name) DO UPDATE SET revision = excluded.revision").value();
  auto ev = store::Statement::prepare(*db, "INSERT INTO events VALUES (?, ?, ?, ?, ?)").value();
  auto start = Clock::now();
  for (size_t i = 0; i < rows; i += group) {
    (void)db->exec("BEGIN IMMEDIATE");
    for (size_t j = i; j < std::min(rows, i + group); ++j) {
      std::string name = "cp-" + std::to_string(j);
      (void)put.bind(1, std::string_view("g/controlplanes")).bind(2, name).bind(3, int64_t(j + 1)).run();
      (void)ev.bind(1, int64_t(j + 1)).bind(2, int64_t(0)).bind(3, std::string_view("g/controlplanes")).bind(4, name)
          .bindBlob(5, bodies[j]).run();
    }
    (void)db->exec("COMMIT");
  }
  return double(rows) / std::chrono::duration<double>(Clock::now() - start).count();
}

// --- PostgreSQL baseline: the same rows from a plain libpq client, as the hub writes them, same
// durability (synchronous_commit on): per group the revision row's lock, one multi-row INSERT of
// the event rows (the stored object's JSON, `bodies`) and one of the object rows, the revision row
// moved, a notification, COMMIT.
double pgBaseline(const store::PostgresTarget& t, const std::vector<std::string>& bodies, size_t rows, size_t group) {
  auto conn = store::Connection::open(t, std::chrono::seconds(10), "-c synchronous_commit=on");
  if (!conn) {
    std::cerr << "PostgreSQL baseline: " << conn.error().message << "\n";
    return 0;
  }
  auto& c = *conn.value();
  (void)c.exec("DROP TABLE IF EXISTS meta, objects, events;"
               "CREATE TABLE meta (key text PRIMARY KEY, value bigint NOT NULL);"
               "INSERT INTO meta VALUES ('revision', 0);"
               "CREATE TABLE objects (resource text NOT NULL, name text NOT NULL, revision bigint NOT NULL, "
               "PRIMARY KEY (resource, name));"
               "CREATE TABLE events (revision bigint PRIMARY KEY, type smallint NOT NULL, resource text NOT NULL, "
               "name text NOT NULL, body text NOT NULL)");
  const std::string resource = "g/controlplanes";
  auto placeholders = [](size_t row, size_t columns) {
    std::string out = "(";
    for (size_t k = 1; k <= columns; ++k) {
      out += (k > 1 ? ", $" : "$") + std::to_string(row * columns + k);
    }
    return out + ")";
  };
  auto start = Clock::now();
  for (size_t i = 0; i < rows; i += group) {
    (void)c.exec("BEGIN");
    (void)c.query("SELECT value, pg_current_xact_id()::text FROM meta WHERE key = 'revision' FOR UPDATE");
    size_t end = std::min(rows, i + group);
    std::string events = "INSERT INTO events VALUES ";
    std::string objects = "INSERT INTO objects (resource, name, revision) VALUES ";
    std::vector<std::optional<std::string>> event_params;
    std::vector<std::optional<std::string>> object_params;
    for (size_t j = i; j < end; ++j) {
      std::string name = "cp-" + std::to_string(j);
      std::string rev = std::to_string(j + 1);
      events += (j > i ? ", " : "") + placeholders(j - i, 5);
      objects += (j > i ? ", " : "") + placeholders(j - i, 3);
      event_params.insert(event_params.end(), {rev, std::string("0"), resource, name, bodies[j]});
      object_params.insert(object_params.end(), {resource, name, rev});
    }
    (void)c.exec(events, event_params);
    (void)c.exec(objects + " ON CONFLICT (resource, name) DO UPDATE SET revision = excluded.revision", object_params);
    std::string last = std::to_string(end);
    (void)c.exec("UPDATE meta SET value = " + last + " WHERE key = 'revision'; NOTIFY kflex_baseline, '" + last +
                 "'; COMMIT");
  }
  return double(rows) / std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace
}  // namespace kflex::bench

int main(int argc, char** argv) {
  using namespace kflex;
  using namespace kflex::bench;
  CLI::App app{"kflex-bench: load generator for kflex-hub with raw SQLite baselines in the same run"};
  size_t objects = 10000;
  size_t clients = 64;
  size_t watchers = 1000;
  size_t watch_updates = 100;
  std::string hub_bin = (fs::path(argv[0]).parent_path() / "kflex-hub").string();
  std::string work;
  std::string json_out;
  std::vector<std::string> phases = {"create", "read", "update", "list", "watch"};
  app.add_option("--objects", objects, "ControlPlane objects to create")->capture_default_str();
  app.add_option("--clients", clients, "Concurrent keep-alive HTTPS clients")->capture_default_str();
  app.add_option("--watchers", watchers, "Concurrent watch connections for the fan-out phase")->capture_default_str();
  app.add_option("--watch-updates", watch_updates, "Updates made while the watchers listen")->capture_default_str();
  app.add_option("--hub", hub_bin, "kflex-hub binary")->capture_default_str();
  app.add_option("--work-dir", work, "Directory for the hub's and baselines' data (default: a new temp dir)");
  app.add_option("--json", json_out, "Also write the figures as JSON to this file");
  app.add_option("--phases", phases,
                 "Phases to run after create, comma-separated (e.g. --phases create to profile creates alone)")
      ->delimiter(',')
      ->check(CLI::IsMember({"create", "read", "update", "list", "watch"}))
      ->capture_default_str();
  std::string datastore;
  std::string datastore_password_file;
  size_t replicas = 1;
  app.add_option("--datastore", datastore,
                 "A PostgreSQL server (postgres://USER@HOST:PORT/DB?...) to run the hub on instead of SQLite: the "
                 "bench makes databases kflex_bench_hub and kflex_bench_baseline there (and drops them first)");
  app.add_option("--datastore-password-file", datastore_password_file, "Its password, in a file");
  app.add_option("--replicas", replicas,
                 "Hub replicas on --datastore: writes go to the first, the watchers of the fan-out to the last")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (replicas == 0 || (replicas > 1 && datastore.empty())) {
    std::cerr << "--replicas " << replicas << " needs --datastore\n";
    return 2;
  }
  auto wanted = [&phases](const char* p) { return std::find(phases.begin(), phases.end(), p) != phases.end(); };
  if (!wanted("watch")) {
    watchers = 0;
    watch_updates = 0;
  }

  // Watchers and clients need descriptors on both ends; the hub inherits the raised limit.
  raiseFdLimit();
  fs::path dir = workDir(work, "kflex-bench");

  // On PostgreSQL: a fresh database for the hub, one for the baseline, on the same server.
  std::vector<std::string> hub_args;
  store::PostgresTarget pg_server{datastore, ""};
  store::PostgresTarget pg_hub;
  store::PostgresTarget pg_base;
  if (!datastore.empty()) {
    if (!datastore_password_file.empty()) {
      auto pw = readFile(datastore_password_file);
      if (!pw) {
        std::cerr << pw.error().message << "\n";
        return 2;
      }
      pg_server.password = std::string(trim(pw->substr(0, pw->find('\n'))));
    }
    pg_hub = store::withDatabase(pg_server, "kflex_bench_hub");
    pg_base = store::withDatabase(pg_server, "kflex_bench_baseline");
    for (const auto* db : {"kflex_bench_hub", "kflex_bench_baseline"}) {
      if (auto r = store::dropDatabase(pg_server, db); !r) {
        std::cerr << r.error().message << "\n";
        return 1;
      }
      if (auto r = store::createDatabase(pg_server, db); !r) {
        std::cerr << r.error().message << "\n";
        return 1;
      }
    }
    // (The hub's own key-file maker: 32 random bytes, base64, 0600.)
    if (auto made = tls::SecretBox::openOrCreate(dir / "secrets.key"); !made) {
      std::cerr << made.error().message << "\n";
      return 1;
    }
    hub_args = {"--datastore", pg_hub.dsn, "--secrets-key-file", (dir / "secrets.key").string()};
    if (!datastore_password_file.empty()) {
      hub_args.insert(hub_args.end(), {"--datastore-password-file", datastore_password_file});
    }
  }
  // Every client and watcher comes from 127.0.0.1: the hub's limit of connections in their TLS
  // handshake per source (256, against floods) would refuse most of 1,000 watchers connecting at once.
  std::ofstream(dir / "hub.yaml") << "max_handshakes_per_source: " << std::max<size_t>(4096, watchers + clients) << "\n";
  hub_args.insert(hub_args.begin(), {"--config", (dir / "hub.yaml").string()});
  std::vector<HubProcess> hubs(replicas);
  fs::path log = dir / "hub.log";
  for (size_t r = 0; r < replicas; ++r) {
    std::string name = r == 0 ? std::string("hub") : "hub-" + std::to_string(r);
    std::cerr << "starting " << hub_bin << (datastore.empty() ? "" : " on PostgreSQL")
              << (replicas > 1 ? " (replica " + std::to_string(r) + ")" : "") << "...\n";
    fs::remove_all(dir / name);
    if (!hubs[r].start(hub_bin, dir / name, "127.0.0.1:0", dir / (name + ".log"), hub_args)) {
      std::cerr << "the hub did not start; see " << (dir / (name + ".log")) << "\n";
      return 1;
    }
  }
  HubProcess& hub = hubs[0];
  pid_t pid = hub.pid();
  // Every replica's CPU, from when `cpus` was last called.
  auto cpus = [&hubs] {
    std::vector<double> out;
    for (auto& h : hubs) {
      out.push_back(cpuSeconds(h.pid()));
    }
    return out;
  };
  auto kc = config::Kubeconfig::load(dir / "hub" / "admin.kubeconfig").value();
  auto access = kc.access().value();
  auto ctx = tls::makeClientContext({access.ca_pem, access.client_cert_pem, access.client_key_pem}).value();
  auto ep = hub.endpoint();
  long rss_empty = rssKb(pid);  // before the dry runs below leave their freed memory behind
  net::io_context ioc;

  // The baselines write what the hub stores for each create: the object as the hub completes it
  // (uid, timestamps, managedFields, defaults, status), learned by a dry run of each create. The
  // request bodies alone are about a fifth of that.
  std::cerr << "dry runs of the creates (the rows the baselines write)...\n";
  std::vector<std::string> stored(objects);
  std::string dry_target = std::string(kBase) + "?dryRun=All";
  Stats dry = runPhase(ioc, *ctx, ep, clients, objects, [&](Conn& c, size_t i) -> net::awaitable<unsigned> {
    unsigned status = co_await c.request(http::verb::post, dry_target, objectJson(i));
    stored[i] = c.body();
    co_return status;
  }, 201);
  if (dry.errors != 0) {
    std::cerr << dry.errors << " dry-run creates failed; see " << log << "\n";
    return 1;
  }
  size_t stored_bytes = 0;
  for (const auto& b : stored) {
    stored_bytes += b.size();
  }
  double row_bytes = objects != 0 ? double(stored_bytes) / double(objects) : 0;

  std::cerr << "SQLite baselines (WAL, synchronous=FULL, object row + event row per object, "
            << static_cast<long>(row_bytes) << " bytes of JSON per object)...\n";
  // Measured before the create phase and again right after it, the hub idle both times, and
  // averaged: the disk's speed drifts over minutes on shared machines.
  double base_single_before = sqliteBaseline(dir, stored, std::min<size_t>(objects, 3000), 1);
  double base_group_before = sqliteBaseline(dir, stored, objects, 16);
  double pg_single_before = 0;
  double pg_group_before = 0;
  if (!datastore.empty()) {
    std::cerr << "PostgreSQL baselines (the same rows from a plain libpq client, synchronous_commit on)...\n";
    pg_single_before = pgBaseline(pg_base, stored, std::min<size_t>(objects, 3000), 1);
    pg_group_before = pgBaseline(pg_base, stored, objects, clients);
  }

  std::cerr << "create phase: " << objects << " objects, " << clients << " clients...\n";
  // The requests are made before the clock starts, as the baselines' bodies are.
  std::vector<std::string> creates;
  creates.reserve(objects);
  for (size_t i = 0; i < objects; ++i) {
    creates.push_back(wireRequest(http::verb::post, kBase, objectJson(i)));
  }
  // On PostgreSQL, every group the hub commits notifies kflex_events: counting the notifications
  // of the create phase gives the groups the hub formed, the size the baseline then writes with.
  std::unique_ptr<store::Connection> groups_seen;
  if (!datastore.empty()) {
    auto c = store::Connection::open(pg_hub);
    if (c && c.value()->exec("LISTEN kflex_events")) {
      groups_seen = std::move(c.value());
    }
  }
  double hub_cpu_before = 0;
  double self_cpu_before = 0;
  std::vector<double> replica_cpu_before;
  Stats create = runPhase(ioc, *ctx, ep, clients, objects,
                          [&creates](Conn& c, size_t i) { return c.send(creates[i]); }, 201,
                          [&] {
                            hub_cpu_before = cpuSeconds(pid);
                            self_cpu_before = cpuSeconds(getpid());
                            replica_cpu_before = cpus();
                          });
  double self_cpu_us = (cpuSeconds(getpid()) - self_cpu_before) * 1e6 / double(std::max<size_t>(objects, 1));
  // CPU time per create is steadier than the rate on a machine whose disk speed wanders. It counts
  // what the creates set off after their answers too (controllers' writes, watch deliveries):
  // until the hub is idle again (under 2% of a core over 100 ms), at most 10 s.
  double hub_cpu_end = cpuSeconds(pid);
  for (int i = 0; i < 100; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    double now = cpuSeconds(pid);
    bool idle = now - hub_cpu_end < 0.002;
    hub_cpu_end = now;
    if (idle) {
      break;
    }
  }
  double hub_cpu_us = (hub_cpu_end - hub_cpu_before) * 1e6 / double(std::max<size_t>(objects, 1));
  // (The other replicas, which follow the writes, are idle by now too.)
  std::vector<double> replica_create_cpu_us;
  {
    auto after = cpus();
    for (size_t r = 0; r < replicas; ++r) {
      replica_create_cpu_us.push_back((after[r] - replica_cpu_before[r]) * 1e6 / double(std::max<size_t>(objects, 1)));
    }
  }
  size_t hub_groups = 0;
  if (groups_seen) {
    while (true) {
      auto got = groups_seen->awaitNotifications(std::chrono::milliseconds(200));
      if (!got || got->empty()) {
        break;
      }
      hub_groups += got->size();
    }
    groups_seen.reset();
  }
  size_t hub_group_rows = hub_groups > 0 ? std::max<size_t>(1, (objects + hub_groups / 2) / hub_groups) : clients;
  std::cerr << "SQLite baselines again...\n";
  double base_single_after = sqliteBaseline(dir, stored, std::min<size_t>(objects, 3000), 1);
  double base_group_after = sqliteBaseline(dir, stored, objects, 16);
  double base_single = (base_single_before + base_single_after) / 2;
  double base_group = (base_group_before + base_group_after) / 2;
  double pg_single = 0;
  double pg_group = 0;
  double pg_hub_groups = 0;
  if (!datastore.empty()) {
    std::cerr << "PostgreSQL baselines again, and with the hub's own group size (" << hub_group_rows
              << " rows: " << hub_groups << " commits for " << objects << " creates)...\n";
    pg_single = (pg_single_before + pgBaseline(pg_base, stored, std::min<size_t>(objects, 3000), 1)) / 2;
    pg_group = (pg_group_before + pgBaseline(pg_base, stored, objects, clients)) / 2;
    pg_hub_groups = pgBaseline(pg_base, stored, objects, hub_group_rows);
  }
  long rss_full = rssKb(pid);
  Stats read;
  Stats update;
  Stats list;
  // Each phase's requests are made before its clock starts.
  auto wireRequests = [objects](http::verb method, std::string_view body, std::string_view type) {
    std::vector<std::string> out;
    out.reserve(objects);
    for (size_t i = 0; i < objects; ++i) {
      out.push_back(wireRequest(method, std::string(kBase) + "/cp-" + std::to_string(i), body, type));
    }
    return out;
  };
  if (wanted("read")) {
    std::cerr << "read phase...\n";
    auto gets = wireRequests(http::verb::get, "", "");
    read = runPhase(ioc, *ctx, ep, clients, objects, [&gets](Conn& c, size_t i) { return c.send(gets[i]); }, 200);
  }
  if (wanted("update")) {
    std::cerr << "update phase...\n";
    auto patches = wireRequests(http::verb::patch, R"({"metadata":{"labels":{"updated":"yes"}}})",
                                "application/merge-patch+json");
    update = runPhase(ioc, *ctx, ep, clients, objects, [&patches](Conn& c, size_t i) { return c.send(patches[i]); },
                      200);
  }
  if (wanted("list")) {
    std::cerr << "list phase...\n";
    list = runPhase(ioc, *ctx, ep, 4, 20,
                    [](Conn& c, size_t) { return c.request(http::verb::get, std::string(kBase) + "?labelSelector=shard%3D3", ""); },
                    200);
  }

  // Watch fan-out: W watchers, then updates; the delay of each delivery is measured from the
  // moment the update request was sent.
  std::cerr << "watch fan-out: " << watchers << " watchers, " << watch_updates << " updates...\n";
  std::atomic<bool> stop{false};
  std::atomic<size_t> connected{0};
  std::mutex mu;
  std::map<std::string, Clock::time_point> sent;  // label value -> send time
  std::vector<double> delays;
  std::vector<std::unique_ptr<Conn>> watch_conns;
  for (size_t w = 0; w < watchers; ++w) {
    watch_conns.push_back(std::make_unique<Conn>(ioc, *ctx));
  }
  std::atomic<size_t> watching{0};
  // With replicas, the watchers are on the last one and the writes go to the first: each
  // delivery crosses replicas through the database.
  auto watch_ep = hubs.back().endpoint();
  for (size_t w = 0; w < watchers; ++w) {
    Conn* conn = watch_conns[w].get();
    net::co_spawn(ioc, [&, conn]() -> net::awaitable<void> {
      if (!co_await conn->connect(watch_ep)) {
        co_return;
      }
      ++connected;
      bool first = true;
      co_await conn->watch(std::string(kBase) + "?watch=1&fieldSelector=metadata.name%3Dcp-0",
                           [&](std::string_view line) {
                             auto now = Clock::now();
                             if (first) {
                               first = false;  // the synthetic ADDED of the current state
                               ++watching;
                               return;
                             }
                             auto pos = line.find("\"seq\":\"");
                             if (pos == std::string_view::npos) {
                               return;
                             }
                             std::string seq(line.substr(pos + 7, line.find('"', pos + 7) - pos - 7));
                             std::lock_guard lock(mu);
                             auto it = sent.find(seq);
                             if (it != sent.end()) {
                               delays.push_back(std::chrono::duration<double, std::milli>(now - it->second).count());
                             }
                           },
                           stop);
    }, net::detached);
  }
  size_t delivered_expected = 0;
  double fan_cpu_before = 0;
  double fan_cpu_after = 0;
  std::vector<double> fan_replicas_before;
  std::vector<double> fan_replicas_after;
  net::co_spawn(ioc, [&]() -> net::awaitable<void> {
    net::steady_timer t(ioc);
    auto deadline = Clock::now() + std::chrono::seconds(60);
    while (watching < watchers && Clock::now() < deadline) {
      t.expires_after(std::chrono::milliseconds(20));
      co_await t.async_wait(net::use_awaitable);
    }
    Conn writer(ioc, *ctx);
    co_await writer.connect(ep);
    fan_cpu_before = cpuSeconds(pid);
    fan_replicas_before = cpus();
    for (size_t u = 0; u < watch_updates; ++u) {
      std::string seq = "s" + std::to_string(u);
      {
        std::lock_guard lock(mu);
        sent[seq] = Clock::now();
      }
      co_await writer.request(http::verb::patch, std::string(kBase) + "/cp-0",
                              R"({"metadata":{"labels":{"seq":")" + seq + "\"}}}", "application/merge-patch+json");
      t.expires_after(std::chrono::milliseconds(20));
      co_await t.async_wait(net::use_awaitable);
    }
    delivered_expected = watching.load() * watch_updates;
    fan_cpu_after = cpuSeconds(pid);
    fan_replicas_after = cpus();
    auto drain_deadline = Clock::now() + std::chrono::seconds(10);
    while (Clock::now() < drain_deadline) {
      {
        std::lock_guard lock(mu);
        if (delays.size() >= delivered_expected) {
          break;
        }
      }
      t.expires_after(std::chrono::milliseconds(20));
      co_await t.async_wait(net::use_awaitable);
    }
    stop = true;
    for (auto& c : watch_conns) {
      c->close();
    }
  }, net::detached);
  ioc.restart();
  ioc.run();
  Stats fan;
  fan.ms = delays;
  long rss_watch = rssKb(hubs.back().pid());

  for (auto& h : hubs) {
    h.stop();
  }
  if (!datastore.empty()) {
    for (const auto* db : {"kflex_bench_hub", "kflex_bench_baseline"}) {
      (void)store::dropDatabase(pg_server, db);
    }
  }

  double single_ratio = create.rate() / base_single;
  double group_ratio = create.rate() / base_group;
  std::printf("\nbaseline rows: the objects as the hub stores them, %.0f bytes of JSON each\n", row_bytes);
  std::printf("%-44s %12s %10s %10s %8s\n", "measure", "per second", "p50 ms", "p99 ms", "errors");
  std::printf("%-44s %12.0f %10s %10s %8s   (before %.0f, after %.0f)\n", "SQLite baseline: 1 row per transaction",
              base_single, "-", "-", "-", base_single_before, base_single_after);
  std::printf("%-44s %12.0f %10s %10s %8s   (before %.0f, after %.0f)\n", "SQLite baseline: 16 rows per transaction",
              base_group, "-", "-", "-", base_group_before, base_group_after);
  std::printf("%-44s %12.0f %10.2f %10.2f %8zu\n", "hub API: create (durable before 201)", create.rate(), create.pct(0.5), create.pct(0.99), create.errors);
  std::printf("%-44s %12.0f %10.2f %10.2f %8zu\n", "hub API: get", read.rate(), read.pct(0.5), read.pct(0.99), read.errors);
  std::printf("%-44s %12.0f %10.2f %10.2f %8zu\n", "hub API: merge patch", update.rate(), update.pct(0.5), update.pct(0.99), update.errors);
  std::printf("%-44s %12.0f %10.2f %10.2f %8zu\n", "hub API: list with label selector", list.rate(), list.pct(0.5), list.pct(0.99), list.errors);
  std::printf("%-44s %12s %10.2f %10.2f %8zu\n",
              ("watch fan-out: " + std::to_string(watching.load()) + " watchers, delay").c_str(), "-", fan.pct(0.5),
              fan.pct(0.99), delivered_expected > fan.ms.size() ? delivered_expected - fan.ms.size() : 0);
  if (!datastore.empty()) {
    std::printf("%-44s %12.0f %10s %10s %8s\n", "PostgreSQL baseline: 1 row per transaction", pg_single, "-", "-", "-");
    std::printf("%-44s %12.0f %10s %10s %8s\n",
                ("PostgreSQL baseline: " + std::to_string(clients) + " rows per transaction").c_str(), pg_group, "-",
                "-", "-");
    std::printf("%-44s %12.0f %10s %10s %8s\n",
                ("PostgreSQL baseline: " + std::to_string(hub_group_rows) + " rows (the hub's groups)").c_str(),
                pg_hub_groups, "-", "-", "-");
    std::printf("\nhub on PostgreSQL (%zu replica%s): %zu commits for %zu creates (%zu rows per group);\n"
                "create rate / baseline with the hub's groups: %.2fx (goal >= 0.5x), / %zu-row baseline: %.2fx, / "
                "1-row baseline: %.2fx\n",
                replicas, replicas > 1 ? "s" : "", hub_groups, objects, hub_group_rows,
                pg_hub_groups > 0 ? create.rate() / pg_hub_groups : 0.0, clients,
                pg_group > 0 ? create.rate() / pg_group : 0.0, pg_single > 0 ? create.rate() / pg_single : 0.0);
    for (size_t r = 0; r < replicas; ++r) {
      double fan_ms = watch_updates != 0 && fan_replicas_after.size() == replicas
                          ? (fan_replicas_after[r] - fan_replicas_before[r]) * 1e3 / double(watch_updates)
                          : 0;
      std::printf("replica %zu%s: CPU per create %.0f us, per watched update %.2f ms\n", r,
                  r == 0 ? " (takes the writes)" : (r + 1 == replicas ? " (serves the watchers)" : ""),
                  replica_create_cpu_us[r], fan_ms);
    }
  }
  std::printf("\ncreate rate / 1-row baseline:  %.2fx (goal >= 2x)\n", single_ratio);
  std::printf("create rate / 16-row baseline: %.2fx (goal >= 0.25x)\n", group_ratio);
  std::printf("CPU per create: hub %.0f us, load generator %.0f us\n", hub_cpu_us, self_cpu_us);
  double fan_cpu_ms = watch_updates != 0 ? (fan_cpu_after - fan_cpu_before) * 1e3 / double(watch_updates) : 0;
  if (watch_updates != 0) {
    std::printf("hub CPU per watched update: %.1f ms (%zu deliveries each)\n", fan_cpu_ms, watching.load());
  }
  std::printf("hub RSS: %ld MB empty, %ld MB with %zu objects, %ld MB with %zu watchers (goal < 100 MB at 10,000 objects)\n",
              rss_empty / 1024, rss_full / 1024, objects, rss_watch / 1024, watchers);
  if (!json_out.empty()) {
    Json j = {{"objects", objects}, {"clients", clients}, {"watchers", watching.load()},
              {"sqlite_single_rows_per_s", base_single}, {"sqlite_group16_rows_per_s", base_group},
              {"baseline_row_bytes", row_bytes},
              {"create_per_s", create.rate()}, {"create_hub_cpu_us", hub_cpu_us}, {"create_p50_ms", create.pct(0.5)}, {"create_p99_ms", create.pct(0.99)},
              {"get_per_s", read.rate()}, {"patch_per_s", update.rate()},
              {"watch_delay_p50_ms", fan.pct(0.5)}, {"watch_hub_cpu_ms_per_update", fan_cpu_ms}, {"watch_delay_p99_ms", fan.pct(0.99)},
              {"rss_mb_full", rss_full / 1024}, {"ratio_vs_single", single_ratio}, {"ratio_vs_group16", group_ratio},
              {"replicas", replicas}, {"datastore", datastore.empty() ? "sqlite" : "postgres"}};
    if (!datastore.empty()) {
      j["pg_single_rows_per_s"] = pg_single;
      j["pg_group_rows_per_s"] = pg_group;  // `clients` rows per transaction: the hub's groups
      j["ratio_vs_pg_group"] = pg_group > 0 ? create.rate() / pg_group : 0.0;
      j["hub_groups"] = hub_groups;
      j["hub_group_rows"] = hub_group_rows;
      j["pg_hub_groups_rows_per_s"] = pg_hub_groups;
      j["ratio_vs_pg_hub_groups"] = pg_hub_groups > 0 ? create.rate() / pg_hub_groups : 0.0;
      j["replica_create_cpu_us"] = replica_create_cpu_us;
    }
    std::ofstream(json_out) << j.dump(2) << "\n";
  }
  return create.errors + read.errors + update.errors == 0 ? 0 : 1;
}
