// SPDX-License-Identifier: Apache-2.0
// Control planes reached through the hub (docs/dev/tunnel.md): kubectl with the kubeconfig
// `kflex ctx` writes, its CONNECT to the hub, the agent's link, the k3s stand-in's API server.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>

#include <iostream>
#include <regex>
#include <thread>

#include <gtest/gtest.h>

#include "shared/tls/secret_box.hpp"
#include "tests/integration/control_planes.hpp"
#include "tests/integration/veth_namespace.hpp"
#include "tests/support/raw_tls.hpp"
#include "tests/support/test_support.hpp"

namespace kflex::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Json = nlohmann::json;

// A TCP echo server (python3) on 127.0.0.1 where `prefix` runs it (a network namespace, or here).
class EchoServer {
 public:
  EchoServer(const fs::path& log, const std::vector<std::string>& prefix = {})
      : process_(argv(prefix), log) {}
  /// Its port once it listens ("" when it does not within 10 s).
  std::string port() {
    std::string text;
    waitFor([&] { return (text = process_.log()).find('\n') != std::string::npos; }, 10s, "the echo server");
    return text.substr(0, text.find('\n'));
  }

 private:
  static std::vector<std::string> argv(std::vector<std::string> prefix) {
    prefix.insert(prefix.end(), {"python3", "-c",
                                 "import socket, threading\n"
                                 "s = socket.socket()\n"
                                 "s.bind(('127.0.0.1', 0))\n"
                                 "s.listen(16)\n"
                                 "print(s.getsockname()[1], flush=True)\n"
                                 "def echo(c):\n"
                                 "    while True:\n"
                                 "        d = c.recv(65536)\n"
                                 "        if not d:\n"
                                 "            break\n"
                                 "        c.sendall(d)\n"
                                 "    c.close()\n"
                                 "while True:\n"
                                 "    c, _ = s.accept()\n"
                                 "    threading.Thread(target=echo, args=(c,), daemon=True).start()\n"});
    return prefix;
  }
  Process process_;
};

// Sends `bytes` to 127.0.0.1:port, half-closes, and returns all that comes back (10 s at most).
std::string echoThrough(uint16_t port, const std::string& bytes) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string got;
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
    if (fd >= 0) {
      ::close(fd);
    }
    return "(cannot connect)";
  }
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  // Writes and reads interleaved, so that neither side's buffers fill up.
  size_t sent = 0;
  std::array<char, 65536> buf{};
  while (true) {
    if (sent < bytes.size()) {
      ssize_t n = ::send(fd, bytes.data() + sent, std::min<size_t>(16384, bytes.size() - sent), MSG_NOSIGNAL);
      if (n <= 0) {
        break;
      }
      sent += static_cast<size_t>(n);
      if (sent == bytes.size()) {
        ::shutdown(fd, SHUT_WR);
      }
    }
    ssize_t r = ::recv(fd, buf.data(), buf.size(), sent < bytes.size() ? MSG_DONTWAIT : 0);
    if (r > 0) {
      got.append(buf.data(), static_cast<size_t>(r));
    } else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
      break;
    }
  }
  ::close(fd);
  return got;
}

