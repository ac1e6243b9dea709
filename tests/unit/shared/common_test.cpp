// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "shared/common/json_decode.hpp"
#include "shared/common/json_pluck.hpp"
#include "shared/common/json_write.hpp"
#include "shared/common/log.hpp"
#include "shared/common/result.hpp"
#include "shared/common/time.hpp"
#include "shared/common/util.hpp"
#include "shared/config/kubeconfig.hpp"
#include "tests/support/test_support.hpp"

namespace kflex {
namespace {

// An error carries a code next to its message; the one-argument fail() means Internal.
TEST(Result, ErrorsCarryACode) {
  Result<int> plain = fail("disk on fire");
  ASSERT_FALSE(plain);
  EXPECT_EQ(plain.error().code, Errc::Internal);
  EXPECT_EQ(plain.error().message, "disk on fire");
  Result<std::string> missing = fail(Errc::NotFound, "no such thing");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::NotFound);
  EXPECT_EQ(missing.error().message, "no such thing");
  // Passed along, the code stays.
  auto passed = [&]() -> Result<void> { return missing.error(); }();
  EXPECT_EQ(passed.error().code, Errc::NotFound);
  EXPECT_EQ(Error().code, Errc::Internal);
}

TEST(DecodeJson, RefusesTextNestedBeyondTheLimitBeforeParsingIt) {
  std::string deep = std::string(kMaxJsonDepth + 1, '[') + std::string(kMaxJsonDepth + 1, ']');
  auto r = decodeJson(deep);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("max depth"), std::string::npos) << r.error().message;
  std::string at_limit = std::string(kMaxJsonDepth, '[') + std::string(kMaxJsonDepth, ']');
  EXPECT_TRUE(decodeJson(at_limit));
  // Brackets inside strings are not nesting.
  EXPECT_TRUE(decodeJson(R"({"a":")" + std::string(20000, '[') + R"("})"));
  EXPECT_FALSE(decodeJson(R"([[["x"]]])", {2, nullptr}));
}

TEST(DecodeJson, NeverThrowsAndSaysWhatIsWrong) {
  for (const std::string& bad : {std::string(R"({"a":1e400})"), std::string("{\"a\":\"\xff\"}"), std::string("{\"a\":"),
                                 std::string("\xff\xfe"), std::string("")}) {
    auto r = decodeJson(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_FALSE(r.error().message.empty());
    EXPECT_TRUE(isValidUtf8(r.error().message)) << r.error().message;
  }
}

TEST(DecodeJson, FindsDuplicateKeysOnBothPaths) {
  std::vector<std::string> dups;
  auto r = decodeJson(R"({"metadata":{"name":"a","name":"b"},"items":[{"x":1},{"x":1,"x":2}]})", {kMaxJsonDepth, &dups});
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["metadata"]["name"], "b");  // the last one wins
  EXPECT_EQ(dups, (std::vector<std::string>{"metadata.name", "items[1].x"}));
  // Over simdjson's depth (1,024) nlohmann's parser reads it; the paths are the same.
  dups.clear();
  std::string deep = R"({"metadata":{"name":"a","name":"b"},"items":[{"x":1},{"x":1,"x":2}],"deep":)" +
                     std::string(1500, '[') + std::string(1500, ']') + "}";
  ASSERT_TRUE(decodeJson(deep, {kMaxJsonDepth, &dups}));
  EXPECT_EQ(dups, (std::vector<std::string>{"metadata.name", "items[1].x"}));
}

TEST(DecodeJson, DumpSafeReplacesWhatIsNotUtf8) {
  EXPECT_EQ(dumpSafe(nlohmann::json("a\xff")), "\"a\xEF\xBF\xBD\"");
  EXPECT_FALSE(isValidUtf8("\xc0\x80"));  // overlong
  EXPECT_FALSE(isValidUtf8("\xed\xa0\x80"));  // a surrogate
  EXPECT_TRUE(isValidUtf8("caf\xc3\xa9"));
}

TEST(Util, Base64RoundTrip) {
  for (const std::string& s : std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\0\xff\x10", 3)}) {
    auto d = base64Decode(base64Encode(s));
    ASSERT_TRUE(d);
    EXPECT_EQ(d.value(), s);
  }
  EXPECT_EQ(base64Encode("hello"), "aGVsbG8=");
  EXPECT_FALSE(base64Decode("a$b"));
}

