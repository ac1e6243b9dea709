// SPDX-License-Identifier: Apache-2.0
// The attack suite (ctest label `robustness`): hostile input and hostile connections against the
// real kflex-hub binary. Every case has an expected answer; afterwards the hub still serves,
// other clients were not affected, nothing half-written was stored and its memory stayed bounded.
#include <gtest/gtest.h>

#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "shared/common/util.hpp"
#include "shared/config/kubeconfig.hpp"
#include "shared/net/https_client.hpp"
#include "shared/protocol/link.hpp"
#include "shared/tls/pki.hpp"
#include "tests/support/raw_tls.hpp"
#include "tests/support/test_support.hpp"

namespace kflex::test {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;
constexpr const char* kBase = "/apis/tenancy.kflex.kubestellar.org/v1alpha1/controlplanes";

/// The bound on the hub's resident memory after the whole suite of one test (a fresh hub
/// starts at about 25 MB).
constexpr long kRssBoundKiB = 256 * 1024;

std::unique_ptr<net_client::HttpsClient> client(const fs::path& kubeconfig) {
  auto kc = config::Kubeconfig::load(kubeconfig);
  return std::move(net_client::HttpsClient::create(kc->access().value()).value());
}

long rssKiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      return std::stol(line.substr(6));
    }
  }
  return -1;
}

std::string hostOf(const std::string& url) {
  auto hp = url.substr(8);
  return hp.substr(0, hp.rfind(':'));
}
uint16_t portOf(const std::string& url) { return uint16_t(std::stoi(url.substr(url.rfind(':') + 1))); }

// A plain TCP connection that sends nothing (or `send`), held open by its file descriptor.
int tcpConnect(const std::string& url, const std::string& send = "") {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(portOf(url));
  ::inet_pton(AF_INET, hostOf(url).c_str(), &a.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  if (!send.empty()) {
    [[maybe_unused]] auto n = ::write(fd, send.data(), send.size());
  }
  return fd;
}

void raiseFileLimit() {
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &files);
  }
}

size_t fileLimit() {
  rlimit files{};
  ::getrlimit(RLIMIT_NOFILE, &files);
  return files.rlim_cur;
}

// One raw request on a fresh connection; the whole answer (the connection is closed after it).
std::string rawRequest(const HubProcess& hub, const std::string& method, const std::string& target,
                       const std::string& content_type, const std::string& body) {
  RawTls t;
  if (!t.connect(hub.url(), hub.kubeconfig())) {
    return "";
  }
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
  if (!content_type.empty()) {
    req += "Content-Type: " + content_type + "\r\n";
  }
  req += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  t.write(req);
  return t.readAll(std::chrono::seconds(20));
}

std::string bodyOf(const std::string& raw) {
  auto at = raw.find("\r\n\r\n");
  return at == std::string::npos ? "" : raw.substr(at + 4);
}

struct BadBody {
  std::string what;
  std::string method;
  std::string target;
  std::string content_type;
  std::string body;
  unsigned status;
};

std::string nested(size_t depth) {
  return R"({"metadata":{"name":"deep","annotations":{"a":"b"}},"spec":{"type":"k3s","x":)" + std::string(depth, '[') +
         std::string(depth, ']') + "}}";
}

std::string billionLaughs() {
  std::string y = "metadata:\n  name: laughs\n  annotations:\n    a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n";
  std::string prev = "a";
  for (char c = 'b'; c <= 'i'; ++c) {
    std::string cur(1, c);
    y += "    " + cur + ": &" + cur + " [";
    for (int i = 0; i < 9; ++i) {
      y += (i ? ",*" : "*") + prev;
    }
    y += "]\n";
    prev = cur;
  }
  return y + "spec:\n  type: k3s\n";
}