// Creates pod `box` (container main, sleeping) through kubeconfig `kc` and waits until it runs.
void createBox(const fs::path& kc) {
  Json pod = {{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata", {{"name", "box"}, {"namespace", "default"}}},
              {"spec", {{"containers", {{{"name", "main"}, {"image", "busybox"}, {"command", {"sleep", "infinity"}}}}}}}};
  ASSERT_EQ(kubectl(kc, {"create", "-f", "-"}, pod.dump()).exit_code, 0);
  ASSERT_TRUE(waitFor([&] { return kubectl(kc, {"get", "pod", "box", "-o", "jsonpath={.status.phase}"}).out == "Running"; },
                      20s, "the pod Running"));
}

// Writes DIR/payload.txt (300 KB of text) and returns its content.
std::string makePayload(const fs::path& dir) {
  std::string payload;
  for (int i = 0; payload.size() < 300 * 1024; ++i) {
    payload += "line " + std::to_string(i) + " of a file copied through the hub\n";
  }
  EXPECT_TRUE(writeFileAtomic(dir / "payload.txt", payload, 0644));
  return payload;
}

// Through kubeconfig `kc` with kubectl `k` (names made unique by `v`), to pod `box` (container
// main, Running): exec (output, error output, exit code), exec -i (stdin and its end), cp of the
// file `payload` (past any window an unflowed SPDY stream would hit) and back, an unknown command,
// port-forward to the echo server at `port` in the pod, logs and logs -f.
void exercisePodStreams(const KubectlOptions& k, const fs::path& kc, const fs::path& dir, const std::string& v,
                        const std::string& payload, const std::string& port) {
  // exec: output, error output and the exit code.
  auto ran = kubectl(k, kc, {"exec", "box", "--", "sh", "-c", "echo out-" + v + "; echo err >&2; exit 3"});
  EXPECT_EQ(ran.exit_code, 3) << ran.err;
  EXPECT_EQ(ran.out, "out-" + v + "\n");
  EXPECT_NE(ran.err.find("err\n"), std::string::npos) << ran.err;
  // exec -i: stdin and its end.
  auto cat = kubectl(k, kc, {"exec", "-i", "box", "--", "cat"}, "hello " + v);
  EXPECT_EQ(cat.exit_code, 0) << cat.err;
  EXPECT_EQ(cat.out, "hello " + v);
  // cp in, then read back.
  auto cp = kubectl(k, kc, {"cp", (dir / "payload.txt").string(), "box:copied-" + v + ".txt"});
  EXPECT_EQ(cp.exit_code, 0) << cp.err;
  auto back = kubectl(k, kc, {"exec", "box", "--", "cat", "copied-" + v + ".txt"});
  EXPECT_TRUE(back.out == payload) << back.out.size() << " bytes back of " << payload.size() << "; " << back.err;
  // An unknown command: kubectl says so.
  auto missing = kubectl(k, kc, {"exec", "box", "--", "no-such-command-" + v});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.err.find("executable file not found"), std::string::npos) << missing.err;
  // port-forward to the echo server "in the pod": two connections over one forward, each
  // with its own bytes both ways and a half-close.
  Process pf({k.binary, "--kubeconfig", kc.string(), "--cache-dir", k.cache_dir.string(), "port-forward", "pod/box",
              ":" + port},
             dir / ("pf-" + v + ".log"));
  std::smatch m;
  std::string pf_log;
  ASSERT_TRUE(waitFor([&] {
    pf_log = pf.log();
    return std::regex_search(pf_log, m, std::regex("Forwarding from 127\\.0\\.0\\.1:([0-9]+)"));
  }, 20s, "port-forward listening")) << pf.log();
  const uint16_t local = static_cast<uint16_t>(std::stoi(m[1]));
  for (const std::string& sent : {"small " + v, payload}) {
    std::string echoed = echoThrough(local, sent);
    EXPECT_TRUE(echoed == sent) << echoed.size() << " bytes echoed of " << sent.size() << "\n" << pf.log();
  }
  pf.signal(SIGTERM);
  pf.wait(10s);
  // logs: what was appended to the container's log, then -f follows what comes next.
  ASSERT_EQ(kubectl(k, kc, {"exec", "box", "--", "sh", "-c", "echo first-" + v + " >> main.log"}).exit_code, 0);
  auto logs = kubectl(k, kc, {"logs", "box"});
  EXPECT_NE(logs.out.find("first-" + v + "\n"), std::string::npos) << logs.out << logs.err;
  Process follow({k.binary, "--kubeconfig", kc.string(), "--cache-dir", k.cache_dir.string(), "logs", "-f", "box",
                  "--tail", "1"},
                 dir / ("logs-" + v + ".log"));
  ASSERT_TRUE(waitFor([&] { return follow.log().find("first-" + v) != std::string::npos; }, 20s, "logs -f"))
      << follow.log();
  ASSERT_EQ(kubectl(k, kc, {"exec", "box", "--", "sh", "-c", "echo next-" + v + " >> main.log"}).exit_code, 0);
  EXPECT_TRUE(waitFor([&] { return follow.log().find("next-" + v) != std::string::npos; }, 20s,
                      "logs -f to show the next line"))
      << follow.log();
  follow.signal(SIGTERM);
  follow.wait(10s);
}