TEST(Util, Dns1123) {
  EXPECT_TRUE(isDns1123Label("cp-1"));
  EXPECT_FALSE(isDns1123Label("-cp"));
  EXPECT_FALSE(isDns1123Label("Cp"));
  EXPECT_FALSE(isDns1123Label(std::string(64, 'a')));
  EXPECT_TRUE(isDns1123Subdomain("a.b-c.d"));
  EXPECT_FALSE(isDns1123Subdomain("a..b"));
}

TEST(Util, UuidIsVersion4) {
  std::string u = newUuid();
  EXPECT_EQ(u.size(), 36u);
  EXPECT_EQ(u[14], '4');
  EXPECT_NE(u, newUuid());
  std::set<std::string> seen;
  for (int i = 0; i < 2000; ++i) {
    std::string v = newUuid();
    EXPECT_EQ(v[14], '4');
    EXPECT_TRUE(std::string("89ab").find(v[19]) != std::string::npos) << v;
    EXPECT_TRUE(seen.insert(v).second) << v;
  }
  // A forked child does not repeat the parent's next UUID (the random bytes are pooled).
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::string c = newUuid();
    (void)!::write(fds[1], c.data(), c.size());
    ::_exit(0);
  }
  std::string mine = newUuid();
  char buf[36];
  ASSERT_EQ(::read(fds[0], buf, sizeof buf), ssize_t(sizeof buf));
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(fds[0]);
  ::close(fds[1]);
  EXPECT_NE(std::string(buf, sizeof buf), mine);
}