TEST(HubAttack, HostileBodiesGetAnAnswerAndStoreNothing) {
  TempDir dir;
  HubProcess hub(dir.path() / "data");
  ASSERT_TRUE(hub.ok()) << hub.log();
  std::string cps = kBase;
  const std::string bad_utf8 = "\xff\xfe";
  std::vector<BadBody> cases = {
      {"a number beyond a double's range", "POST", cps, "application/json",
       R"({"metadata":{"name":"big"},"spec":{"type":"k3s","tokenExpirationSeconds":1e400}})", 400},
      {"invalid UTF-8 in a YAML annotation", "POST", cps, "application/yaml",
       "metadata:\n  name: utf\n  annotations:\n    x: \"" + bad_utf8 + "\"\nspec:\n  type: k3s\n", 400},
      {"invalid UTF-8 in a YAML key", "POST", cps, "application/yaml",
       "metadata:\n  name: utfkey\n  labels:\n    " + bad_utf8 + ": x\nspec:\n  type: k3s\n", 400},
      {"invalid UTF-8 in a JSON label", "POST", cps, "application/json",
       R"({"metadata":{"name":"u2","labels":{"a":")" + bad_utf8 + R"("}},"spec":{"type":"k3s"}})", 400},
      {"invalid UTF-8 in the name in the path", "PUT", cps + "/%ff%fe", "application/json",
       R"({"metadata":{"name":"x","resourceVersion":"1"},"spec":{"type":"k3s"}})", 404},
      {"JSON nested 100,000 deep", "POST", cps, "application/json", nested(100000), 400},
      {"JSON nested 20,000 deep", "POST", cps, "application/json", nested(20000), 400},
      {"JSON nested 5,000 deep (under the limit, refused by the schema)", "POST", cps, "application/json",
       nested(5000), 422},
      {"YAML alias expansion (billion laughs)", "POST", cps, "application/yaml", billionLaughs(), 400},
      {"a merge patch nested 100,000 deep", "PATCH", cps + "/none", "application/merge-patch+json",
       "{\"spec\":" + std::string(100000, '[') + std::string(100000, ']') + "}", 400},
      {"a merge patch with a number beyond range", "PATCH", cps + "/none", "application/merge-patch+json",
       R"({"spec":{"x":1e400}})", 400},
      {"DeleteOptions with invalid UTF-8", "DELETE", cps + "/none", "application/json",
       R"({"propagationPolicy":")" + bad_utf8 + R"("})", 400},
      {"a label selector with invalid UTF-8", "GET", cps + "?labelSelector=%ff", "", "", 400},
      {"duplicate keys under the default (Strict)", "POST", cps, "application/json",
       R"({"metadata":{"name":"dup","name":"dup2"},"spec":{"type":"k3s"}})", 400},
      {"a field the kind's own rules read, of the wrong type", "POST", cps, "application/json",
       R"({"metadata":{"name":"wt","annotations":{"kflex.kubestellar.org/agent":"a"}},"spec":{"type":5}})", 422},
      {"a name that is null and a generateName that is a number", "POST", cps, "application/yaml",
       "metadata:\n  name:\n  generateName: 5\nspec:\n  type: k3s\n", 400},
      {"a resourceVersion that is a number", "PUT", cps + "/none", "application/json",
       R"({"metadata":{"name":"none","resourceVersion":7},"spec":{"type":"k3s"}})", 400},
      {"a Secret whose kind is not a string", "POST", "/api/v1/namespaces/kubeflex-system/secrets", "application/json",
       R"({"kind":7,"metadata":{"name":"s"}})", 400},
  };
  for (const auto& c : cases) {
    auto raw = rawRequest(hub, c.method, c.target, c.content_type, c.body);
    EXPECT_EQ(statusOf(raw), c.status) << c.what << ": " << raw.substr(0, 400);
    if (statusOf(raw) != 0) {
      Json st = Json::parse(bodyOf(raw), nullptr, false);
      EXPECT_TRUE(st.is_object()) << c.what << ": the answer is not JSON: " << raw.substr(0, 400);
    }
    ASSERT_TRUE(hub.process().running()) << c.what << "\n" << hub.log();
  }
  // Nothing of those was stored; what is stored has its name.
  auto c = client(hub.kubeconfig());
  auto list = c->request(http::verb::get, kBase);
  ASSERT_TRUE(list);
  EXPECT_EQ(Json::parse(list->body)["items"].size(), 0u) << list->body;
  // Under fieldValidation=Warn a duplicate key is a warning and the last one wins.
  auto warned = rawRequest(hub, "POST", cps + "?fieldValidation=Warn", "application/json",
                           R"({"metadata":{"name":"first","name":"dup"},"spec":{"type":"k3s"}})");
  EXPECT_EQ(statusOf(warned), 201u) << warned;
  EXPECT_NE(warned.find("Warning: 299 - \"duplicate field \\\"metadata.name\\\"\""), std::string::npos) << warned;
  auto got = c->request(http::verb::get, cps + "/dup");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 200u);
  auto r = c->request(http::verb::get, "/readyz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200u);
  EXPECT_LT(rssKiB(hub.process().pid()), kRssBoundKiB);
}