class Tunnel : public ControlPlanes {
 protected:
  // edge-1 runs k3s control plane cp1 (with its node agent for TunnelPods: pods run, exec,
  // logs), and the user's kubeconfig reaches it through the hub.
  void SetUp() override {
    ControlPlanes::SetUp();
    if (IsSkipped() || HasFatalFailure()) {
      return;
    }
    ASSERT_TRUE(writeFileAtomic(dir_.path() / "agent.yaml",
                                std::string("k3s_node_agent: ") + (node_agent_ ? "true" : "false") + "\n", 0644));
    startAgent(agentArgs());
    ASSERT_EQ(kflex({"create", "--no-wait", "cp1", "-t", "k3s", "--agent", "edge-1"}).exit_code, 0);
    ASSERT_TRUE(waitFor([&] { return ready("cp1") == "True/Available" && !field("cp1", ".status.secretRef.name").empty(); },
                        30s, "cp1 Ready"))
        << field("cp1", ".status") << "\n" << agent_->log() << hub_->log();
    user_ = dir_.path() / "user.kubeconfig";
    ASSERT_EQ(user({"init", "--hub-kubeconfig", hub_->kubeconfig().string()}).exit_code, 0);
    auto ctx = user({"ctx", "cp1"});
    ASSERT_EQ(ctx.exit_code, 0) << ctx.err;
    proxy_ = kubectl(user_, {"config", "view", "--raw", "-o",
                             "jsonpath={.clusters[?(@.name=='cp1-cluster')].cluster.proxy-url}"})
                 .out;
    ASSERT_EQ(proxy_.rfind("https://tunnel:", 0), 0u) << proxy_;
  }
  CommandResult user(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {(binDir() / "kflex").string(), "--kubeconfig", user_.string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv);
  }
  // The token in the user's proxy-url (ID.SECRET).
  std::string token() const { return proxy_.substr(15, 23); }
  // A CONNECT to the hub, raw; the whole answer (the hub closes a refused one).
  std::string connect(const std::string& authority, const std::string& proxy_authorization) {
    RawTls t;
    if (!t.connect(hub_->url(), hub_->kubeconfig())) {
      return "";
    }
    std::string req = "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n";
    if (!proxy_authorization.empty()) {
      req += "Proxy-Authorization: " + proxy_authorization + "\r\n";
    }
    t.write(req + "\r\n");
    return t.readAll(20s);
  }
  std::string basic(const std::string& token) { return "Basic " + base64Encode("tunnel:" + token); }
  // Makes a BootstrapToken as an admin would; returns ID.SECRET.
  std::string makeToken(const std::string& id, const Json& spec_extra) {
    Json spec = {{"secret", "0123456789abcdef"}};
    spec.update(spec_extra);
    Json tok = {{"apiVersion", "tenancy.kflex.kubestellar.org/v1alpha1"},
                {"kind", "BootstrapToken"},
                {"metadata", {{"name", id}}},
                {"spec", spec}};
    auto r = kubectl(hub_->kubeconfig(), {"create", "-f", "-"}, tok.dump());
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return id + ".0123456789abcdef";
  }

  // Creates a ConfigMap through the user's context. (With -f: kubectl 1.32+ sends a typed object
  // such as `create configmap` makes as protobuf, which the stand-in, like a CRD server, refuses.)
  CommandResult createConfigMap(const KubectlOptions& k, const std::string& name, const std::string& value = "") {
    Json cm = {{"apiVersion", "v1"}, {"kind", "ConfigMap"}, {"metadata", {{"name", name}}}, {"data", {{"k", value}}}};
    return kubectl(k, user_, {"create", "-f", "-"}, cm.dump());
  }

  std::vector<std::string> agentArgs() const { return {"--config", (dir_.path() / "agent.yaml").string()}; }

  bool node_agent_ = false;
  fs::path user_;
  std::string proxy_;
};

// The same with k3s's node agent: on the host's network, its kubelet's ports are fixed, so these
// run one at a time (HOST_WIDE in tests/CMakeLists.txt).
class TunnelPods : public Tunnel {
 protected:
  void SetUp() override {
    node_agent_ = true;
    Tunnel::SetUp();
  }
};

// Every kubectl the image ships, each with its own empty discovery cache, reads and writes cp1
// through the hub; a watch through the hub sees a write.
TEST_F(Tunnel, EveryShippedKubectlReadsWritesAndWatchesThroughTheHub) {
  std::vector<std::string> kubectls = versionedKubectls();
  kubectls.push_back(kubectlPath());
  for (const auto& bin : kubectls) {
    SCOPED_TRACE(bin);
    std::string v = fs::path(bin).filename().string();
    KubectlOptions k{bin, dir_.path() / ("cache-" + v)};
    std::string cm = "cm-" + std::regex_replace(v, std::regex("[^a-z0-9]"), "-");
    auto made = createConfigMap(k, cm, v);
    EXPECT_EQ(made.exit_code, 0) << made.err;
    auto got = kubectl(k, user_, {"get", "configmap", cm, "-o", "jsonpath={.data.k}"});
    EXPECT_EQ(got.out, v) << got.err;
    auto all = kubectl(k, user_, {"get", "configmaps", "-o", "name"});
    EXPECT_NE(all.out.find("configmap/" + cm), std::string::npos) << all.err;
  }
  // A watch: a long-lived stream through hub and agent.
  Process watch({kubectlPath(), "--kubeconfig", user_.string(), "--cache-dir", (dir_.path() / "cache-watch").string(),
                 "get", "configmaps", "--watch", "-o", "name"},
                dir_.path() / "watch.log");
  ASSERT_TRUE(waitFor([&] { return watch.log().find("configmap/cm-kubectl") != std::string::npos; }, 20s,
                      "the watch's first list"))
      << watch.log();
  ASSERT_EQ(createConfigMap({}, "while-watching").exit_code, 0);
  EXPECT_TRUE(waitFor([&] { return watch.log().find("configmap/while-watching") != std::string::npos; }, 20s,
                      "the watch to see the write"))
      << watch.log();
  watch.signal(SIGTERM);
  watch.wait(10s);
  // The hub logged each stream, never the token.
  EXPECT_NE(hub_->log().find("msg=tunnel controlPlane=cp1 agent=edge-1"), std::string::npos);
  EXPECT_EQ(hub_->log().find(token().substr(7)), std::string::npos) << "the token's secret is never logged";
}