TEST(Util, WriteFileAtomicSetsMode) {
  test::TempDir dir;
  auto p = dir.path() / "secret";
  ASSERT_TRUE(writeFileAtomic(p, "one", 0644));
  ASSERT_TRUE(writeFileAtomic(p, "two", 0600));
  struct stat st {};
  ASSERT_EQ(::stat(p.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(readFile(p).value(), "two");
  EXPECT_FALSE(writeFileAtomic(dir.path() / "missing" / "x", "y", 0600));
}

// Buffered logging, in a child process (the setting is process-wide): routine lines wait,
// warnings take them along at once, the flusher writes the rest, exit() writes what still waits,
// and a forked child neither writes the parent's waiting lines nor keeps them.
TEST(Log, BufferedLinesAreWrittenLateButNeverLostOrDoubled) {
  test::TempDir dir;
  auto file = dir.path() / "stderr";
  auto content = [&] {
    std::ifstream in(file);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
    ::dup2(fd, STDERR_FILENO);
    log::setBuffered(std::chrono::milliseconds(300));
    log::info("line-a");
    if (!content().empty()) {
      _exit(2);  // a routine line was written at once
    }
    log::warn("line-b");
    if (content().find("line-a") == std::string::npos || content().find("line-b") == std::string::npos ||
        content().find("line-a") > content().find("line-b")) {
      _exit(3);  // the warning did not take the waiting line along, in order
    }
    log::info("line-c");
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (content().find("line-c") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (content().find("line-c") == std::string::npos) {
      _exit(4);  // the flusher never wrote it
    }
    log::info("line-d");  // waiting at fork
    pid_t child = fork();
    if (child == 0) {
      log::info("line-e");  // unbuffered in the child, written at once; line-d is not its to write
      _exit(0);
    }
    int status = 0;
    waitpid(child, &status, 0);
    log::info("line-f");
    std::exit(0);  // writes line-d and line-f
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0) << content();
  std::string out = content();
  for (const char* line : {"line-a", "line-b", "line-c", "line-d", "line-e", "line-f"}) {
    size_t at = out.find(line);
    EXPECT_NE(at, std::string::npos) << line << " missing:\n" << out;
    EXPECT_EQ(out.find(line, at + 1), std::string::npos) << line << " written twice:\n" << out;
  }
  EXPECT_LT(out.find("line-e"), out.find("line-d")) << out;
  EXPECT_LT(out.find("line-d"), out.find("line-f")) << out;
}

TEST(Time, FormatParseAndHumanDurations) {
  auto t = parseTime("2026-11-24T08:00:05Z");
  ASSERT_TRUE(t);
  EXPECT_EQ(formatTime(*t), "2026-11-24T08:00:05Z");
  EXPECT_EQ(formatTime(*parseTime("2026-11-24T10:00:05+02:00")), "2026-11-24T08:00:05Z");
  EXPECT_FALSE(parseTime("yesterday"));
  EXPECT_EQ(humanDuration(std::chrono::seconds(45)), "45s");
  EXPECT_EQ(humanDuration(std::chrono::seconds(185)), "3m5s");
  EXPECT_EQ(humanDuration(std::chrono::seconds(3600 * 30)), "30h");
  EXPECT_EQ(humanDuration(std::chrono::seconds(86400 * 10)), "10d");
  FakeClock clock(*t);
  clock.advance(std::chrono::seconds(10));
  EXPECT_EQ(formatTime(clock.now()), "2026-11-24T08:00:15Z");
  // Milliseconds, leap days, the ends of days and years, and times before 1970.
  auto at = [](std::time_t secs, int ms) {
    return std::chrono::system_clock::from_time_t(secs) + std::chrono::milliseconds(ms);
  };
  EXPECT_EQ(formatTimeMillis(at(0, 7)), "1970-01-01T00:00:00.007Z");
  EXPECT_EQ(formatTimeMillis(at(951782399, 999)), "2000-02-28T23:59:59.999Z");
  EXPECT_EQ(formatTime(at(951782400, 0)), "2000-02-29T00:00:00Z");
  EXPECT_EQ(formatTimeMillis(at(4102444799, 120)), "2099-12-31T23:59:59.120Z");
  EXPECT_EQ(formatTime(at(-1, 0)), "1969-12-31T23:59:59Z");
  EXPECT_EQ(formatTimeMillis(at(-1, 500)), "1969-12-31T23:59:59.500Z");
  // Every second of a day and many days round-trip through parseTime.
  for (std::time_t s = 1700000000; s < 1700000000 + 86400 * 400; s += 7919) {
    EXPECT_EQ(std::chrono::system_clock::to_time_t(*parseTime(formatTime(at(s, 0)))), s);
  }
}

TEST(Kubeconfig, MergeInlinesCredentialsAndKeepsOthers) {
  test::TempDir dir;
  auto src = dir.path() / "src.yaml";
  auto ca = dir.path() / "ca.crt";
  ASSERT_TRUE(writeFileAtomic(ca, "CA-PEM", 0644));
  ASSERT_TRUE(writeFileAtomic(src,
                              "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster:\n"
                              "    server: https://127.0.0.1:1\n    certificate-authority: ca.crt\nusers:\n- name: u\n"
                              "  user:\n    token: abc\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n",
                              0600));
  auto in = config::Kubeconfig::load(src);
  ASSERT_TRUE(in) << in.error().message;
  auto out = config::Kubeconfig::load(dir.path() / "none", true);
  ASSERT_TRUE(out);
  out->setContext("other", "oc", "ou", {{"server", "https://x"}}, nlohmann::json::object());
  ASSERT_TRUE(out->mergeContext(in.value(), "c", "hub"));
  auto a = out->access("hub");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->server, "https://127.0.0.1:1");
  EXPECT_EQ(a->ca_pem, "CA-PEM");
  EXPECT_EQ(a->token, "abc");
  EXPECT_TRUE(out->hasContext("other"));
  out->setExtension("kflex", {{"initialContext", "hub"}});
  ASSERT_TRUE(out->save(dir.path() / "out.yaml"));
  auto reread = config::Kubeconfig::load(dir.path() / "out.yaml");
  ASSERT_TRUE(reread);
  EXPECT_EQ(reread->extension("kflex")["initialContext"], "hub");
  EXPECT_FALSE(reread->access("missing"));
}

// The tunnel's kubeconfig (docs/dev/tunnel.md): the server becomes the control plane's tunnel
// name, proxy-url names the hub, the hub's CA joins the control plane's (a file reference
// inlined), and a merge into another kubeconfig keeps all of it.
TEST(Kubeconfig, RouteThroughProxyAndAMergeKeepsIt) {
  test::TempDir dir;
  auto src = dir.path() / "src.yaml";
  ASSERT_TRUE(writeFileAtomic(dir.path() / "ca.crt", "CP-CA\n", 0644));
  ASSERT_TRUE(writeFileAtomic(src,
                              "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster:\n"
                              "    server: https://10.0.0.5:6443\n    certificate-authority: ca.crt\nusers:\n- name: u\n"
                              "  user:\n    token: abc\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n",
                              0600));
  auto kc = config::Kubeconfig::load(src);
  ASSERT_TRUE(kc) << kc.error().message;
  EXPECT_EQ(kc->proxyUrl("c"), "");
  ASSERT_TRUE(kc->routeThroughProxy("c", "https://cp1.controlplanes.kflex:6443",
                                    "https://tunnel:abcdef.0123456789abcdef@hub.example:6443", "HUB-CA\n"));
  auto a = kc->access("c");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->server, "https://cp1.controlplanes.kflex:6443");
  EXPECT_EQ(a->proxy_url, "https://tunnel:abcdef.0123456789abcdef@hub.example:6443");
  EXPECT_EQ(a->ca_pem, "CP-CA\nHUB-CA\n");
  EXPECT_EQ(a->token, "abc");
  EXPECT_EQ(kc->proxyUrl("c"), a->proxy_url);
  auto merged = config::Kubeconfig::load(dir.path() / "none", true);
  ASSERT_TRUE(merged);
  ASSERT_TRUE(merged->mergeContext(kc.value(), "c", "cp1"));
  EXPECT_EQ(merged->proxyUrl("cp1"), a->proxy_url);
  EXPECT_EQ(merged->access("cp1")->ca_pem, "CP-CA\nHUB-CA\n");
  // Without a CA of its own the tunnel cannot verify the control plane end to end.
  config::Kubeconfig bare;
  bare.setContext("x", "xc", "xu", {{"server", "https://10.0.0.6:6443"}}, nlohmann::json::object());
  auto refused = bare.routeThroughProxy("x", "https://x.controlplanes.kflex:6443", "https://tunnel:t@h:1", "HUB-CA\n");
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("certificate authority"), std::string::npos);
}

