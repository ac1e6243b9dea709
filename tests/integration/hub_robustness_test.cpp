// SPDX-License-Identifier: Apache-2.0
// Bad input and hostile clients against the real kflex-hub binary.
#include <gtest/gtest.h>

#include <csignal>
#include <fstream>
#include <sys/mount.h>
#include <sys/stat.h>
#include <thread>

#include <nlohmann/json.hpp>

#include "shared/common/util.hpp"
#include "shared/config/kubeconfig.hpp"
#include "shared/net/asio.hpp"
#include "shared/net/https_client.hpp"
#include "shared/tls/context.hpp"
#include "shared/tls/pki.hpp"
#include "tests/support/raw_tls.hpp"
#include "tests/integration/hub_api.hpp"
#include "tests/support/test_support.hpp"

namespace kflex::test {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

bool canMount(const fs::path& dir, const std::string& options) {
  fs::create_directories(dir);
  return ::mount("tmpfs", dir.c_str(), "tmpfs", 0, options.c_str()) == 0;
}

mode_t modeOf(const fs::path& p) {
  struct stat st {};
  ::stat(p.c_str(), &st);
  return st.st_mode & 0777;
}

TEST(HubStart, FirstStartLaysOutPrivateStateLaterStartsReuseIt) {
  TempDir dir;
  fs::path data = dir.path() / "data";
  std::string ca;
  {
    HubProcess hub(data);
    ASSERT_TRUE(hub.ok()) << hub.log();
    for (const char* f : {"hub.db", "admin.kubeconfig", "pki/ca.key", "pki/server.key", "pki/admin.key"}) {
      ASSERT_TRUE(fs::exists(data / f)) << f;
      EXPECT_EQ(modeOf(data / f), 0600u) << f;
    }
    EXPECT_EQ(modeOf(data), 0700u);
    EXPECT_EQ(modeOf(data / "pki"), 0700u);
    ca = readFile(data / "pki" / "ca.crt").value();
    auto r = client(hub.kubeconfig())->request(http::verb::get, "/livez");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body, "ok");
  }
  HubProcess hub(data, {"--tls-san", "hub.example.test", "--tls-san", "10.9.8.7"});
  ASSERT_TRUE(hub.ok()) << hub.log();
  EXPECT_EQ(readFile(data / "pki" / "ca.crt").value(), ca);
  auto info = tls::inspectCertificate(readFile(data / "pki" / "server.crt").value());
  ASSERT_TRUE(info);
  EXPECT_NE(std::find(info->dns_names.begin(), info->dns_names.end(), "hub.example.test"), info->dns_names.end());
  EXPECT_NE(std::find(info->ip_addresses.begin(), info->ip_addresses.end(), "10.9.8.7"), info->ip_addresses.end());
  EXPECT_TRUE(tls::signedBy(readFile(data / "pki" / "server.crt").value(), ca));
  auto r = client(hub.kubeconfig())->request(http::verb::get, "/readyz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200u);
}

// A peer that goes away while the hub writes to it costs only its own connection: the hub's TLS
// writes go through write(2), and a SIGPIPE would end the hub (exit 141).
TEST(HubRobustness, APeerThatGoesAwayWhileTheHubWritesCostsOnlyItsConnection) {
  TempDir dir;
  HubProcess hub(dir.path() / "data");
  ASSERT_TRUE(hub.ok()) << hub.log();
  // Clients that ask for a large answer and reset the connection at once, without reading it.
  for (int i = 0; i < 40; ++i) {
    RawTls gone;
    ASSERT_TRUE(gone.connect(hub.url(), hub.kubeconfig()));
    ASSERT_TRUE(gone.write("GET /openapi/v2 HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n"));
    auto& socket = beast::get_lowest_layer(*gone.stream).socket();
    boost::system::error_code ec;
    socket.set_option(net::socket_base::linger(true, 0), ec);  // close sends RST
    socket.close(ec);
  }
  // And the signal itself, as a dropped connection raises it.
  ASSERT_EQ(::kill(hub.process().pid(), SIGPIPE), 0);
  auto c = client(hub.kubeconfig());
  auto r = c->request(http::verb::get, "/readyz");
  ASSERT_TRUE(r) << hub.log();
  EXPECT_EQ(r->status, 200u);
  EXPECT_TRUE(hub.process().running());
}

TEST(HubRobustness, SlowLorisHeadersAreCutOffOthersStillServed) {
  TempDir dir;
  ASSERT_TRUE(writeFileAtomic(dir.path() / "hub.yaml", "header_timeout_seconds: 1\n", 0644));
  HubProcess hub(dir.path() / "data", {"--config", (dir.path() / "hub.yaml").string()});
  ASSERT_TRUE(hub.ok()) << hub.log();
  RawTls slow;
  ASSERT_TRUE(slow.connect(hub.url(), hub.kubeconfig()));
  ASSERT_TRUE(slow.write("GET /apis HTTP/1.1\r\nHost: x\r\n"));  // never finishes its headers
  auto c = client(hub.kubeconfig());
  auto r = c->request(http::verb::get, "/readyz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200u);
  EXPECT_TRUE(slow.closedWithin(std::chrono::seconds(5)));
}

TEST(HubRobustness, AWatchWhoseClientStopsReadingIsClosedOthersStillServed) {
  TempDir dir;
  ASSERT_TRUE(writeFileAtomic(dir.path() / "hub.yaml", "stream_write_timeout_seconds: 1\n", 0644));
  HubProcess hub(dir.path() / "data", {"--config", (dir.path() / "hub.yaml").string()});
  ASSERT_TRUE(hub.ok()) << hub.log();
  RawTls stuck;
  ASSERT_TRUE(stuck.connect(hub.url(), hub.kubeconfig(), 4096));
  ASSERT_TRUE(stuck.write(std::string("GET ") + kBase + "?watch=1 HTTP/1.1\r\nHost: x\r\n\r\n"));  // never reads
  // Events of about 200 KB each, until the kernel's buffers on both ends are full and the hub's
  // write to this watcher waits.
  auto c = client(hub.kubeconfig());
  std::string filler(200 * 1024, 'x');
  bool closed_logged = false;
  for (int i = 0; i < 200 && !closed_logged; ++i) {
    Json obj = Json::parse(cpJson("big-" + std::to_string(i)));
    obj["metadata"]["annotations"] = {{"filler", filler}};
    auto r = c->request(http::verb::post, kBase, obj.dump());
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 201u) << r->body;
    closed_logged = hub.log().find("closing a watch whose client stopped reading") != std::string::npos;
  }
  EXPECT_TRUE(waitFor([&] { return hub.log().find("closing a watch whose client stopped reading") != std::string::npos; },
                      std::chrono::seconds(10), "the hub to close the stuck watch"))
      << hub.log();
  // Reading now finds the end of the connection after what was sent before the close.
  EXPECT_TRUE(stuck.closedWithin(std::chrono::seconds(10)));
  auto r = c->request(http::verb::get, "/readyz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200u);
}

TEST(HubRobustness, ConnectionLimitClosesTheExtraOnes) {
  TempDir dir;
  ASSERT_TRUE(writeFileAtomic(dir.path() / "hub.yaml", "max_connections: 4\n", 0644));
  HubProcess hub(dir.path() / "data", {"--config", (dir.path() / "hub.yaml").string()});
  ASSERT_TRUE(hub.ok()) << hub.log();
  std::vector<std::unique_ptr<RawTls>> held;
  for (int i = 0; i < 4; ++i) {
    held.push_back(std::make_unique<RawTls>());
    ASSERT_TRUE(held.back()->connect(hub.url(), hub.kubeconfig()));
    // Answered: the hub has finished this handshake too (a connection still in its handshake
    // would be closed to make room for a newer one).
    ASSERT_TRUE(held.back()->write("GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"));
    ASSERT_EQ(statusOf(held.back()->readResponse(std::chrono::seconds(5))), 200u);
  }
  RawTls extra;
  EXPECT_FALSE(extra.connect(hub.url(), hub.kubeconfig()));
  EXPECT_TRUE(waitFor([&] { return hub.log().find("connection limit reached") != std::string::npos; },
                      std::chrono::seconds(5), "the limit warning"));
  held.clear();
  EXPECT_TRUE(waitFor([&] {
    auto r = client(hub.kubeconfig())->request(http::verb::get, "/readyz", "", "", std::chrono::seconds(2));
    return r && r->status == 200;
  }, std::chrono::seconds(10), "service after the held connections closed"));
}

TEST(HubRobustness, CorruptDatabaseRefusesToStartNamingTheFile) {
  TempDir dir;
  fs::create_directories(dir.path() / "data");
  std::ofstream(dir.path() / "data" / "hub.db") << std::string(8192, 'z');
  HubProcess hub(dir.path() / "data");
  EXPECT_FALSE(hub.ok());
  EXPECT_EQ(hub.process().wait(std::chrono::seconds(10)), 1);
  EXPECT_NE(hub.log().find((dir.path() / "data" / "hub.db").string()), std::string::npos) << hub.log();
  EXPECT_NE(hub.log().find("not a database"), std::string::npos) << hub.log();
}

// Two hubs on one data dir would each believe they own the revision counter: the second is
// refused at start, saying why, and the first goes on serving.
TEST(HubRobustness, ASecondHubOnTheSameDataDirIsRefused) {
  TempDir dir;
  HubProcess first(dir.path() / "data");
  ASSERT_TRUE(first.ok()) << first.log();
  HubProcess second(dir.path() / "data");
  EXPECT_FALSE(second.ok());
  EXPECT_EQ(second.process().wait(std::chrono::seconds(10)), 1);
  EXPECT_NE(second.log().find("in use by another process"), std::string::npos) << second.log();
  EXPECT_NE(second.log().find("if another kflex-hub serves this data dir, stop it"), std::string::npos) << second.log();
  auto r = client(first.kubeconfig())->request(http::verb::get, "/readyz", "", "", std::chrono::seconds(5));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST(HubRobustness, BadConfigurationExitsWithCode2) {
  TempDir dir;
  ASSERT_TRUE(writeFileAtomic(dir.path() / "hub.yaml", "listen: nowhere\nbogus: 1\n", 0644));
  auto r = run({(binDir() / "kflex-hub").string(), "serve", "--config", (dir.path() / "hub.yaml").string(),
                "--check-config"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("bogus"), std::string::npos) << r.err;
  r = run({(binDir() / "kflex-hub").string(), "serve", "--config", "/dev/null", "--listen", "999.1.1.1:1", "--check-config"});
  EXPECT_EQ(r.exit_code, 2);
  r = run({(binDir() / "kflex-hub").string(), "--version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("kflex-hub "), std::string::npos);
}

TEST(HubRobustness, ReadOnlyDataDirRefusesToStart) {
  TempDir dir;
  fs::path data = dir.path() / "ro";
  if (!canMount(data, "size=1m")) {
    GTEST_SKIP() << "cannot mount a tmpfs here (needs root)";
  }
  ASSERT_EQ(::mount("tmpfs", data.c_str(), "tmpfs", MS_REMOUNT | MS_RDONLY, "size=1m"), 0);
  HubProcess hub(data);
  EXPECT_FALSE(hub.ok());
  EXPECT_EQ(hub.process().wait(std::chrono::seconds(10)), 1);
  EXPECT_NE(hub.log().find(data.string()), std::string::npos) << hub.log();
  EXPECT_NE(hub.log().find("Read-only"), std::string::npos) << hub.log();
  ::umount2(data.c_str(), MNT_DETACH);
}

TEST(HubRobustness, FullDiskFailsTheWriteKeepsServingReads) {
  TempDir dir;
  fs::path data = dir.path() / "small";
  if (!canMount(data, "size=2m")) {
    GTEST_SKIP() << "cannot mount a tmpfs here (needs root)";
  }
  {
    HubProcess hub(data);
    ASSERT_TRUE(hub.ok()) << hub.log();
    auto c = client(hub.kubeconfig());
    auto r = c->request(http::verb::post, kBase, cpJson("before"));
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 201u) << r->body;
    // Fill the disk.
    {
      std::ofstream filler(data / "filler", std::ios::binary);
      std::string block(64 * 1024, 'f');
      while (filler.write(block.data(), std::streamsize(block.size())) && filler.flush()) {
      }
    }
    unsigned status = 0;
    for (int i = 0; i < 50 && status != 500; ++i) {
      // Annotations make each row big enough to need new pages.
      Json obj = Json::parse(cpJson("full-" + std::to_string(i)));
      obj["metadata"]["annotations"] = {{"pad", std::string(60000, 'p')}};
      auto w = c->request(http::verb::post, kBase, obj.dump());
      ASSERT_TRUE(w);
      status = w->status;
    }
    EXPECT_EQ(status, 500u);
    auto g = c->request(http::verb::get, std::string(kBase) + "/before");
    ASSERT_TRUE(g);
    EXPECT_EQ(g->status, 200u);
    fs::remove(data / "filler");
    auto after = c->request(http::verb::post, kBase, cpJson("after"));
    ASSERT_TRUE(after);
    EXPECT_EQ(after->status, 201u) << after->body;
    EXPECT_EQ(hub.stop(), 0);
  }
  // Nothing half-written: the store reopens with exactly what was acknowledged.
  {
    HubProcess hub(data);
    ASSERT_TRUE(hub.ok()) << hub.log();
    auto list = client(hub.kubeconfig())->request(http::verb::get, kBase);
    Json items = Json::parse(list->body)["items"];
    std::set<std::string> names;
    for (const auto& i : items) {
      names.insert(i["metadata"]["name"].get<std::string>());
    }
    EXPECT_TRUE(names.count("before"));
    EXPECT_TRUE(names.count("after"));
  }
  ::umount2(data.c_str(), MNT_DETACH);
}

// The disk starts failing under a running hub: the sync that would make a write durable fails.
// The hub must not answer that write or show it to anyone; it stops (exit 1, naming the file),
// and a restart serves everything acknowledged before.
TEST(HubRobustness, AFailedSyncOfTheLogStopsTheHubBeforeAnswering) {
  TempDir dir;
  fs::path trigger = dir.path() / "disk-fails-now";
  ::setenv("LD_PRELOAD", KFLEX_FAIL_SYNC_LIB, 1);
  ::setenv("KFLEX_TEST_FAIL_SYNC_TRIGGER", trigger.c_str(), 1);
  auto hub = std::make_unique<HubProcess>(dir.path() / "data");
  ::unsetenv("LD_PRELOAD");
  ::unsetenv("KFLEX_TEST_FAIL_SYNC_TRIGGER");
  ASSERT_TRUE(hub->ok()) << hub->log();
  {
    auto c = client(hub->kubeconfig());
    auto kept = c->request(http::verb::post, kBase, cpJson("kept"));
    ASSERT_TRUE(kept);
    ASSERT_EQ(kept->status, 201u) << kept->body;
    std::ofstream(trigger) << "now";
    auto lost = c->request(http::verb::post, kBase, cpJson("unanswered"));
    EXPECT_TRUE(!lost || lost->status != 201u) << "a write was acknowledged although its sync failed";
  }
  EXPECT_EQ(hub->process().wait(std::chrono::seconds(10)), 1);
  EXPECT_NE(hub->log().find("cannot make the store's write-ahead log durable"), std::string::npos) << hub->log();
  EXPECT_NE(hub->log().find("hub.db-wal"), std::string::npos) << hub->log();
  hub.reset();
  fs::remove(trigger);
  HubProcess again(dir.path() / "data");
  ASSERT_TRUE(again.ok()) << again.log();
  auto g = client(again.kubeconfig())->request(http::verb::get, std::string(kBase) + "/kept");
  ASSERT_TRUE(g);
  EXPECT_EQ(g->status, 200u) << g->body;
}

TEST(HubRobustness, WatchResumesAcrossRestartAndOldRevisionsAreGone) {
  TempDir dir;
  ASSERT_TRUE(writeFileAtomic(dir.path() / "hub.yaml", "event_retention: 100\n", 0644));
  std::vector<std::string> args = {"--config", (dir.path() / "hub.yaml").string()};
  int64_t rv_mid = 0;
  {
    HubProcess hub(dir.path() / "data", args);
    ASSERT_TRUE(hub.ok()) << hub.log();
    auto c = client(hub.kubeconfig());
    for (int i = 0; i < 5; ++i) {
      auto r = c->request(http::verb::post, kBase, cpJson("w" + std::to_string(i)));
      ASSERT_EQ(r->status, 201u);
      if (i == 2) {
        rv_mid = std::stoll(Json::parse(r->body)["metadata"]["resourceVersion"].get<std::string>());
      }
    }
  }
  HubProcess hub(dir.path() / "data", args);
  ASSERT_TRUE(hub.ok()) << hub.log();
  auto c = client(hub.kubeconfig());
  std::vector<std::string> seen;
  auto r = c->stream(std::string(kBase) + "?watch=1&resourceVersion=" + std::to_string(rv_mid),
                     [&](std::string_view line) {
                       Json ev = Json::parse(line);
                       seen.push_back(ev["object"]["metadata"]["name"]);
                       return seen.size() < 2;
                     },
                     std::chrono::seconds(10));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(seen, (std::vector<std::string>{"w3", "w4"}));
  // Push the kept window past revision 1; then asking for it is 410 Gone.
  for (int i = 0; i < 250; ++i) {
    c->request(http::verb::patch, std::string(kBase) + "/w0", R"({"metadata":{"labels":{"n":")" + std::to_string(i) + "\"}}}",
               "application/merge-patch+json");
  }
  auto gone = c->request(http::verb::get, std::string(kBase) + "?watch=1&resourceVersion=1");
  ASSERT_TRUE(gone);
  EXPECT_EQ(gone->status, 410u);
  EXPECT_EQ(Json::parse(gone->body)["reason"], "Expired");
}

}  // namespace
}  // namespace kflex::test

namespace kflex::test {
namespace {

// The hub on PostgreSQL (--datastore): the API serves from it, and a restart, even with its data
// dir gone but its PKI kept, reads every object and revision back from the database.
TEST(HubRobustness, AHubOnPostgresKeepsItsObjectsAndRevisionsAcrossARestart) {
  PostgresServer pg;
  if (!pg.problem().empty()) {
    GTEST_SKIP() << pg.problem();
  }
  TempDir dir;
  std::vector<std::string> args = {"--datastore", pg.dsn(), "--datastore-password-file", pg.passwordFile().string()};
  std::string rv_b;
  {
    HubProcess hub(dir.path() / "data", args);
    ASSERT_TRUE(hub.ok()) << hub.log();
    EXPECT_NE(hub.log().find("storing objects in PostgreSQL"), std::string::npos) << hub.log();
    EXPECT_EQ(hub.log().find(pg.password()), std::string::npos) << "the password is in the log";
    auto c = client(hub.kubeconfig());
    for (const char* name : {"a", "b"}) {
      auto r = c->request(http::verb::post, kBase, cpJson(name));
      ASSERT_TRUE(r);
      ASSERT_EQ(r->status, 201u) << r->body;
      rv_b = Json::parse(r->body)["metadata"]["resourceVersion"].get<std::string>();
    }
    auto dup = c->request(http::verb::post, kBase, cpJson("a"));
    ASSERT_TRUE(dup);
    EXPECT_EQ(dup->status, 409u) << dup->body;
    EXPECT_EQ(hub.stop(), 0);
  }
  // Nothing of the objects is in the data dir.
  EXPECT_FALSE(fs::exists(dir.path() / "data" / "hub.db"));
  HubProcess again(dir.path() / "data", args);
  ASSERT_TRUE(again.ok()) << again.log();
  auto c = client(again.kubeconfig());
  auto got = c->request(http::verb::get, std::string(kBase) + "/b");
  ASSERT_TRUE(got);
  ASSERT_EQ(got->status, 200u) << got->body;
  EXPECT_EQ(Json::parse(got->body)["metadata"]["resourceVersion"], rv_b);
  auto more = c->request(http::verb::post, kBase, cpJson("c"));
  ASSERT_TRUE(more);
  ASSERT_EQ(more->status, 201u) << more->body;
  EXPECT_GT(std::stoll(Json::parse(more->body)["metadata"]["resourceVersion"].get<std::string>()), std::stoll(rv_b));
}

TEST(HubRobustness, AnUnusableDatastoreStopsTheHubWithWhatToCheck) {
  TempDir dir;
  std::string hub_bin = (binDir() / "kflex-hub").string();
  Process hub({hub_bin, "serve", "--data-dir", (dir.path() / "data").string(), "--listen", "127.0.0.1:0",
               "--datastore", "postgres://kflex@127.0.0.1:1/kflex?sslmode=disable&connect_timeout=2"},
              dir.path() / "hub.log");
  EXPECT_EQ(hub.wait(std::chrono::seconds(30)), 1);
  EXPECT_NE(hub.log().find("the datastore cannot be used"), std::string::npos) << hub.log();
  Process bad({hub_bin, "serve", "--check-config", "--data-dir", (dir.path() / "data").string(), "--datastore",
               "mysql://x"},
              dir.path() / "bad.log");
  EXPECT_EQ(bad.wait(std::chrono::seconds(30)), 2);
  EXPECT_NE(bad.log().find("datastore:"), std::string::npos) << bad.log();
}

}  // namespace
}  // namespace kflex::test