// What needs an upgraded or long-lived connection, through the hub with every kubectl the image
// ships: exec (SPDY for all; WebSocket v5 for 1.33, whose client speaks it through an HTTPS proxy),
// exec with stdin, its exit code, cp of 300 KB (past any window an unflowed SPDY stream would
// hit), port-forward (to the control plane's own API port, as a pod's port: a TLS round trip
// inside the forwarded connection), logs and logs -f.
TEST_F(TunnelPods, ExecCpPortForwardAndLogsThroughTheHubWithEveryKubectl) {
  createBox(user_);
  EchoServer echo(dir_.path() / "echo.log");
  const std::string echo_port = echo.port();
  const std::string payload = makePayload(dir_.path());

  std::vector<std::string> kubectls = versionedKubectls();
  kubectls.push_back(kubectlPath());
  // Only kubectl 1.33's WebSocket client speaks through an HTTPS proxy; the others use SPDY
  // (1.30.4+ after failing locally to use WebSocket): counted in the stand-in's log.
  auto websockets = [&] {
    auto text = readFile(cpDir("cp1") / "logs" / "k3s.log");
    std::string t = text ? text.value() : "";
    size_t n = 0;
    for (size_t at = t.find("websocket v5.channel.k8s.io"); at != std::string::npos;
         at = t.find("websocket v5.channel.k8s.io", at + 1)) {
      ++n;
    }
    return n;
  };
  for (const auto& bin : kubectls) {
    SCOPED_TRACE(bin);
    std::string v = std::regex_replace(fs::path(bin).filename().string(), std::regex("[^a-z0-9]"), "-");
    const size_t ws_before = websockets();
    exercisePodStreams({bin, dir_.path() / ("cache-" + v)}, user_, dir_.path(), v, payload, echo_port);
    EXPECT_EQ(websockets() > ws_before, v.find("1-33") != std::string::npos);
  }
}

TEST_F(Tunnel, RefusalsSayWhyAndATokenReachesOnlyItsControlPlanes) {
  const std::string cp1 = "cp1.controlplanes.kflex:6443";
  // No credentials, or bad ones: 407 with a challenge, before anything is looked up.
  auto none = connect(cp1, "");
  EXPECT_EQ(none.rfind("HTTP/1.1 407 ", 0), 0u) << none;
  EXPECT_NE(none.find("Proxy-Authenticate: Basic"), std::string::npos) << none;
  EXPECT_EQ(connect(cp1, basic("abcdef.0123456789abcdef")).rfind("HTTP/1.1 407 ", 0), 0u);
  EXPECT_EQ(connect(cp1, "Basic !!!").rfind("HTTP/1.1 407 ", 0), 0u);
  EXPECT_EQ(connect(cp1, "Bearer " + token()).rfind("HTTP/1.1 407 ", 0), 0u);
  // A token for enrollment is no tunnel token.
  std::string enroll = makeToken("enroll", {{"usages", {"enroll"}}});
  EXPECT_EQ(connect(cp1, basic(enroll)).rfind("HTTP/1.1 407 ", 0), 0u);
  // cp1's token opens nothing else: another control plane, or any other address.
  auto other = connect("cp2.controlplanes.kflex:6443", basic(token()));
  EXPECT_EQ(other.rfind("HTTP/1.1 403 ", 0), 0u) << other;
  EXPECT_NE(other.find("not for control plane cp2"), std::string::npos) << other;
  for (const char* where : {"127.0.0.1:22", "localhost:6443", "cp1.controlplanes.kflex.evil:6443", "[::1]:6443"}) {
    auto r = connect(where, basic(token()));
    EXPECT_EQ(r.rfind("HTTP/1.1 403 ", 0), 0u) << where << ": " << r;
  }
  // A token for a control plane that does not exist: 404.
  std::string ghost = makeToken("ghost1", {{"usages", {"tunnel"}}, {"controlPlanes", {"ghost"}}});
  auto missing = connect("ghost.controlplanes.kflex:6443", basic(ghost));
  EXPECT_EQ(missing.rfind("HTTP/1.1 404 ", 0), 0u) << missing;
  // A tunnel token names its control planes.
  Json bad = {{"apiVersion", "tenancy.kflex.kubestellar.org/v1alpha1"},
              {"kind", "BootstrapToken"},
              {"metadata", {{"name", "nocps1"}}},
              {"spec", {{"secret", "0123456789abcdef"}, {"usages", {"tunnel"}}}}};
  auto refused = kubectl(hub_->kubeconfig(), {"create", "-f", "-"}, bad.dump());
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.err.find("spec.controlPlanes"), std::string::npos) << refused.err;

  // The agent offline: 503 naming it and when it was last seen, also in kubectl's error.
  agent_->signal(SIGTERM);
  ASSERT_EQ(agent_->wait(20s), 0) << agent_->log();
  auto offline = connect(cp1, basic(token()));
  EXPECT_TRUE(std::regex_search(offline, std::regex("^HTTP/1.1 503 agent edge-1 is not connected to this hub \\(last seen "
                                                    "[0-9T:-]+Z")))
      << offline;
  auto failed = kubectl(user_, {"get", "--raw", "/readyz"});
  EXPECT_NE(failed.exit_code, 0);
  EXPECT_NE(failed.err.find("agent edge-1 is not connected"), std::string::npos) << failed.err;
  // Back: new requests go over its new link.
  startAgent({}, "edge-1-again.log");
  EXPECT_TRUE(waitFor([&] { return kubectl(user_, {"get", "--raw", "/readyz"}).out == "ok"; }, 30s,
                      "cp1 through the hub again"))
      << agent_->log();

  // A revoked token stops working at once.
  auto list = user({"token", "list"});
  EXPECT_NE(list.out.find(token().substr(0, 6)), std::string::npos) << list.out;
  ASSERT_EQ(user({"token", "delete", token().substr(0, 6)}).exit_code, 0);
  auto revoked = kubectl(user_, {"get", "--raw", "/readyz"});
  EXPECT_NE(revoked.exit_code, 0);
  EXPECT_NE(revoked.err.find("unknown, expired or not for the tunnel"), std::string::npos) << revoked.err;
  // kflex ctx makes a new one.
  ASSERT_EQ(user({"ctx", "cp1"}).exit_code, 0);
  EXPECT_EQ(kubectl(user_, {"get", "--raw", "/readyz"}).out, "ok");
}