TEST(Kubeconfig, RouteThroughHubTakesHostsAndPortsFromTheUrls) {
  config::Kubeconfig kc;
  kc.setContext("c", "k", "u", {{"server", "https://10.0.0.5:7443/"}, {"certificate-authority-data", base64Encode("CP-CA\n")}},
                nlohmann::json::object());
  ASSERT_TRUE(kc.routeThroughHub("c", "cp1.controlplanes.kflex", "https://[fd00::1]:9443/base", "t.s", "HUB-CA\n"));
  auto a = kc.access("c");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->server, "https://cp1.controlplanes.kflex:7443");
  EXPECT_EQ(a->proxy_url, "https://tunnel:t.s@[fd00::1]:9443");
  // No port: 443, as for any https URL; "" keeps the server (an adopted cluster).
  config::Kubeconfig adopted;
  adopted.setContext("a", "k", "u", {{"server", "https://[fd00::7]"}, {"certificate-authority-data", base64Encode("X\n")}},
                     nlohmann::json::object());
  ASSERT_TRUE(adopted.routeThroughHub("a", "", "https://hub.example", "t.s", "HUB-CA\n"));
  EXPECT_EQ(adopted.access("a")->server, "https://[fd00::7]");
  EXPECT_EQ(adopted.access("a")->proxy_url, "https://tunnel:t.s@hub.example:443");
  config::Kubeconfig named;
  named.setContext("n", "k", "u", {{"server", "https://cp.example"}, {"certificate-authority-data", base64Encode("X\n")}},
                   nlohmann::json::object());
  ASSERT_TRUE(named.routeThroughHub("n", "n.controlplanes.kflex", "https://hub.example:6443", "t.s", "HUB-CA\n"));
  EXPECT_EQ(named.access("n")->server, "https://n.controlplanes.kflex:443");
  EXPECT_FALSE(named.routeThroughHub("n", "n.controlplanes.kflex", "http://hub.example:6443", "t.s", "HUB-CA\n"));
}