TEST(HubAttack, HeadersUpTo64KiBAreReadLargerOnesGet431) {
  TempDir dir;
  HubProcess hub(dir.path() / "data");
  ASSERT_TRUE(hub.ok()) << hub.log();
  // A label selector of about 60 KiB: a long set of values, as kube-apiserver takes.
  std::string values;
  for (int i = 0; values.size() < 60 * 1024; ++i) {
    values += (i ? "," : "") + std::string("value-") + std::to_string(i);
  }
  auto ok = rawRequest(hub, "GET", std::string(kBase) + "?labelSelector=app+in+(" + values + ")", "", "");
  EXPECT_EQ(statusOf(ok), 200u) << ok.substr(0, 300);
  RawTls t;
  ASSERT_TRUE(t.connect(hub.url(), hub.kubeconfig()));
  t.write("GET /readyz HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(70 * 1024, 'a') + "\r\n\r\n");
  auto raw = t.readAll(std::chrono::seconds(10));
  EXPECT_EQ(statusOf(raw), 431u) << raw.substr(0, 300);
}

TEST(HubAttack, AnUnsupportedTransferEncodingIsRefusedNotReadAsASecondRequest) {
  TempDir dir;
  HubProcess hub(dir.path() / "data");
  ASSERT_TRUE(hub.ok()) << hub.log();
  RawTls t;
  ASSERT_TRUE(t.connect(hub.url(), hub.kubeconfig()));
  std::string smuggled = "POST " + std::string(kBase) + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         "Content-Length: 66\r\n\r\n" R"({"metadata":{"name":"smuggled"},"spec":{"type":"k3s"}}          )";
  t.write(std::string("GET /readyz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n") + smuggled);
  bool closed = false;
  auto raw = t.readAll(std::chrono::seconds(10), &closed);
  EXPECT_EQ(statusOf(raw), 400u) << raw;
  EXPECT_NE(raw.find("Transfer-Encoding"), std::string::npos) << raw;
  EXPECT_EQ(raw.find("HTTP/1.1", 5), std::string::npos) << "a second answer: " << raw;
  EXPECT_TRUE(closed);
  auto got = client(hub.kubeconfig())->request(http::verb::get, std::string(kBase) + "/smuggled");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 404u);
}

TEST(HubAttack, ABodyThatDoesNotArriveInTimeGets408) {
  TempDir dir;
  ASSERT_TRUE(writeFileAtomic(dir.path() / "hub.yaml", "body_timeout_seconds: 1\n", 0644));
  HubProcess hub(dir.path() / "data", {"--config", (dir.path() / "hub.yaml").string()});
  ASSERT_TRUE(hub.ok()) << hub.log();
  RawTls t;
  ASSERT_TRUE(t.connect(hub.url(), hub.kubeconfig()));
  t.write("POST " + std::string(kBase) + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
          "Content-Length: 100\r\n\r\n{\"metadata\":");
  bool closed = false;
  auto raw = t.readAll(std::chrono::seconds(15), &closed);
  EXPECT_EQ(statusOf(raw), 408u) << raw;
  EXPECT_TRUE(closed);
}