// An agent restart ends the streams over its link with an error; new ones go over the next link.
// The kubeconfig in cp1's secret reaches it through the hub (key config), the agent's own beside
// it (config-direct); its token is the hub's, stable, remade when revoked, deleted with cp1.
TEST_F(Tunnel, TheSecretsKubeconfigGoesThroughTheHubAndTheDirectOneIsBesideIt) {
  auto secretKey = [&](const std::string& key) {
    auto r = kubectl(hub_->kubeconfig(), {"get", "secret", "-n", "cp1-system", "k3s-config", "-o",
                                          "jsonpath={.data." + key + "}"});
    auto text = base64Decode(r.out);
    EXPECT_TRUE(text.has_value() && !text->empty()) << key << ": " << r.err;
    fs::path file = dir_.path() / (key + ".kubeconfig");
    EXPECT_TRUE(writeFileAtomic(file, text ? text.value() : std::string(), 0600));
    return file;
  };
  auto proxyOf = [&](const fs::path& kc) {
    return kubectl(kc, {"config", "view", "--raw", "-o", "jsonpath={.clusters[0].cluster.proxy-url}"}).out;
  };
  // The hub made its token when the kubeconfig was stored, before anyone read it.
  auto listed = user({"token", "list"});
  EXPECT_NE(listed.out.find("the kubeconfig secret of control plane cp1"), std::string::npos) << listed.out;
  fs::path through = secretKey("config");
  fs::path direct = secretKey("config-direct");
  const std::string proxy = proxyOf(through);
  ASSERT_EQ(proxy.rfind("https://tunnel:", 0), 0u) << proxy;
  EXPECT_EQ(proxyOf(direct), "");
  EXPECT_EQ(kubectl(through, {"get", "--raw", "/readyz"}).out, "ok");
  EXPECT_EQ(kubectl(direct, {"get", "--raw", "/readyz"}).out, "ok");
  EXPECT_NE(hub_->log().find("msg=tunnel controlPlane=cp1 agent=edge-1 token_id=" + proxy.substr(15, 6)),
            std::string::npos)
      << hub_->log();
  EXPECT_EQ(proxyOf(secretKey("config")), proxy) << "the secret's token is made once";
  // Revoked: that kubeconfig stops working, and the secret comes with a new token.
  ASSERT_EQ(user({"token", "delete", proxy.substr(15, 6)}).exit_code, 0);
  auto refused = kubectl(through, {"get", "--raw", "/readyz"});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.err.find("is unknown, expired or not for the tunnel"), std::string::npos) << refused.err;
  through = secretKey("config");
  const std::string renewed = proxyOf(through);
  EXPECT_NE(renewed, proxy);
  EXPECT_EQ(kubectl(through, {"get", "--raw", "/readyz"}).out, "ok");
  // kflex ctx --direct takes the agent's own.
  ASSERT_EQ(user({"ctx", "cp1", "--direct"}).exit_code, 0);
  EXPECT_EQ(kubectl(user_, {"config", "view", "--raw", "--minify", "-o", "jsonpath={.clusters[0].cluster.proxy-url}"}).out,
            "");
  // The token goes with the control plane.
  ASSERT_EQ(kflex({"delete", "cp1"}).exit_code, 0);
  EXPECT_TRUE(waitFor([&] {
    return kubectl(hub_->kubeconfig(), {"get", "bootstraptokens", renewed.substr(15, 6)}).err.find("NotFound") !=
           std::string::npos;
  }, 20s, "the secret's token to be deleted"))
      << hub_->log();
}