TEST(SplitHttpsUrl, HostsPortsAndIpv6) {
  std::string host;
  std::string port;
  ASSERT_TRUE(splitHttpsUrl("https://a.example:6443/x", host, port));
  EXPECT_EQ(host + " " + port, "a.example 6443");
  ASSERT_TRUE(splitHttpsUrl("https://[::1]", host, port));
  EXPECT_EQ(host + " " + port, "::1 443");
  ASSERT_TRUE(splitHttpsUrl("https://[fd00::5]:8443", host, port));
  EXPECT_EQ(host + " " + port, "fd00::5 8443");
  EXPECT_EQ(joinHostPort(host, port), "[fd00::5]:8443");
  EXPECT_EQ(joinHostPort("10.0.0.1", "6443"), "10.0.0.1:6443");
  EXPECT_FALSE(splitHttpsUrl("http://a:1", host, port));
  EXPECT_FALSE(splitHttpsUrl("https://[::1", host, port));
  EXPECT_FALSE(splitHttpsUrl("https://:443", host, port));
}

TEST(PluckJson, FindsValuesAtPathsWithoutBuildingTheDocument) {
  std::string doc = R"({"metadata":{"name":"a","annotations":{"x/y":"1","z":"2"},"deletionTimestamp":null},
    "spec":{"type":"k3s","hooks":[{"type":"not-this"}],"nested":{"type":"nor-this"}},"status":{"n":3}})";
  auto f = pluckJson(doc, {{"spec", "type"},
                           {"metadata", "annotations", "x/y"},
                           {"metadata", "deletionTimestamp"},
                           {"status", "n"},
                           {"status", "agent"},
                           {"type"}});
  ASSERT_TRUE(f);
  ASSERT_EQ(f->size(), 6u);
  EXPECT_EQ((*f)[0].string.value_or("?"), "k3s");  // not the array element's, not the nested one's
  EXPECT_EQ((*f)[1].string.value_or("?"), "1");
  EXPECT_TRUE((*f)[2].present);  // null is present, and not a string
  EXPECT_FALSE((*f)[2].string);
  EXPECT_TRUE((*f)[3].present);
  EXPECT_FALSE((*f)[3].string);
  EXPECT_FALSE((*f)[4].present);
  EXPECT_FALSE((*f)[5].present);
  EXPECT_FALSE(pluckJson(R"({"spec":{"type":"k3s"})", {{"spec", "type"}}));  // truncated: not JSON
  EXPECT_FALSE(pluckJson("", {{"a"}}));
}

}  // namespace
}  // namespace kflex