// Thousands of sockets that never send a byte, then a steady stream of new ones: clients with a
// real handshake are still served at once.
TEST(HubAttack, IdleSocketsBeforeTheHandshakeDoNotLockOutClients) {
  raiseFileLimit();
  size_t idle = std::min<size_t>(3000, fileLimit() / 3);
  if (idle < 600) {
    GTEST_SKIP() << "the file descriptor limit (" << fileLimit() << ") is too low for this test";
  }
  TempDir dir;
  ASSERT_TRUE(writeFileAtomic(dir.path() / "hub.yaml", "max_connections: " + std::to_string(idle / 2) + "\n", 0644));
  HubProcess hub(dir.path() / "data", {"--config", (dir.path() / "hub.yaml").string()});
  ASSERT_TRUE(hub.ok()) << hub.log();
  std::vector<int> fds;
  for (size_t i = 0; i < idle; ++i) {
    int fd = tcpConnect(hub.url(), i % 3 == 0 ? std::string("\x16\x03\x01", 3) : std::string());  // some stall mid-hello
    if (fd >= 0) {
      fds.push_back(fd);
    }
  }
  auto c = client(hub.kubeconfig());
  auto t0 = std::chrono::steady_clock::now();
  auto r = c->request(http::verb::get, "/readyz", "", "", std::chrono::seconds(5));
  ASSERT_TRUE(r) << r.error().message << "\n" << hub.log().substr(0, 2000);
  EXPECT_EQ(r->status, 200u);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  // A sustained flood of new silent connections while clients keep working.
  std::atomic<bool> stop{false};
  std::thread flood([&] {
    std::vector<int> mine;
    while (!stop) {
      int fd = tcpConnect(hub.url());
      if (fd >= 0) {
        mine.push_back(fd);
      }
      if (mine.size() > idle) {
        ::close(mine.front());
        mine.erase(mine.begin());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    for (int fd : mine) {
      ::close(fd);
    }
  });
  int served = 0;
  for (int i = 0; i < 20; ++i) {
    auto rr = c->request(http::verb::get, "/readyz", "", "", std::chrono::seconds(5));
    served += rr && rr->status == 200 ? 1 : 0;
  }
  stop = true;
  flood.join();
  EXPECT_EQ(served, 20) << hub.log().substr(0, 2000);
  for (int fd : fds) {
    ::close(fd);
  }
  EXPECT_NE(hub.log().find("shedding the oldest connections"), std::string::npos);
  EXPECT_TRUE(hub.process().running());
}

TEST(HubAttack, ASocketThatNeverHandshakesIsClosedAtTheDeadlineFromAccept) {
  TempDir dir;
  ASSERT_TRUE(writeFileAtomic(dir.path() / "hub.yaml", "handshake_timeout_seconds: 1\n", 0644));
  HubProcess hub(dir.path() / "data", {"--config", (dir.path() / "hub.yaml").string()});
  ASSERT_TRUE(hub.ok()) << hub.log();
  for (const std::string& first : {std::string(), std::string("\x16\x03\x01", 3)}) {
    int fd = tcpConnect(hub.url(), first);
    ASSERT_GE(fd, 0);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    auto t0 = std::chrono::steady_clock::now();
    char b[64];
    ssize_t n = ::read(fd, b, sizeof b);
    auto waited = std::chrono::steady_clock::now() - t0;
    EXPECT_EQ(n, 0) << "expected the hub to close the connection";
    EXPECT_LT(waited, std::chrono::seconds(4));
    ::close(fd);
  }
}

// Where kube-apiserver answers differently from what a lenient server would do.
TEST(HubAttack, SmallMismatchesWithKubeApiserverAnswerAsItDoes) {
  TempDir dir;
  HubProcess hub(dir.path() / "data");
  ASSERT_TRUE(hub.ok()) << hub.log();
  std::string cp = R"({"metadata":{"name":"ct"},"spec":{"type":"k3s"}})";
  // A body without a media type, or in one the hub does not decode, is not guessed at.
  EXPECT_EQ(statusOf(rawRequest(hub, "POST", kBase, "", cp)), 415u);
  EXPECT_EQ(statusOf(rawRequest(hub, "POST", kBase, "text/plain", cp)), 415u);
  EXPECT_EQ(statusOf(rawRequest(hub, "POST", kBase, "Application/JSON; charset=utf-8", cp)), 201u);
  // resourceVersion on list and watch: a revision number, not one from the future.
  for (const char* rv : {"abc", "-1", "12abc", "1.5"}) {
    EXPECT_EQ(statusOf(rawRequest(hub, "GET", std::string(kBase) + "?resourceVersion=" + rv, "", "")), 400u) << rv;
    EXPECT_EQ(statusOf(rawRequest(hub, "GET", std::string(kBase) + "?watch=1&resourceVersion=" + rv, "", "")), 400u) << rv;
  }
  auto t0 = std::chrono::steady_clock::now();
  auto future = rawRequest(hub, "GET", std::string(kBase) + "?watch=1&resourceVersion=999999", "", "");
  EXPECT_EQ(statusOf(future), 504u) << future;
  EXPECT_NE(future.find("Too large resource version"), std::string::npos) << future;
  EXPECT_NE(future.find("ResourceVersionTooLarge"), std::string::npos) << future;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_EQ(statusOf(rawRequest(hub, "GET", std::string(kBase) + "?resourceVersion=999999", "", "")), 504u);
  EXPECT_EQ(statusOf(rawRequest(hub, "GET", std::string(kBase) + "?resourceVersion=0", "", "")), 200u);
  // An object larger than etcd's request limit once stored (60,000 labels, under the 3 MiB body limit).
  Json huge = {{"metadata", {{"name", "labels"}, {"labels", Json::object()}}}, {"spec", {{"type", "k3s"}}}};
  for (int i = 0; i < 60000; ++i) {
    char k[32];
    std::snprintf(k, sizeof k, "label-%06d", i);
    huge["metadata"]["labels"][k] = std::string("value-") + k;
  }
  auto big = rawRequest(hub, "POST", kBase, "application/json", huge.dump());
  EXPECT_EQ(statusOf(big), 413u) << big.substr(0, 400);
  auto c = client(hub.kubeconfig());
  auto absent = c->request(http::verb::get, std::string(kBase) + "/labels");
  ASSERT_TRUE(absent);
  EXPECT_EQ(absent->status, 404u);
}

// A single-use token's enrollment whose answer was lost is retried by the same host with the
// same key: answered again, as docs/kflex-agent.md promises. Another key is still refused.
TEST(HubAttack, ASingleUseTokenEnrollmentRetriedWithTheSameKeyIsAnsweredAgain) {
  TempDir dir;
  HubProcess hub(dir.path() / "data");
  ASSERT_TRUE(hub.ok()) << hub.log();
  auto created = run({(binDir() / "kflex").string(), "--kubeconfig", hub.kubeconfig().string(), "token", "create",
                      "--single-use", "--ttl", "1h"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  auto join = agentJoinIn(created.out);
  ASSERT_TRUE(join) << created.out;
  auto enroll = [&](const std::string& key) {
    protocol::EnrollRequest er;
    er.name = "edge-once";
    er.csr_pem = tls::createCsr(key, "edge-once").value();
    RawTls t;
    if (!t.connect(hub.url(), hub.kubeconfig())) {
      return std::string();
    }
    std::string body = protocol::toJson(er).dump();
    t.write(std::string("POST ") + protocol::kEnrollPath + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            "Authorization: Bearer " + join->token + "\r\nContent-Type: application/json\r\nContent-Length: " +
            std::to_string(body.size()) + "\r\n\r\n" + body);
    return t.readAll(std::chrono::seconds(20));
  };
  std::string key = tls::createPrivateKey().value();
  auto first = enroll(key);
  ASSERT_EQ(statusOf(first), 201u) << first;
  auto again = enroll(key);
  EXPECT_TRUE(statusOf(again) == 200u || statusOf(again) == 201u) << again;
  EXPECT_NE(again.find("BEGIN CERTIFICATE"), std::string::npos);
  auto other = enroll(tls::createPrivateKey().value());
  EXPECT_EQ(statusOf(other), 401u) << other;
}

// A hub whose data disk filled up while it was stopped still starts: it says so, serves reads,
// fails writes naming the cause, and takes writes again once space is freed.
TEST(HubAttack, AHubStartsOnAFullDiskAndServesReads) {
  TempDir dir;
  fs::path data = dir.path() / "small";
  fs::create_directories(data);
  if (::mount("tmpfs", data.c_str(), "tmpfs", 0, "size=2m") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs here (needs root)";
  }
  std::string listen;
  {
    HubProcess hub(data);  // (its log goes beside it, off the small disk)
    ASSERT_TRUE(hub.ok()) << hub.log();
    auto w = client(hub.kubeconfig())->request(http::verb::post, kBase, R"({"metadata":{"name":"before"},"spec":{"type":"k3s"}})");
    ASSERT_TRUE(w);
    ASSERT_EQ(w->status, 201u) << w->body;
    listen = hub.url().substr(8);
    ASSERT_EQ(hub.stop(), 0);
  }
  {
    std::ofstream filler(data / "filler", std::ios::binary);
    std::string block(64 * 1024, 'f');
    while (filler.write(block.data(), std::streamsize(block.size())) && filler.flush()) {
    }
  }
  {
    HubProcess hub(data, {"--listen", listen});
    ASSERT_TRUE(hub.ok()) << hub.log();
    EXPECT_NE(hub.log().find("the data disk is full"), std::string::npos) << hub.log();
    auto c = client(hub.kubeconfig());
    auto r = c->request(http::verb::get, std::string(kBase) + "/before");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200u) << r->body;
    unsigned status = 0;
    std::string body;
    for (int i = 0; i < 20 && status != 500; ++i) {
      Json obj = {{"metadata", {{"name", "full-" + std::to_string(i)}, {"annotations", {{"pad", std::string(60000, 'p')}}}}},
                  {"spec", {{"type", "k3s"}}}};
      auto w = c->request(http::verb::post, kBase, obj.dump());
      ASSERT_TRUE(w);
      status = w->status;
      body = w->body;
    }
    EXPECT_EQ(status, 500u);
    EXPECT_NE(body.find("data disk is full"), std::string::npos) << body;
    fs::remove(data / "filler");
    auto after = c->request(http::verb::post, kBase, R"({"metadata":{"name":"after"},"spec":{"type":"k3s"}})");
    ASSERT_TRUE(after);
    EXPECT_EQ(after->status, 201u) << after->body;
  }
  ::umount2(data.c_str(), MNT_DETACH);
}

// Creating a connection's TLS session fails (as under memory pressure): those connections are
// lost, the listener is not.
TEST(HubAttack, AFailedAcceptCostsOnlyThatConnection) {
  TempDir dir;
  fs::path trigger = dir.path() / "ssl-new-fails";
  ::setenv("LD_PRELOAD", KFLEX_FAIL_SYNC_LIB, 1);
  ::setenv("KFLEX_TEST_FAIL_SSL_NEW_TRIGGER", trigger.c_str(), 1);
  HubProcess hub(dir.path() / "data");
  ::unsetenv("LD_PRELOAD");
  ::unsetenv("KFLEX_TEST_FAIL_SSL_NEW_TRIGGER");
  ASSERT_TRUE(hub.ok()) << hub.log();
  std::ofstream(trigger) << "now";
  for (int i = 0; i < 3; ++i) {
    RawTls lost;
    EXPECT_FALSE(lost.connect(hub.url(), hub.kubeconfig()));
  }
  fs::remove(trigger);
  EXPECT_TRUE(waitFor([&] {
    auto r = client(hub.kubeconfig())->request(http::verb::get, "/readyz", "", "", std::chrono::seconds(2));
    return r && r->status == 200;
  }, std::chrono::seconds(10), "the hub to serve again")) << hub.log();
  EXPECT_NE(hub.log().find("accepting a connection failed"), std::string::npos) << hub.log();
  EXPECT_TRUE(hub.process().running());
}

}  // namespace
}  // namespace kflex::test