TEST_F(TunnelPods, AnAgentRestartEndsItsStreamsAndTheNextLinkCarriesNewOnes) {
  ASSERT_EQ(createConfigMap({}, "before-watch").exit_code, 0);
  Process watch({kubectlPath(), "--kubeconfig", user_.string(), "--cache-dir", (dir_.path() / "cache-watch").string(),
                 "get", "configmaps", "--watch", "-o", "name"},
                dir_.path() / "watch.log");
  ASSERT_TRUE(waitFor([&] { return watch.log().find("configmap/before-watch") != std::string::npos; }, 20s,
                      "the watch to start"))
      << watch.log();
  // And a logs -f, an upgraded exec's kin: a long response streamed through the tunnel.
  createBox(user_);
  ASSERT_EQ(kubectl(user_, {"exec", "box", "--", "sh", "-c", "echo before >> main.log"}).exit_code, 0);
  Process follow({kubectlPath(), "--kubeconfig", user_.string(), "--cache-dir", (dir_.path() / "cache-watch").string(),
                  "logs", "-f", "box"},
                 dir_.path() / "follow.log");
  ASSERT_TRUE(waitFor([&] { return follow.log().find("before") != std::string::npos; }, 20s, "logs -f")) << follow.log();
  agent_->signal(SIGTERM);
  ASSERT_EQ(agent_->wait(20s), 0) << agent_->log();
  // (kubectl ends a watch whose connection ends; whether with an error depends on its version.)
  EXPECT_TRUE(waitFor([&] { return !watch.running(); }, 20s, "the watch to end with the link")) << watch.log();
  EXPECT_TRUE(waitFor([&] { return !follow.running(); }, 20s, "logs -f to end with the link")) << follow.log();
  startAgent(agentArgs(), "edge-1-again.log");
  CommandResult last;
  EXPECT_TRUE(waitFor(
      [&] {
        last = kubectl(user_, {"get", "--raw", "/readyz"});
        return last.out == "ok";
      },
      30s, "cp1 through the hub again"))
      << last.err << "\n" << agent_->log() << "\n" << hub_->log();
}

// A stream whose client stops reading stops at its window; the agent's own messages still go at
// once. Measured: how long a new control plane takes to be Synced (a desired-state delta to the
// agent and its report back) with a stalled stream on the same link, against the same before.
TEST_F(Tunnel, AStalledStreamDoesNotHoldUpTheDesiredState) {
  // About 8 MB of ConfigMaps, more than a window and the sockets' buffers hold.
  std::string blob(400 * 1000, 'x');
  for (int i = 0; i < 20; ++i) {
    Json cm = {{"apiVersion", "v1"}, {"kind", "ConfigMap"}, {"metadata", {{"name", "big-" + std::to_string(i)}}},
               {"data", {{"blob", blob}}}};
    ASSERT_EQ(kubectl(user_, {"create", "-f", "-"}, cm.dump()).exit_code, 0);
  }
  auto synced = [&](const std::string& cp) {
    auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(kflex({"create", "--no-wait", cp, "-t", "k3s", "--agent", "edge-1"}).exit_code, 0);
    bool ok = waitFor([&] { return !field(cp, ".status.conditions[?(@.type=='Synced')].status").empty(); }, 20s,
                      cp + " Synced");
    EXPECT_TRUE(ok) << field(cp, ".status");
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  };
  double before = synced("before-stall");
  // A watch that replays them all, whose client is stopped: its stream fills its window and stops.
  Process watch({kubectlPath(), "--kubeconfig", user_.string(), "--cache-dir", (dir_.path() / "cache-stall").string(),
                 "get", "--raw", "/api/v1/namespaces/default/configmaps?watch=1"},
                dir_.path() / "stalled.log");
  ASSERT_TRUE(waitFor([&] { return watch.log().size() > 1000; }, 20s, "the watch to start")) << watch.log().substr(0, 500);
  watch.signal(SIGSTOP);
  std::this_thread::sleep_for(500ms);
  double during = synced("during-stall");
  std::cout << "[ MEASURED ] a new control plane Synced in " << before << " ms before, " << during
            << " ms with a stalled stream on the same link\n";
  EXPECT_LT(during, before + 2000) << "the stalled stream held up the link";
  // Other streams go on meanwhile.
  EXPECT_EQ(kubectl(user_, {"get", "--raw", "/readyz"}).out, "ok");
  watch.signal(SIGCONT);
  watch.signal(SIGTERM);
  watch.wait(10s);
}