namespace kflex {
namespace {

using Json = nlohmann::json;

TEST(DumpJson, WritesWhatNlohmannWrites) {
  std::string every_ascii;
  for (int c = 1; c < 0x80; ++c) {
    every_ascii.push_back(static_cast<char>(c));
  }
  std::vector<Json> docs = {
      Json(), Json(true), Json(false), Json(0), Json(-42), Json(uint64_t(18446744073709551615ull)),
      Json(int64_t(-9223372036854775807ll - 1)), Json(1.5), Json(-0.0), Json(1e300), Json(0.1), Json(3.0),
      Json(""), Json(every_ascii), Json(std::string("nul\0in", 6)), Json("ünïcødé ✓ 😀 and \"quotes\"\n"),
      Json("tab\tthen é then \x01"), Json::object(), Json::array(), Json::array({Json::object(), Json::array()}),
      Json::parse(R"({"apiVersion":"tenancy.kflex.kubestellar.org/v1alpha1","kind":"ControlPlane",
        "metadata":{"name":"cp-1","labels":{"a":"b","shard":"3"},"annotations":{"k\u00e9y":"v\\w"},
        "managedFields":[{"manager":"kubectl","fieldsV1":{"f:spec":{"f:type":{}}},"time":"2026-01-01T00:00:00Z"}]},
        "spec":{"type":"k3s","tokenExpirationSeconds":31536000,"ratio":0.25,"list":[1,-2,3.5,null,true,"x"]},
        "status":{"conditions":[{"type":"Ready","status":"False","message":"line1\nline2\t\"q\" \u001f"}]}})")};
  // Every special byte at every place of a string longer than the 8-byte words scanned at once.
  for (std::string special : {"\x01", "\x1f", "\"", "\\", "\x7f", "\xc3\xa9"}) {
    for (size_t at = 0; at < 20; ++at) {
      docs.push_back(Json(std::string(at, 'x') + special + std::string(20 - at, 'y')));
    }
  }
  for (const auto& d : docs) {
    EXPECT_EQ(dumpJson(d), d.dump()) << d.dump();
    std::string appended = "prefix:";
    appendJson(appended, d);
    EXPECT_EQ(appended, "prefix:" + d.dump());
  }
}

// The same tree as nlohmann::json::parse, down to the number types, or nullopt (then the caller
// uses nlohmann, which also words the error).
void expectSameTree(const Json& a, const Json& b, const std::string& where) {
  ASSERT_EQ(a.type(), b.type()) << where;
  if (a.is_object()) {
    ASSERT_EQ(a.size(), b.size()) << where;
    for (auto it = a.begin(); it != a.end(); ++it) {
      ASSERT_TRUE(b.contains(it.key())) << where << "/" << it.key();
      expectSameTree(it.value(), b[it.key()], where + "/" + it.key());
    }
  } else if (a.is_array()) {
    ASSERT_EQ(a.size(), b.size()) << where;
    for (size_t i = 0; i < a.size(); ++i) {
      expectSameTree(a[i], b[i], where + "/" + std::to_string(i));
    }
  } else {
    EXPECT_EQ(a.dump(), b.dump()) << where;
  }
}

TEST(ParseJsonFast, BuildsTheTreeNlohmannBuilds) {
  for (std::string text : {
           std::string(R"({"apiVersion":"tenancy.kflex.kubestellar.org/v1alpha1","kind":"ControlPlane",
             "metadata":{"name":"cp-1","labels":{"a":"b"},"annotations":{"k\u00e9y":"v\\w \ud83d\ude00"}},
             "spec":{"type":"k3s","n":31536000,"neg":-5,"big":18446744073709551615,"min":-9223372036854775808,
               "f":0.1,"e":1e300,"one":1.0,"zero":0,"list":[1,-2,3.5,null,true,false,"x",[],{}]}})"),
           std::string(R"({"dup":1,"dup":"last wins","z":{"dup":[1],"dup":{}}})"),
           std::string(R"(["top-level array",1])"), std::string(R"("just a string")"), std::string("42"),
           std::string("-7"), std::string("null"), std::string(" \t\n {} \n"),
       }) {
    Json slow = Json::parse(text, nullptr, false);
    auto fast = parseJsonFast(text);
    if (slow.is_discarded()) {
      EXPECT_FALSE(fast) << text;
      continue;
    }
    ASSERT_TRUE(fast) << text;
    expectSameTree(slow, *fast, text);
    EXPECT_EQ(dumpJson(*fast), slow.dump());
  }
  EXPECT_TRUE(parseJsonFast(R"({"a":{"b":[1,2,{"c":"d"}]}})"));
  // What only nlohmann reads its way, and what is not JSON at all: left to nlohmann.
  EXPECT_FALSE(parseJsonFast(R"({"n":-0})"));
  EXPECT_FALSE(parseJsonFast(R"([1, -0 ])"));
  EXPECT_FALSE(parseJsonFast(R"({"f":-0.0e0})"));
  EXPECT_TRUE(parseJsonFast(R"({"name":"cp-0","n":-0.5,"m":-10})"));
  EXPECT_FALSE(parseJsonFast(R"({"n":123456789012345678901234567890})"));
  EXPECT_FALSE(parseJsonFast(R"({"a":1,})"));
  EXPECT_FALSE(parseJsonFast(R"({"a":1} trailing)"));
  EXPECT_FALSE(parseJsonFast("{\"bad\":\"\xff\"}"));
  EXPECT_FALSE(parseJsonFast(R"({"a":1 // comment
  })"));
  EXPECT_FALSE(parseJsonFast(""));
  // Over the limit: nlohmann (whose buffers do not stay behind).
  EXPECT_FALSE(parseJsonFast(R"({"a":"0123456789"})", 8));
  Json n = Json::parse(R"({"n":-0})");
  EXPECT_TRUE(n["n"].is_number_integer());
}

TEST(DumpJson, InvalidUtf8ThrowsAsDumpDoes) {
  Json bad = {{"key", std::string("ok then \xff\xfe")}};
  EXPECT_THROW((void)bad.dump(), Json::type_error);
  EXPECT_THROW((void)dumpJson(bad), Json::type_error);
}

}  // namespace
}  // namespace kflex