// Two hub replicas on one PostgreSQL; the agent's link is on replica 0, the user's kubeconfig
// names replica 1: replica 1 passes the CONNECT on to replica 0 (the Agent's status.hubPeer),
// and refusals come back as replica 0 made them.
TEST_F(ControlPlanes, ATunnelOnAReplicaWithoutTheAgentsLinkGoesToTheOneWithIt) {
  PostgresServer pg;
  if (!pg.problem().empty()) {
    GTEST_SKIP() << pg.problem();
  }
  fs::path key = dir_.path() / "secrets.key";
  ASSERT_TRUE(tls::SecretBox::openOrCreate(key));
  std::vector<std::string> args = {"--config", (dir_.path() / "hub.yaml").string(), "--datastore", pg.dsn(),
                                   "--datastore-password-file", pg.passwordFile().string(), "--secrets-key-file",
                                   key.string()};
  hub_->stop();
  hub_ = std::make_unique<HubProcess>(dir_.path() / "r0", args);
  ASSERT_TRUE(hub_->ok()) << hub_->log();
  HubProcess r1(dir_.path() / "r1", args);
  ASSERT_TRUE(r1.ok()) << r1.log();
  auto made = kflex({"token", "create"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  auto join = agentJoinIn(made.out);
  ASSERT_TRUE(join);
  token_ = join->token;
  pin_ = join->pin;
  startAgent();  // linked to replica 0
  ASSERT_EQ(kflex({"create", "--no-wait", "cp1", "-t", "k3s", "--agent", "edge-1"}).exit_code, 0);
  ASSERT_TRUE(waitFor([&] { return ready("cp1") == "True/Available" && !field("cp1", ".status.secretRef.name").empty(); },
                      30s, "cp1 Ready"))
      << field("cp1", ".status") << "\n" << agent_->log();
  EXPECT_EQ(kubectl(hub_->kubeconfig(), {"get", "agent", "edge-1", "-o", "jsonpath={.status.hubPeer}"}).out,
            hub_->url());
  // A user of replica 1.
  fs::path user_kc = dir_.path() / "user.kubeconfig";
  auto as_user = [&](std::vector<std::string> a) {
    std::vector<std::string> argv = {(binDir() / "kflex").string(), "--kubeconfig", user_kc.string()};
    argv.insert(argv.end(), a.begin(), a.end());
    return run(argv);
  };
  ASSERT_EQ(as_user({"init", "--hub-kubeconfig", r1.kubeconfig().string()}).exit_code, 0);
  auto ctx = as_user({"ctx", "cp1"});
  ASSERT_EQ(ctx.exit_code, 0) << ctx.err;
  std::string proxy = kubectl(user_kc, {"config", "view", "--raw", "--minify", "-o",
                                        "jsonpath={.clusters[0].cluster.proxy-url}"}).out;
  ASSERT_NE(proxy.find(r1.url().substr(8)), std::string::npos) << proxy;
  auto readyz = kubectl(user_kc, {"get", "--raw", "/readyz"});
  EXPECT_EQ(readyz.out, "ok") << readyz.err << "\n" << r1.log();
  EXPECT_NE(r1.log().find("forwarded_to=" + hub_->url()), std::string::npos) << r1.log();
  Json cm = {{"apiVersion", "v1"}, {"kind", "ConfigMap"}, {"metadata", {{"name", "via-replica-1"}}}};
  EXPECT_EQ(kubectl(user_kc, {"create", "-f", "-"}, cm.dump()).exit_code, 0);
  EXPECT_EQ(kubectl(user_kc, {"get", "configmap", "via-replica-1", "-o", "name"}).out, "configmap/via-replica-1\n");
  // The replica with the link gone: a clear 503 naming it, not a hang.
  std::string r0_url = hub_->url();
  hub_->stop();
  auto gone = kubectl(user_kc, {"get", "--raw", "/readyz", "--request-timeout", "20s"});
  EXPECT_NE(gone.exit_code, 0);
  EXPECT_NE(gone.err.find("is linked to hub replica " + r0_url + ", which this replica cannot reach"),
            std::string::npos)
      << gone.err;
  // A revoked token is refused there too.
  std::string id = proxy.substr(proxy.find("tunnel:") + 7, 6);
  ASSERT_EQ(as_user({"token", "delete", id}).exit_code, 0);
  auto refused = kubectl(user_kc, {"get", "--raw", "/readyz"});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.err.find("unknown, expired or not for the tunnel"), std::string::npos) << refused.err;
}

// The edge site this is for: the agent in a network namespace of its own, joined to the hub's
// host by a veth pair, its control planes on that namespace's loopback, so that nothing on the
// host can reach the control plane's address; only the agent's own link to the hub goes out.
// kubectl reaches the control plane through the hub.
TEST_F(ControlPlanes, AnEdgeHostWithNoInboundRouteIsReachedThroughTheHub) {
  VethNamespace edge("u", 214);
  if (!edge.unavailable().empty()) {
    GTEST_SKIP() << edge.unavailable();
  }
  ASSERT_EQ(edge.problem(), "");
  // The hub on the host's end of the pair (same data: the same CA and token).
  hub_->stop();
  hub_ = std::make_unique<HubProcess>(dir_.path() / "hub",
                                      std::vector<std::string>{"--config", (dir_.path() / "hub.yaml").string(),
                                                               "--listen", edge.hostAddress() + ":0"});
  ASSERT_TRUE(hub_->ok()) << hub_->log();
  // Its control planes listen on the edge host's own loopback: nothing outside it can connect,
  // as behind NAT (the pair alone would be a route to the agent's address).
  // With its node agent (pods) k3s refuses a loopback node IP, so they listen on an address of the
  // edge host's own that this host has no route to, as a LAN address behind NAT.
  // k3s finds its node IP by the default route, which an edge host has (to its NAT gateway).
  const std::string site = edge.siteAddress();
  edge.defaultRoute();
  ASSERT_EQ(edge.problem(), "");
  ASSERT_TRUE(writeFileAtomic(dir_.path() / "agent.yaml", "k3s_node_agent: true\n", 0644));
  startAgent({"--advertise-address", site, "--config", (dir_.path() / "agent.yaml").string()}, "edge-1.log",
             edge.exec());
  ASSERT_EQ(kflex({"create", "--no-wait", "cp1", "-t", "k3s", "--agent", "edge-1"}).exit_code, 0);
  ASSERT_TRUE(waitFor([&] { return ready("cp1") == "True/Available" && !field("cp1", ".status.secretRef.name").empty(); },
                      30s, "cp1 Ready"))
      << field("cp1", ".status") << "\n" << slurp(cpDir("cp1") / "logs" / "k3s.log") << agent_->log();
  fs::path user_kc = dir_.path() / "user.kubeconfig";
  std::vector<std::string> kflex_user = {(binDir() / "kflex").string(), "--kubeconfig", user_kc.string()};
  auto with = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = kflex_user;
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv);
  };
  ASSERT_EQ(with({"init", "--hub-kubeconfig", hub_->kubeconfig().string()}).exit_code, 0);
  // Its own address is not routed to the edge host from here (no traffic is sent to find out:
  // without that route it would leave the machine) ...
  ASSERT_EQ(with({"ctx", "cp1", "--direct"}).exit_code, 0);
  EXPECT_EQ(field("cp1", ".status.endpoint").rfind("https://" + site + ":", 0), 0u) << field("cp1", ".status.endpoint");
  auto route = run({"ip", "route", "get", site});
  EXPECT_EQ(route.out.find("dev " + edge.hostInterface()), std::string::npos) << route.out;
  // ... the hub reaches it over the agent's link.
  auto ctx = with({"ctx", "cp1"});
  ASSERT_EQ(ctx.exit_code, 0) << ctx.err;
  auto through = kubectl(user_kc, {"get", "--raw", "/readyz"});
  EXPECT_EQ(through.out, "ok") << through.err << "\n" << hub_->log();
  Json cm = {{"apiVersion", "v1"}, {"kind", "ConfigMap"}, {"metadata", {{"name", "behind-nat"}}}};
  auto made = kubectl(user_kc, {"create", "-f", "-"}, cm.dump());
  EXPECT_EQ(made.exit_code, 0) << made.err;
  EXPECT_EQ(kubectl(user_kc, {"get", "configmap", "behind-nat", "-o", "name"}).out, "configmap/behind-nat\n");
  // A watch, exec, cp, port-forward (into the edge host's own loopback) and logs -f.
  Process watch({kubectlPath(), "--kubeconfig", user_kc.string(), "get", "configmaps", "--watch", "-o", "name"},
                dir_.path() / "watch.log");
  ASSERT_TRUE(waitFor([&] { return watch.log().find("configmap/behind-nat") != std::string::npos; }, 20s,
                      "the watch's first list"))
      << watch.log();
  cm["metadata"]["name"] = "while-watching";
  ASSERT_EQ(kubectl(user_kc, {"create", "-f", "-"}, cm.dump()).exit_code, 0);
  EXPECT_TRUE(waitFor([&] { return watch.log().find("configmap/while-watching") != std::string::npos; }, 20s,
                      "the watch to see the write"))
      << watch.log();
  watch.signal(SIGTERM);
  watch.wait(10s);
  createBox(user_kc);
  EchoServer echo(dir_.path() / "echo.log", edge.exec());
  exercisePodStreams({kubectlPath(), dir_.path() / "cache-edge"}, user_kc, dir_.path(), "edge", makePayload(dir_.path()),
                     echo.port());
}

}  // namespace
}  // namespace kflex::test
