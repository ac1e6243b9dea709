// SPDX-License-Identifier: Apache-2.0
// Real kflex-agent processes against a real kflex-hub: enrollment, the link, leases, revocation,
// restarts, and bad input on the link.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <regex>
#include <set>
#include <thread>

#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include "agent/state/agent_state.hpp"
#include "hub/agents/placement.hpp"
#include "shared/common/util.hpp"
#include "shared/config/kubeconfig.hpp"
#include "shared/net/https_client.hpp"
#include "shared/protocol/link.hpp"
#include "shared/tls/context.hpp"
#include "shared/tls/pki.hpp"
#include "tests/integration/veth_namespace.hpp"
#include "tests/support/test_support.hpp"

namespace kflex::test {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;
namespace websocket = beast::websocket;
constexpr const char* kCps = "/apis/tenancy.kflex.kubestellar.org/v1alpha1/controlplanes";

class Agents : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(writeFileAtomic(dir_.path() / "hub.yaml",
                                "agent_lease_renew_seconds: 1\nagent_lease_duration_seconds: 3\n", 0644));
    startHub("127.0.0.1:0");
  }
  void startHub(const std::string& listen) {
    hub_ = std::make_unique<HubProcess>(dir_.path() / "hub",
                                        std::vector<std::string>{"--config", (dir_.path() / "hub.yaml").string(),
                                                                 "--listen", listen});
    ASSERT_TRUE(hub_->ok()) << hub_->log();
  }
  CommandResult kflex(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {(binDir() / "kflex").string(), "--kubeconfig", hub_->kubeconfig().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv);
  }
  // The token and CA pin from `kflex token create`.
  struct Token {
    std::string token;
    std::string pin;
  };
  Token newToken(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"token", "create"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = kflex(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    auto join = agentJoinIn(r.out);
    EXPECT_TRUE(join) << r.out;
    return join ? Token{join->token, join->pin} : Token{};
  }
  std::vector<std::string> agentArgs(const std::string& name, const Token& t, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {(binDir() / "kflex-agent").string(), "run", "--config", "/dev/null",
                                     "--data-dir", (dir_.path() / name).string(), "--hub", hub_->url(),
                                     "--name", name};
    if (!t.token.empty()) {
      // As the printed command does: the token never on a command line.
      fs::path token_file = dir_.path() / (name + ".token");
      EXPECT_TRUE(writeFileAtomic(token_file, t.token + "\n", 0600));
      argv.insert(argv.end(), {"--token-file", token_file.string(), "--ca-cert-hash", t.pin});
    }
    // Hermetic: no program the host may have installed is started; control planes placed
    // here report that their program is missing.
    if (std::find(extra.begin(), extra.end(), "--bin-dir") == extra.end()) {
      argv.insert(argv.end(), {"--bin-dir", (dir_.path() / "no-programs").string()});
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  }
  std::unique_ptr<Process> startAgent(const std::string& name, const Token& t, const std::vector<std::string>& extra = {},
                                      const std::string& log = "") {
    return std::make_unique<Process>(agentArgs(name, t, extra), dir_.path() / (log.empty() ? name + ".log" : log));
  }
  Json agent(const std::string& name) {
    auto r = run({kubectlPath().empty() ? "false" : kubectlPath(), "--kubeconfig", hub_->kubeconfig().string(), "get",
                  "agent", name, "-o", "json"});
    if (r.exit_code != 0) {
      return Json();
    }
    return Json::parse(r.out, nullptr, false);
  }
  std::string ready(const std::string& name) {
    Json a = agent(name);
    if (!a.is_object()) {
      return "<absent>";
    }
    for (const auto& c : a.value("status", Json::object()).value("conditions", Json::array())) {
      if (c.value("type", "") == "Ready") {
        return c.value("status", "") + "/" + c.value("reason", "");
      }
    }
    return "<none>";
  }
  // The names of the control planes an agent's agent.db holds.
  static std::set<std::string> storedNames(const fs::path& data_dir) {
    std::set<std::string> names;
    if (auto st = agent::AgentState::open(data_dir, true)) {
      for (const auto& d : st.value()->desired()) {
        names.insert(d.name);
      }
    }
    return names;
  }
  // A hub with long leases (an agent stays Ready, and placeable, while its process is down), a
  // linked agent edge-1, and cp-a placed on it and stored in its agent.db. Null after a failure.
  std::unique_ptr<Process> edgeWithLongLeaseAndCpA() {
    hub_->stop();
    EXPECT_TRUE(writeFileAtomic(dir_.path() / "hub.yaml",
                                "agent_lease_renew_seconds: 1\nagent_lease_duration_seconds: 60\n", 0644));
    hub_ = std::make_unique<HubProcess>(dir_.path() / "hub",
                                        std::vector<std::string>{"--config", (dir_.path() / "hub.yaml").string(),
                                                                 "--listen", "127.0.0.1:0"});
    if (!hub_->ok()) {
      ADD_FAILURE() << hub_->log();
      return nullptr;
    }
    auto a1 = startAgent("edge-1", newToken());
    bool ok = waitFor([&] { return ready("edge-1") == "True/AgentReady"; }, std::chrono::seconds(20), "edge-1 Ready") &&
              kflex({"create", "--no-wait", "cp-a", "-t", "k3s", "--agent", "edge-1"}).exit_code == 0 &&
              waitFor([&] { return storedNames(dir_.path() / "edge-1").count("cp-a") == 1; }, std::chrono::seconds(10),
                      "cp-a stored");
    if (!ok) {
      ADD_FAILURE() << a1->log() << hub_->log();
      return nullptr;
    }
    return a1;
  }
  void requireKubectl() {
    if (kubectlPath().empty()) {
      GTEST_SKIP() << "kubectl is not installed";
    }
  }
  // Starts the hub again (same data) with another hub.yaml.
  void restartHub(const std::string& yaml) {
    hub_->stop();
    ASSERT_TRUE(writeFileAtomic(dir_.path() / "hub.yaml", yaml, 0644));
    startHub("127.0.0.1:0");
  }
  // Enrolls agent `name` with `kflex-agent enroll`, running no agent: its data dir (pki/ holds
  // its CA bundle, certificate and key, for a FakeAgent).
  fs::path enrolled(const std::string& name) {
    Token t = newToken();
    fs::path data = dir_.path() / name;
    auto r = run({(binDir() / "kflex-agent").string(), "enroll", "--config", (dir_.path() / (name + ".yaml")).string(),
                  "--data-dir", data.string(), "--hub", hub_->url(), "--token", t.token, "--ca-cert-hash", t.pin,
                  "--name", name});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    return data;
  }
  std::unique_ptr<net_client::HttpsClient> api() {
    auto kc = config::Kubeconfig::load(hub_->kubeconfig());
    return std::move(net_client::HttpsClient::create(kc->access().value()).value());
  }
  // A control plane as the hub serves it (null when absent).
  Json controlPlane(const std::string& name) {
    auto r = api()->request(http::verb::get, std::string(kCps) + "/" + name);
    return r && r->status == 200 ? Json::parse(r->body, nullptr, false) : Json();
  }
  // A control plane's Ready condition as "status/reason/message" ("<absent>" when it is gone).
  std::string readyOf(const std::string& name) {
    Json cp = controlPlane(name);
    if (!cp.is_object()) {
      return "<absent>";
    }
    for (const auto& c : cp.value("status", Json::object()).value("conditions", Json::array())) {
      if (c.value("type", "") == "Ready") {
        return c.value("status", "") + "/" + c.value("reason", "") + "/" + c.value("message", "");
      }
    }
    return "<none>";
  }
  // Creates k3s control planes on agent `agent` and waits until they are placed there.
  void createOn(const std::string& agent, const std::vector<std::string>& names) {
    for (const auto& n : names) {
      auto r = kflex({"create", "--no-wait", n, "-t", "k3s", "--agent", agent});
      ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    }
    for (const auto& n : names) {
      ASSERT_TRUE(waitFor([&] { return controlPlane(n).value("status", Json::object()).value("agent", "") == agent; },
                          std::chrono::seconds(10), n + " placed on " + agent))
          << hub_->log();
    }
  }
  // The store's revision (a list's resourceVersion): every write bumps it by one.
  int64_t storeRevision() {
    auto r = api()->request(http::verb::get, kCps);
    Json list = r && r->status == 200 ? Json::parse(r->body, nullptr, false) : Json();
    return list.is_object() ? std::stoll(list["metadata"].value("resourceVersion", "0")) : -1;
  }

  TempDir dir_;
  std::unique_ptr<HubProcess> hub_;
};

// A WebSocket client with an agent's own certificate, speaking whatever the test wants.
class RawLink {
 public:
  RawLink(const std::string& url, const std::string& ca, const std::string& cert, const std::string& key)
      : ctx_(tls::makeClientContext({ca, cert, key}).value()), ws_(ioc_, *ctx_) {
    splitHttpsUrl(url, host_, port_).value();
  }
  // Connects; the HTTP status when the upgrade was declined, 101 on success.
  unsigned connect() { return connectAndReadBody().first; }
  // The same, with the body of a refusal.
  std::pair<unsigned, std::string> connectAndReadBody() {
    unsigned status = 0;
    std::string body;
    net::co_spawn(ioc_, [&]() -> net::awaitable<void> {
      beast::get_lowest_layer(ws_).expires_after(std::chrono::seconds(10));
      std::string err = co_await net_client::openTls(ws_.next_layer(), host_, port_, "hub");
      if (!err.empty()) {
        co_return;
      }
      beast::get_lowest_layer(ws_).expires_never();
      websocket::response_type res;
      auto [ec] = co_await ws_.async_handshake(res, host_ + ":" + port_, protocol::kConnectPath, net::as_tuple(net::use_awaitable));
      status = ec && res.result_int() == 101 ? 0 : res.result_int();
      body = res.body();
    }, net::detached);
    ioc_.run();
    ioc_.restart();
    return {status, body};
  }
  // Sends a frame and reads frames until the hub closes: returns what it said.
  std::string sendAndReadUntilClose(const std::string& frame) {
    std::string said;
    net::co_spawn(ioc_, [&]() -> net::awaitable<void> {
      ws_.text(true);
      auto [wec, wn] = co_await ws_.async_write(net::buffer(frame), net::as_tuple(net::use_awaitable));
      if (wec) {
        said += "|write:" + wec.message();
      }
      beast::flat_buffer buf;
      while (true) {
        auto [ec, n] = co_await ws_.async_read(buf, net::as_tuple(net::use_awaitable));
        if (ec) {
          said += "|closed:" + ec.message();
          co_return;
        }
        said += beast::buffers_to_string(buf.data());
        buf.consume(buf.size());
      }
    }, net::detached);
    ioc_.run_for(std::chrono::seconds(15));
    ioc_.restart();
    return said;
  }

  // Sends a frame, then reads messages until one of type `until` (returned last) or 15 s.
  std::vector<protocol::Envelope> exchange(const std::string& frame, const std::string& until) {
    std::vector<protocol::Envelope> got;
    net::co_spawn(ioc_, [&]() -> net::awaitable<void> {
      ws_.text(true);
      auto [wec, wn] = co_await ws_.async_write(net::buffer(frame), net::as_tuple(net::use_awaitable));
      beast::flat_buffer buf;
      while (!wec) {
        auto [ec, n] = co_await ws_.async_read(buf, net::as_tuple(net::use_awaitable));
        if (ec) {
          co_return;
        }
        auto env = protocol::decode(beast::buffers_to_string(buf.data()));
        buf.consume(buf.size());
        if (env) {
          got.push_back(env.value());
          if (env->type == until) {
            co_return;
          }
        }
      }
    }, net::detached);
    ioc_.run_for(std::chrono::seconds(15));
    ioc_.restart();
    return got;
  }
  // Ends the connection the way a killed process does: no close frame, no close_notify.
  void drop() {
    boost::system::error_code ec;
    beast::get_lowest_layer(ws_).socket().close(ec);
  }

 private:
  net::io_context ioc_;
  std::shared_ptr<ssl::context> ctx_;
  websocket::stream<net_client::TlsStream> ws_;
  std::string host_;
  std::string port_;
};

// An agent's end of the link played by the test, with an enrolled agent's certificate: it sends
// what the test wants while a reader keeps collecting what the hub says (so the hub's answers
// never back up, however fast the test sends). Every wait has a deadline.
class FakeAgent {
 public:
  explicit FakeAgent(const std::string& url, const fs::path& data_dir)
      : ctx_(tls::makeClientContext({readFile(data_dir / "pki" / "ca.crt").value(),
                                     readFile(data_dir / "pki" / "agent.crt").value(),
                                     readFile(data_dir / "pki" / "agent.key").value()})
                 .value()),
        ws_(ioc_, *ctx_),
        state_(std::make_shared<State>()) {
    splitHttpsUrl(url, host_, port_).value();
  }
  ~FakeAgent() {
    boost::system::error_code ec;
    beast::get_lowest_layer(ws_).socket().close(ec);
    ioc_.stop();
  }
  // Opens the link: 101 when the hub took it (the reader runs from then on), else the HTTP status.
  unsigned connect() {
    auto status = std::make_shared<unsigned>(0);
    auto done = std::make_shared<bool>(false);
    net::co_spawn(ioc_, [this, status, done]() -> net::awaitable<void> {
      beast::get_lowest_layer(ws_).expires_after(std::chrono::seconds(10));
      std::string err = co_await net_client::openTls(ws_.next_layer(), host_, port_, "hub");
      if (err.empty()) {
        beast::get_lowest_layer(ws_).expires_never();
        websocket::response_type res;
        auto [ec] = co_await ws_.async_handshake(res, host_ + ":" + port_, protocol::kConnectPath,
                                                 net::as_tuple(net::use_awaitable));
        *status = ec && res.result_int() == 101 ? 0 : res.result_int();
      }
      *done = true;
    }, net::detached);
    run([&] { return *done; }, std::chrono::seconds(15));
    if (*status == 101) {
      net::co_spawn(ioc_, readLoop(ws_, state_), net::detached);
    }
    return *status;
  }
  // Sends one frame.
  bool send(std::string frame) {
    size_t sent = sendEach([frame = std::move(frame), once = true]() mutable -> std::optional<std::string> {
      if (!once) {
        return std::nullopt;
      }
      once = false;
      return frame;
    }, std::chrono::seconds(10));
    return sent == 1;
  }
  // Sends what `next` makes until it says nothing more or the time is up; how many were sent.
  size_t sendEach(std::function<std::optional<std::string>()> next, std::chrono::milliseconds timeout) {
    struct Progress {
      size_t sent = 0;
      bool done = false;
    };
    auto p = std::make_shared<Progress>();
    net::co_spawn(ioc_, [this, p, next = std::move(next)]() -> net::awaitable<void> {
      while (auto frame = next()) {
        ws_.text(true);
        auto [ec, n] = co_await ws_.async_write(net::buffer(*frame), net::as_tuple(net::use_awaitable));
        if (ec) {
          break;
        }
        ++p->sent;
      }
      p->done = true;
    }, net::detached);
    run([&] { return p->done; }, timeout);
    return p->sent;
  }
  // Says hello as an agent with room for many control planes; true once welcomed.
  bool hello(Json body = Json::object()) {
    if (!body.contains("capacity")) {
      body["capacity"] = {{"cpu", "64"}, {"memory", "256Gi"}};
    }
    auto welcome = [](const protocol::Envelope& e) { return e.type == protocol::msg::kWelcome; };
    return send(protocol::encode(protocol::msg::kHello, "1", 0, std::move(body))) &&
           waitFor(welcome, std::chrono::seconds(10));
  }
  // A status report of one Ready condition (what a runtime says); its seq.
  int64_t report(const std::string& cp, const std::string& status, const std::string& reason,
                 const std::string& message) {
    int64_t seq = ++seq_;
    Json ready = {{"type", "Ready"}, {"status", status}, {"reason", reason}, {"message", message}};
    Json body = {{"controlPlane", cp}, {"seq", seq}, {"observedGeneration", 1}, {"conditions", Json::array({ready})}};
    send(protocol::encode(protocol::msg::kStatus, std::to_string(seq), 0, std::move(body)));
    return seq;
  }
  // Waits until a message from the hub satisfies `pred`.
  bool waitFor(const std::function<bool(const protocol::Envelope&)>& pred, std::chrono::milliseconds timeout) {
    size_t seen = 0;
    return run([&] {
      for (; seen < state_->received.size(); ++seen) {
        if (pred(state_->received[seen])) {
          return true;
        }
      }
      return false;
    }, timeout);
  }
  bool acked(int64_t seq, std::chrono::milliseconds timeout) {
    return waitFor([seq](const protocol::Envelope& e) {
      return e.type == protocol::msg::kStatusAck && e.body.value("seq", int64_t(-1)) == seq;
    }, timeout);
  }
  // Handles what has arrived meanwhile (the hub's pings too, so that an idle link stays up).
  void poll() {
    if (ioc_.stopped()) {
      ioc_.restart();
    }
    ioc_.poll();
  }
  // Waits until the hub has closed the link.
  bool closed(std::chrono::milliseconds timeout) {
    return run([&] { return state_->closed; }, timeout);
  }
  // The code and message of the hub's error frame ("" before one came).
  std::string error() const {
    for (const auto& e : state_->received) {
      if (e.type == protocol::msg::kError) {
        return e.body.value("code", "") + ": " + e.body.value("message", "");
      }
    }
    return "";
  }
  // What the hub said, for failure messages.
  std::string said() const {
    std::string out;
    for (const auto& e : state_->received) {
      out += protocol::encode(e).substr(0, 300) + "\n";
    }
    return out + (state_->closed ? "(closed)" : "(open)");
  }

 private:
  struct State {
    std::vector<protocol::Envelope> received;
    bool closed = false;
  };
  static net::awaitable<void> readLoop(websocket::stream<net_client::TlsStream>& ws, std::shared_ptr<State> state) {
    beast::flat_buffer buf;
    while (true) {
      auto [ec, n] = co_await ws.async_read(buf, net::as_tuple(net::use_awaitable));
      if (ec) {
        state->closed = true;
        co_return;
      }
      if (auto env = protocol::decode(beast::buffers_to_string(buf.data()))) {
        state->received.push_back(std::move(env.value()));
      }
      buf.consume(buf.size());
    }
  }
  // Runs the link's work until `pred` holds or the time is up (or nothing is left to run).
  bool run(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
      auto now = std::chrono::steady_clock::now();
      if (now >= deadline) {
        return false;
      }
      if (ioc_.stopped()) {
        ioc_.restart();
      }
      if (ioc_.run_one_for(deadline - now) == 0 && ioc_.stopped()) {
        return pred();  // nothing runs any more: nothing can change
      }
    }
    return true;
  }

  net::io_context ioc_;
  std::shared_ptr<ssl::context> ctx_;
  websocket::stream<net_client::TlsStream> ws_;
  std::shared_ptr<State> state_;
  std::string host_;
  std::string port_;
  int64_t seq_ = 0;
};

TEST_F(Agents, EnrollConnectLeaseExpiryAndRevoke) {
  requireKubectl();
  Token t = newToken({"--description", "test fleet"});
  auto a1 = startAgent("edge-1", t, {"--labels", "zone=eu,tier=test"});
  ASSERT_TRUE(waitFor([&] { return ready("edge-1") == "True/AgentReady"; }, std::chrono::seconds(20), "edge-1 Ready"))
      << a1->log() << hub_->log();
  Json a = agent("edge-1");
  EXPECT_EQ(a["metadata"]["labels"].value("zone", ""), "eu");
  EXPECT_EQ(a["status"].value("os", ""), "linux");
  EXPECT_FALSE(a["status"].value("arch", "").empty());
  EXPECT_FALSE(a["status"]["capacity"].value("memory", "").empty());
  EXPECT_EQ(a["status"].value("address", ""), "127.0.0.1");
  EXPECT_EQ(a["status"].value("tunnelVersion", int64_t(0)), 1);  // it speaks the tunnel's frames
  EXPECT_EQ(a["status"]["certificate"]["publicKeyPin"].get<std::string>().rfind("sha256:", 0), 0u);
  // The key never left the agent's data dir, and it is private.
  EXPECT_EQ(fs::status(dir_.path() / "edge-1" / "pki" / "agent.key").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(hub_->log().find(t.token.substr(7)), std::string::npos) << "the token's secret was logged";
  EXPECT_EQ(a1->log().find(t.token.substr(7)), std::string::npos) << "the token's secret was logged";

  auto list = kflex({"agent", "list"});
  EXPECT_NE(list.out.find("edge-1"), std::string::npos) << list.out;
  auto tokens = kflex({"token", "list"});
  EXPECT_NE(tokens.out.find("test fleet"), std::string::npos) << tokens.out;
  EXPECT_EQ(tokens.out.find(t.token.substr(7)), std::string::npos) << "token list shows the secret";

  // A frozen agent stops renewing: its lease runs out; thawed, it is Ready again.
  a1->signal(SIGSTOP);
  EXPECT_TRUE(waitFor([&] { return ready("edge-1") == "False/LeaseExpired"; }, std::chrono::seconds(15), "lease expiry"));
  a1->signal(SIGCONT);
  EXPECT_TRUE(waitFor([&] { return ready("edge-1") == "True/AgentReady"; }, std::chrono::seconds(15), "Ready again"))
      << a1->log();

  // Local status works without the hub.
  auto st = run({(binDir() / "kflex-agent").string(), "status", "--config", "/dev/null", "--data-dir",
                 (dir_.path() / "edge-1").string()});
  EXPECT_EQ(st.exit_code, 0) << st.err;
  EXPECT_NE(st.out.find("edge-1"), std::string::npos) << st.out;
  EXPECT_NE(st.out.find("connected"), std::string::npos) << st.out;

  // Revocation closes the link and refuses the certificate from then on.
  auto rv = kflex({"agent", "revoke", "edge-1"});
  ASSERT_EQ(rv.exit_code, 0) << rv.err;
  EXPECT_TRUE(waitFor([&] { return a1->log().find("revoked") != std::string::npos; }, std::chrono::seconds(10),
                      "the agent hears it was revoked"))
      << a1->log();
  EXPECT_TRUE(waitFor([&] { return a1->log().find("HTTP 401") != std::string::npos; }, std::chrono::seconds(10),
                      "reconnects are refused"))
      << a1->log();
  EXPECT_EQ(ready("edge-1"), "<absent>");
  a1->signal(SIGTERM);
  EXPECT_EQ(a1->wait(std::chrono::seconds(10)), 0);
}

// A hub or client that goes away while the agent writes to it costs only that connection: the
// agent ignores SIGPIPE (its TLS writes go through write(2)).
TEST_F(Agents, ABrokenPipeDoesNotEndTheAgent) {
  auto agent = startAgent("edge-pipe", newToken());
  ASSERT_TRUE(waitFor([&] { return ready("edge-pipe") == "True/AgentReady"; }, std::chrono::seconds(20),
                      "edge-pipe Ready"))
      << agent->log();
  ASSERT_EQ(::kill(agent->pid(), SIGPIPE), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_TRUE(agent->running()) << agent->log();
  EXPECT_EQ(ready("edge-pipe"), "True/AgentReady");
}

// `kflex token create` prints a command whose token goes through a pipe; run as printed (without
// sudo, with this test's paths) it enrolls. A token given with --token is overwritten in the
// agent's own command line at once, with a warning.
// Two agents on one data directory would take the hub link from each other and start the same
// control planes twice: the second is refused, naming the lock file and the first.
TEST_F(Agents, OneAgentPerDataDirectory) {
  requireKubectl();
  Token t = newToken();
  auto first = startAgent("edge-1", t);
  ASSERT_TRUE(waitFor([&] { return ready("edge-1") == "True/AgentReady"; }, std::chrono::seconds(20), "Ready"))
      << first->log();
  auto second = startAgent("edge-1", Token{}, {}, "edge-1-second.log");
  EXPECT_EQ(second->wait(std::chrono::seconds(10)), 1) << second->log();
  std::string said = second->log();
  EXPECT_NE(said.find((dir_.path() / "edge-1" / "agent.lock").string() + " is locked by process " +
                      std::to_string(first->pid())),
            std::string::npos)
      << said;
  EXPECT_NE(said.find("another --data-dir"), std::string::npos) << said;
  // enroll on a running agent's directory is refused the same way, and changes nothing.
  auto enroll = run({(binDir() / "kflex-agent").string(), "enroll", "--config", (dir_.path() / "enroll.yaml").string(),
                     "--data-dir", (dir_.path() / "edge-1").string(), "--hub", hub_->url(), "--token", t.token,
                     "--ca-cert-hash", t.pin});
  EXPECT_NE(enroll.exit_code, 0);
  EXPECT_NE(enroll.err.find("is locked by process " + std::to_string(first->pid())), std::string::npos) << enroll.err;
  EXPECT_TRUE(first->running());
  EXPECT_EQ(ready("edge-1"), "True/AgentReady");
  // Once the first has stopped, the directory is free again.
  first->signal(SIGTERM);
  ASSERT_EQ(first->wait(std::chrono::seconds(10)), 0);
  auto third = startAgent("edge-1", Token{}, {}, "edge-1-third.log");
  EXPECT_TRUE(waitFor([&] { return third->log().find("kflex-agent starting") != std::string::npos; },
                      std::chrono::seconds(10), "the third started"))
      << third->log();
}

TEST_F(Agents, TheTokenStaysOffCommandLines) {
  auto created = kflex({"token", "create", "--ttl", "1h"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  std::string line;
  std::istringstream lines(created.out);
  for (std::string l; std::getline(lines, l);) {
    if (l.find("| sudo kflex-agent enroll") != std::string::npos) {
      line = l;
    }
  }
  ASSERT_FALSE(line.empty()) << created.out;
  line.replace(line.find("sudo kflex-agent"), 16, (binDir() / "kflex-agent").string());
  line += " --config " + (dir_.path() / "edge-p.yaml").string() + " --data-dir " + (dir_.path() / "edge-p").string() +
          " --name edge-p";
  auto enrolled = run({"/bin/sh", "-c", line});
  ASSERT_EQ(enrolled.exit_code, 0) << line << "\n" << enrolled.err << enrolled.out;
  EXPECT_TRUE(fs::exists(dir_.path() / "edge-p.yaml"));
  EXPECT_EQ(enrolled.err.find("warning"), std::string::npos) << enrolled.err;

  Token t = newToken();
  auto argv = agentArgs("edge-argv", Token{});
  argv.insert(argv.end(), {"--token", t.token, "--ca-cert-hash", t.pin});
  Process agent(argv, dir_.path() / "edge-argv.log");
  ASSERT_TRUE(waitFor([&] { return agent.log().find("--token puts the token") != std::string::npos; },
                      std::chrono::seconds(10), "the warning"))
      << agent.log();
  std::ifstream cmdline("/proc/" + std::to_string(agent.pid()) + "/cmdline");
  std::string args((std::istreambuf_iterator<char>(cmdline)), std::istreambuf_iterator<char>());
  EXPECT_EQ(args.find(t.token.substr(7)), std::string::npos);
  EXPECT_NE(args.find(std::string(t.token.size(), '*')), std::string::npos);
}

TEST_F(Agents, EnrollmentRefusals) {
  requireKubectl();
  Token once = newToken({"--single-use", "--ttl", "1h"});
  auto a = startAgent("edge-a", once);
  ASSERT_TRUE(waitFor([&] { return agent("edge-a").is_object(); }, std::chrono::seconds(10), "edge-a enrolled"))
      << a->log();

  // The single-use token is spent.
  auto again = run(agentArgs("edge-b", once), {}, "", std::chrono::seconds(20));
  EXPECT_EQ(again.exit_code, 1) << again.err;
  EXPECT_NE(again.err.find("refused the enrollment"), std::string::npos) << again.err;

  // A wrong CA pin: refused before the token is ever sent.
  Token t = newToken();
  Token wrong_pin = t;
  wrong_pin.pin = "sha256:" + std::string(64, 'a');
  auto bad_pin = run(agentArgs("edge-c", wrong_pin), {}, "", std::chrono::seconds(20));
  EXPECT_EQ(bad_pin.exit_code, 1);
  EXPECT_NE(bad_pin.err.find("refusing to enroll"), std::string::npos) << bad_pin.err;
  // (Request lines reach the log within the hub's log flush interval.)
  EXPECT_TRUE(waitFor([&] { return hub_->log().find("path=/enroll/v1/ca") != std::string::npos; },
                      std::chrono::seconds(5), "the CA request in the hub's log"));

  // A token that does not exist, and a malformed one.
  Token unknown = t;
  unknown.token = "zzzzzz.zzzzzzzzzzzzzzzz";
  auto bad_token = run(agentArgs("edge-d", unknown), {}, "", std::chrono::seconds(20));
  EXPECT_EQ(bad_token.exit_code, 1);
  EXPECT_NE(bad_token.err.find("unknown, expired"), std::string::npos) << bad_token.err;
  Token malformed = t;
  malformed.token = "not-a-token";
  auto bad_format = run(agentArgs("edge-d", malformed), {}, "", std::chrono::seconds(20));
  EXPECT_EQ(bad_format.exit_code, 2);
  EXPECT_NE(bad_format.err.find("not a bootstrap token"), std::string::npos) << bad_format.err;

  // An expired token.
  auto expired_tok = newToken({"--ttl", "1s"});
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  auto expired = run(agentArgs("edge-e", expired_tok), {}, "", std::chrono::seconds(20));
  EXPECT_EQ(expired.exit_code, 1);
  EXPECT_NE(expired.err.find("expired"), std::string::npos) << expired.err;

  // The name edge-a is taken by another key.
  fs::create_directories(dir_.path() / "other");
  auto taken_args = agentArgs("edge-a", t);
  taken_args[5] = (dir_.path() / "other").string();
  auto taken = run(taken_args, {}, "", std::chrono::seconds(20));
  EXPECT_EQ(taken.exit_code, 1);
  EXPECT_NE(taken.err.find("already enrolled with another key"), std::string::npos) << taken.err;
  // Nothing was half-made: only edge-a exists.
  auto all = kubectl(hub_->kubeconfig(), {"get", "agents", "-o", "name"});
  EXPECT_EQ(trim(all.out), "agent.tenancy.kflex.kubestellar.org/edge-a") << all.out;
}

TEST_F(Agents, HubRestartAgentRestartAndCorruptState) {
  requireKubectl();
  Token t = newToken();
  auto a1 = startAgent("edge-1", t);
  ASSERT_TRUE(waitFor([&] { return ready("edge-1") == "True/AgentReady"; }, std::chrono::seconds(20), "Ready"))
      << a1->log();
  // Hub killed and restarted on the same address: the agent comes back by itself.
  std::string listen = hub_->url().substr(8);
  hub_->process().signal(SIGKILL);
  hub_->process().wait(std::chrono::seconds(5));
  EXPECT_TRUE(waitFor([&] { return a1->log().find("hub link down") != std::string::npos; }, std::chrono::seconds(10),
                      "the agent notices"));
  startHub(listen);
  EXPECT_TRUE(waitFor(
      [&] {
        size_t first = a1->log().find("connected to the hub");
        return first != std::string::npos && a1->log().find("connected to the hub", first + 1) != std::string::npos;
      },
      std::chrono::seconds(30), "the agent reconnects"))
      << a1->log();
  EXPECT_EQ(ready("edge-1"), "True/AgentReady");

  // Agent restarted without a token: its certificate is enough. Its agent.db is garbage now:
  // moved aside with a log line, and the agent carries on.
  a1->signal(SIGTERM);
  ASSERT_EQ(a1->wait(std::chrono::seconds(10)), 0) << a1->log();
  fs::remove(dir_.path() / "edge-1" / "agent.db-wal");
  fs::remove(dir_.path() / "edge-1" / "agent.db-shm");
  ASSERT_TRUE(writeFileAtomic(dir_.path() / "edge-1" / "agent.db", std::string(8192, 'x'), 0600));
  auto a2 = std::make_unique<Process>(agentArgs("edge-1", Token{}), dir_.path() / "edge-1-again.log");
  EXPECT_TRUE(waitFor([&] { return a2->log().find("connected to the hub") != std::string::npos; },
                      std::chrono::seconds(20), "restart without a token"))
      << a2->log();
  EXPECT_NE(a2->log().find("moved aside"), std::string::npos) << a2->log();
  bool found = false;
  for (const auto& e : fs::directory_iterator(dir_.path() / "edge-1")) {
    found = found || e.path().filename().string().rfind("agent.db.corrupt-", 0) == 0;
  }
  EXPECT_TRUE(found);
  // A stopping hub tells the agent it is going away; the agent reconnects to the next one.
  EXPECT_EQ(hub_->stop(), 0);
  EXPECT_TRUE(waitFor([&] { return a2->log().find("ShuttingDown") != std::string::npos; }, std::chrono::seconds(10),
                      "shutdown notice"))
      << a2->log();
}

TEST_F(Agents, CertificateRenewalAndExpiredCertificates) {
  requireKubectl();
  // A hub that issues 6-second certificates: agents renew after 4 s.
  hub_->stop();
  ASSERT_TRUE(writeFileAtomic(dir_.path() / "hub.yaml",
                              "agent_lease_renew_seconds: 1\nagent_lease_duration_seconds: 30\n"
                              "agent_cert_validity: 6s\nagent_expired_grace: 60s\n",
                              0644));
  startHub("127.0.0.1:0");
  Token t = newToken();
  auto a1 = startAgent("edge-1", t);
  auto cert_file = dir_.path() / "edge-1" / "pki" / "agent.crt";
  ASSERT_TRUE(waitFor([&] { return fs::exists(cert_file); }, std::chrono::seconds(10), "enrolled")) << a1->log();
  std::string first_cert = readFile(cert_file).value();
  ASSERT_TRUE(waitFor([&] { return a1->log().find("certificate renewed") != std::string::npos; },
                      std::chrono::seconds(15), "renewal over the link"))
      << a1->log() << hub_->log();
  std::string renewed = readFile(cert_file).value();
  EXPECT_NE(renewed, first_cert);
  EXPECT_TRUE(tls::checkKeyMatches(renewed, readFile(dir_.path() / "edge-1" / "pki" / "agent.key").value()));
  Json cert = agent("edge-1")["status"]["certificate"];
  EXPECT_EQ(cert.value("pendingPublicKeyPin", ""), tls::spkiPin(renewed).value()) << cert.dump();
  // The link stayed up through the renewal (no reconnect).
  size_t first = a1->log().find("connected to the hub");
  EXPECT_EQ(a1->log().find("connected to the hub", first + 1), std::string::npos) << a1->log();

  // The agent is away until its certificate has expired: it still gets back in (grace window),
  // renews at once, and its new key replaces the old one on the hub.
  a1->signal(SIGTERM);
  ASSERT_EQ(a1->wait(std::chrono::seconds(10)), 0);
  auto expiry = tls::inspectCertificate(readFile(cert_file).value()).value().not_after;
  std::this_thread::sleep_until(std::chrono::steady_clock::now() +
                                (expiry - std::chrono::system_clock::now()) + std::chrono::seconds(2));
  auto a2 = std::make_unique<Process>(agentArgs("edge-1", Token{}), dir_.path() / "edge-1-back.log");
  EXPECT_TRUE(waitFor([&] { return a2->log().find("certificate renewed") != std::string::npos; },
                      std::chrono::seconds(15), "renewal with an expired certificate"))
      << a2->log() << hub_->log();
  EXPECT_TRUE(waitFor([&] { return hub_->log().find("expired_certificate=true") != std::string::npos; },
                      std::chrono::seconds(5), "the expired certificate in the hub's log"));
  EXPECT_EQ(ready("edge-1"), "True/AgentReady");

  // Expired longer ago than the grace window: refused, with a message that says what to do.
  auto hub_ca = tls::KeyPair{readFile(dir_.path() / "hub" / "pki" / "ca.crt").value(),
                             readFile(dir_.path() / "hub" / "pki" / "ca.key").value()};
  FakeClock last_week(std::chrono::system_clock::now() - std::chrono::hours(24 * 7));
  tls::CertRequest req;
  req.common_name = "edge-1";
  req.organizations = {"kflex:agents"};
  req.client_auth = true;
  req.validity = std::chrono::hours(1);
  auto old = tls::issueCertificate(hub_ca, req, last_week).value();
  auto refused = RawLink(hub_->url(), hub_ca.cert_pem, old.cert_pem, old.key_pem).connectAndReadBody();
  EXPECT_EQ(refused.first, 401u);
  EXPECT_NE(refused.second.find("beyond the renewal grace window"), std::string::npos) << refused.second;
}

TEST_F(Agents, CaRotationWithOverlap) {
  requireKubectl();
  Token t = newToken();
  auto a1 = startAgent("edge-1", t);
  ASSERT_TRUE(waitFor([&] { return ready("edge-1") == "True/AgentReady"; }, std::chrono::seconds(20), "edge-1 Ready"))
      << a1->log();
  fs::path pki = dir_.path() / "hub" / "pki";
  std::string old_ca = readFile(pki / "ca.crt").value();
  ASSERT_TRUE(writeFileAtomic(dir_.path() / "old.kubeconfig", readFile(hub_->kubeconfig()).value(), 0600));
  std::string port = hub_->url().substr(hub_->url().rfind(':') + 1);
  hub_->stop();

  std::vector<std::string> rotate = {(binDir() / "kflex-hub").string(), "ca", "rotate", "--config",
                                     (dir_.path() / "hub.yaml").string(), "--data-dir", (dir_.path() / "hub").string(),
                                     "--overlap", "15s"};
  auto r = run(rotate);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("rotated the hub CA"), std::string::npos) << r.out;
  auto rotated = std::chrono::steady_clock::now();
  auto again = run(rotate);
  EXPECT_NE(again.exit_code, 0);
  EXPECT_NE(again.err.find("still in its overlap"), std::string::npos) << again.err;
  std::string new_ca = readFile(pki / "ca.crt").value();
  ASSERT_NE(new_ca, old_ca);
  EXPECT_EQ(fs::status(pki / "ca.key").permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);

  startHub("127.0.0.1:" + port);
  // The agent comes back (it knows only the previous CA: the cross-signed chain lets it verify
  // the hub), gets the bundle and a certificate from the new CA, without being re-enrolled.
  fs::path agent_pki = dir_.path() / "edge-1" / "pki";
  EXPECT_TRUE(waitFor([&] { 
                        auto cert = readFile(agent_pki / "agent.crt");
                        return cert && tls::signedBy(cert.value(), new_ca);
                      },
                      std::chrono::seconds(20), "agent certificate from the new CA"))
      << a1->log() << hub_->log();
  std::string bundle = readFile(agent_pki / "ca.crt").value();
  EXPECT_NE(bundle.find(new_ca), std::string::npos);
  EXPECT_NE(bundle.find(old_ca), std::string::npos);
  EXPECT_EQ(ready("edge-1"), "True/AgentReady");
  // Kubeconfigs from before the rotation work during the overlap; the new one works too.
  EXPECT_EQ(kubectl(dir_.path() / "old.kubeconfig", {"get", "agents"}).exit_code, 0);
  EXPECT_EQ(kubectl(hub_->kubeconfig(), {"get", "agents"}).exit_code, 0);
  // New enrollments pin the new CA.
  Token t2 = newToken();
  EXPECT_NE(t2.pin, t.pin);
  EXPECT_EQ(t2.pin, tls::spkiPin(new_ca).value());
  auto a2 = startAgent("edge-2", t2);
  EXPECT_TRUE(waitFor([&] { return ready("edge-2") == "True/AgentReady"; }, std::chrono::seconds(20), "edge-2 Ready"))
      << a2->log();

  // After the overlap the previous CA is retired, restart or not: its certificates are refused,
  // and the agents, renewed, carry on (also across their own restart).
  std::this_thread::sleep_until(rotated + std::chrono::seconds(17));
  auto refused = kubectl(dir_.path() / "old.kubeconfig", {"get", "agents"});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.err.find("Unauthorized"), std::string::npos) << refused.err;
  a1->signal(SIGTERM);
  ASSERT_EQ(a1->wait(std::chrono::seconds(10)), 0);
  auto a1b = std::make_unique<Process>(agentArgs("edge-1", Token{}), dir_.path() / "edge-1-again.log");
  EXPECT_TRUE(waitFor([&] { return a1b->log().find("connected to the hub") != std::string::npos; },
                      std::chrono::seconds(15), "edge-1 back after the overlap"))
      << a1b->log() << hub_->log();
  EXPECT_EQ(kubectl(hub_->kubeconfig(), {"get", "agents"}).exit_code, 0);
}

TEST_F(Agents, KilledBetweenStoringAndAcknowledging) {
  requireKubectl();
  auto a1 = edgeWithLongLeaseAndCpA();
  if (!a1) {
    return;
  }
  fs::path data = dir_.path() / "edge-1";
  auto desiredNames = [&] { return storedNames(data); };
  a1->signal(SIGTERM);
  ASSERT_EQ(a1->wait(std::chrono::seconds(10)), 0);
  ASSERT_EQ(kflex({"create", "--no-wait", "cp-b", "-t", "k3s", "--agent", "edge-1"}).exit_code, 0);
  ASSERT_TRUE(waitFor([&] { return kubectl(hub_->kubeconfig(), {"get", "cp", "cp-b", "-o", "jsonpath={.status.agent}"}).out == "edge-1"; },
                      std::chrono::seconds(10), "cp-b placed"));

  // Standing in for the agent's process: hello with what it had stored, store the delta it
  // gets (with the agent's own state code), and die before acknowledging it.
  int64_t stored = 0;
  {
    auto st = agent::AgentState::open(data).value();
    stored = st->acknowledgedRevision();
    RawLink link(hub_->url(), readFile(data / "pki" / "ca.crt").value(), readFile(data / "pki" / "agent.crt").value(),
                 readFile(data / "pki" / "agent.key").value());
    ASSERT_EQ(link.connect(), 101u);
    auto got = link.exchange(protocol::encode(protocol::msg::kHello, "1", 0,
                                              {{"name", "edge-1"}, {"acknowledgedRevision", stored}}),
                             protocol::msg::kDelta);
    ASSERT_FALSE(got.empty());
    ASSERT_EQ(got.back().type, protocol::msg::kDelta);
    std::vector<std::pair<std::string, std::string>> upserts;
    for (const auto& o : got.back().body["upserts"]) {
      upserts.emplace_back(o["metadata"]["name"].get<std::string>(), o.dump());
    }
    // cp-b, and cp-a again if its status changed after the stored revision (its report).
    std::set<std::string> names;
    for (const auto& [n, body] : upserts) {
      names.insert(n);
    }
    EXPECT_EQ(names.count("cp-b"), 1u);
    EXPECT_TRUE(names.size() == 1 || names == (std::set<std::string>{"cp-a", "cp-b"}));
    ASSERT_TRUE(st->applyDelta(got.back().revision, upserts, {}));
    link.drop();
  }
  EXPECT_EQ(desiredNames(), (std::set<std::string>{"cp-a", "cp-b"}));

  // The real agent starts again on that state: it resumes from what it stored (a delta, no
  // snapshot), reports both control planes, and holds exactly the desired set.
  auto a2 = std::make_unique<Process>(agentArgs("edge-1", Token{}), dir_.path() / "edge-1-again.log");
  auto reason = [&](const std::string& cp) {
    return kubectl(hub_->kubeconfig(), {"get", "cp", cp, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].reason}"}).out;
  };
  EXPECT_TRUE(waitFor([&] { return reason("cp-a") == "Unavailable" && reason("cp-b") == "Unavailable"; },
                      std::chrono::seconds(15), "both reported"))
      << a2->log() << hub_->log();
  EXPECT_EQ(desiredNames(), (std::set<std::string>{"cp-a", "cp-b"}));
  EXPECT_EQ(a2->log().find("kind=snapshot"), std::string::npos) << a2->log();
  auto st = agent::AgentState::open(data, true).value();
  EXPECT_GT(st->acknowledgedRevision(), stored);

  // Without the hub, `kflex-agent status` shows what the agent holds.
  hub_->stop();
  EXPECT_TRUE(waitFor([&] { return a2->log().find("hub link down") != std::string::npos; }, std::chrono::seconds(10),
                      "link down"));
  auto status = run({(binDir() / "kflex-agent").string(), "status", "--config", "/dev/null", "--data-dir", data.string()});
  EXPECT_EQ(status.exit_code, 0) << status.err;
  EXPECT_NE(status.out.find("Link:         disconnected"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("cp-a (k3s): Ready=False Unavailable"), std::string::npos) << status.out;
  auto js = run({(binDir() / "kflex-agent").string(), "status", "--json", "--config", "/dev/null", "--data-dir", data.string()});
  Json j = Json::parse(js.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << js.out;
  EXPECT_EQ(j["controlPlanes"].size(), 2u);
  EXPECT_EQ(j["name"], "edge-1");
}

TEST_F(Agents, ClockFarOff) {
  // The agent's clock two days behind the hub's is the same, to TLS, as a serving certificate
  // issued two days "in the future": give the hub one (it keeps a valid certificate from its CA).
  Token t = newToken();
  std::string url = hub_->url();
  hub_->stop();
  fs::path pki = dir_.path() / "hub" / "pki";
  auto ca = tls::KeyPair{readFile(pki / "ca.crt").value(), readFile(pki / "ca.key").value()};
  auto old_server = tls::inspectCertificate(readFile(pki / "server.crt").value()).value();
  FakeClock ahead(std::chrono::system_clock::now() + std::chrono::hours(48));
  tls::CertRequest req;
  req.common_name = "kflex-hub";
  req.dns_names = old_server.dns_names;
  req.ip_addresses = old_server.ip_addresses;
  req.server_auth = true;
  req.validity = std::chrono::hours(24 * 365);
  auto future = tls::issueCertificate(ca, req, ahead).value();
  ASSERT_TRUE(writeFileAtomic(pki / "server.key", future.key_pem, 0600));
  ASSERT_TRUE(writeFileAtomic(pki / "server.crt", future.cert_pem, 0644));
  startHub(url.substr(8));
  auto a1 = startAgent("edge-1", t);
  EXPECT_TRUE(waitFor([&] { return a1->log().find("not valid yet by this host's clock") != std::string::npos; },
                      std::chrono::seconds(15), "a clock hint"))
      << a1->log();
  EXPECT_NE(a1->log().find("fix the clock"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir_.path() / "edge-1" / "pki" / "agent.crt"));  // nothing sent over an unverified link
}

TEST_F(Agents, PlacementDesiredStateAndOfflineChanges) {
  requireKubectl();
  Token t = newToken();
  auto eu = startAgent("edge-eu", t, {"--labels", "zone=eu"});
  auto us = startAgent("edge-us", t, {"--labels", "zone=us"});
  ASSERT_TRUE(waitFor([&] { return ready("edge-eu") == "True/AgentReady" && ready("edge-us") == "True/AgentReady"; },
                      std::chrono::seconds(20), "agents Ready"))
      << eu->log() << us->log();
  ASSERT_EQ(kflex({"create", "--no-wait", "cp-us", "-t", "k3s", "--agent", "edge-us"}).exit_code, 0);
  ASSERT_EQ(kflex({"create", "--no-wait", "cp-eu", "-t", "k3s", "--agent-selector", "zone=eu"}).exit_code, 0);
  ASSERT_EQ(kflex({"create", "--no-wait", "cp-mars", "-t", "k3s", "--agent-selector", "zone=mars"}).exit_code, 0);
  auto field = [&](const std::string& cp, const std::string& path) {
    return kubectl(hub_->kubeconfig(), {"get", "cp", cp, "-o", "jsonpath={" + path + "}"}).out;
  };
  auto readyReason = [&](const std::string& cp) { return field(cp, ".status.conditions[?(@.type=='Ready')].reason"); };
  EXPECT_TRUE(waitFor([&] { return field("cp-us", ".status.agent") == "edge-us"; }, std::chrono::seconds(10), "cp-us placed"));
  EXPECT_TRUE(waitFor([&] { return field("cp-eu", ".status.agent") == "edge-eu"; }, std::chrono::seconds(10), "cp-eu placed"));
  EXPECT_TRUE(waitFor([&] { return field("cp-mars", ".status.conditions[?(@.type=='Scheduled')].reason") == "Unschedulable"; },
                      std::chrono::seconds(10), "cp-mars unschedulable"));
  EXPECT_NE(field("cp-mars", ".status.conditions[?(@.type=='Scheduled')].message").find("zone=mars"), std::string::npos);
  // The agent stored it and reports it honestly: not Ready, its program is missing here.
  EXPECT_TRUE(waitFor([&] { return readyReason("cp-eu") == "Unavailable"; }, std::chrono::seconds(10), "cp-eu reported"))
      << eu->log();
  EXPECT_EQ(field("cp-eu", ".status.conditions[?(@.type=='Ready')].status"), "False");
  // Placement is for good.
  auto move = kubectl(hub_->kubeconfig(), {"annotate", "cp", "cp-eu", "--overwrite", "kflex.kubestellar.org/agent=edge-us"});
  EXPECT_NE(move.exit_code, 0);
  EXPECT_NE(move.err.find("stays there"), std::string::npos) << move.err;

  // The EU agent is cut off: its control plane goes Unknown; desired state changes meanwhile
  // (one created, one deleted); when it is back, it has both changes and reports again.
  eu->signal(SIGSTOP);
  EXPECT_TRUE(waitFor([&] { return readyReason("cp-eu") == "AgentUnreachable"; }, std::chrono::seconds(15), "Unknown"));
  ASSERT_EQ(kflex({"create", "--no-wait", "cp-eu2", "-t", "k3s", "--agent", "edge-eu"}).exit_code, 0);
  // (The deletion waits for the agent to confirm: it is stopped, so do not wait here.)
  ASSERT_EQ(kflex({"delete", "cp-eu", "--no-wait"}).exit_code, 0);
  eu->signal(SIGCONT);
  EXPECT_TRUE(waitFor([&] { return readyReason("cp-eu2") == "Unavailable"; }, std::chrono::seconds(20), "converged"))
      << eu->log() << hub_->log();
  EXPECT_TRUE(waitFor([&] { return kubectl(hub_->kubeconfig(), {"get", "cp", "cp-eu"}).exit_code != 0; },
                      std::chrono::seconds(20), "cp-eu deleted once the agent confirmed"))
      << eu->log() << hub_->log();
  // The agent's last reports (cp-eu gone, cp-eu2's state) are acknowledged soon after; the hub
  // writes them on its own schedule, so wait for that before stopping the agent.
  auto unsent = [&] {
    auto st = run({(binDir() / "kflex-agent").string(), "status", "--json", "--config", "/dev/null", "--data-dir",
                   (dir_.path() / "edge-eu").string()});
    EXPECT_EQ(st.exit_code, 0) << st.err;
    return Json::parse(st.out, nullptr, false).value("unsentReports", int64_t(-1));
  };
  EXPECT_TRUE(waitFor([&] { return unsent() == 0; }, std::chrono::seconds(20), "every report acknowledged"));
  eu->signal(SIGTERM);
  ASSERT_EQ(eu->wait(std::chrono::seconds(10)), 0);
  // agent.db holds exactly what the hub wants there now.
  auto state = agent::AgentState::open(dir_.path() / "edge-eu", true);
  ASSERT_TRUE(state) << state.error().message;
  auto desired = state.value()->desired();
  ASSERT_EQ(desired.size(), 1u);
  EXPECT_EQ(desired[0].name, "cp-eu2");
  EXPECT_TRUE(state.value()->outbox().pending(10).empty()) << "every report was acknowledged";
}

// The package flow: `kflex-agent enroll` once (writes agent.yaml, never the token), then the
// service starts with nothing but that file.
TEST_F(Agents, EnrollWritesTheConfigTheServiceStartsFrom) {
  requireKubectl();
  Token t = newToken();
  fs::path config = dir_.path() / "etc" / "agent.yaml";
  fs::path data = dir_.path() / "edge-e";
  std::vector<std::string> enroll = {(binDir() / "kflex-agent").string(), "enroll", "--config", config.string(),
                                     "--data-dir", data.string(), "--hub", hub_->url(), "--token", t.token,
                                     "--ca-cert-hash", t.pin, "--name", "edge-e", "--labels", "zone=x"};
  auto r = run(enroll);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("systemctl enable --now kflex-agent"), std::string::npos) << r.out;
  auto written = readFile(config);
  ASSERT_TRUE(written) << written.error().message;
  std::string text = written.value();
  EXPECT_NE(text.find(hub_->url()), std::string::npos) << text;
  EXPECT_NE(text.find("edge-e"), std::string::npos) << text;
  EXPECT_EQ(text.find(t.token.substr(7)), std::string::npos) << "the token was written to agent.yaml";
  EXPECT_EQ(text.find("\ntoken"), std::string::npos) << text;  // no token key either
  EXPECT_TRUE(fs::exists(data / "pki" / "agent.crt"));
  // Again: nothing changes.
  r = run(enroll);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("already enrolled as edge-e"), std::string::npos) << r.out;
  // Missing flags: a clear message, exit 2.
  r = run({(binDir() / "kflex-agent").string(), "enroll", "--config", config.string(), "--hub", hub_->url()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--ca-cert-hash"), std::string::npos) << r.err;
  // The service's command line: the config file only.
  Process a({(binDir() / "kflex-agent").string(), "run", "--config", config.string()}, dir_.path() / "edge-e.log");
  EXPECT_TRUE(waitFor([&] { return ready("edge-e") == "True/AgentReady"; }, std::chrono::seconds(20), "edge-e Ready"))
      << a.log();
  EXPECT_EQ(agent("edge-e")["metadata"]["labels"].value("zone", ""), "x");
}

// Under a Type=notify unit: READY once the agent runs (enrolled, state open, link started; not
// waiting for the hub), watchdog pings, STOPPING on SIGTERM; and it keeps pinging while the hub
// is away, since it keeps working then.
TEST_F(Agents, NotifiesTheServiceManager) {
  NotifySocket notify(dir_.path() / "notify.sock");
  ASSERT_TRUE(notify.ok());
  std::vector<std::string> argv = {"env", "NOTIFY_SOCKET=" + notify.path().string(), "WATCHDOG_USEC=400000"};
  auto args = agentArgs("edge-1", newToken());
  argv.insert(argv.end(), args.begin(), args.end());
  Process a1(argv, dir_.path() / "edge-1.log");
  ASSERT_TRUE(notify.waitFor("READY=1", std::chrono::seconds(20))) << a1.log();
  EXPECT_NE(a1.log().find("kflex-agent starting"), std::string::npos);
  hub_->stop();
  size_t before = notify.count("WATCHDOG=1");
  auto start = std::chrono::steady_clock::now();
  while (notify.count("WATCHDOG=1") < before + 3 && std::chrono::steady_clock::now() - start < std::chrono::seconds(3)) {
    notify.waitFor("WATCHDOG=1", std::chrono::seconds(1));
  }
  EXPECT_GE(notify.count("WATCHDOG=1"), before + 3) << "pings stopped while the hub is away";
  a1.signal(SIGTERM);
  EXPECT_TRUE(notify.waitFor("STOPPING=1", std::chrono::seconds(10)));
  EXPECT_EQ(a1.wait(std::chrono::seconds(20)), 0) << a1.log();
}

// Many control planes at once on one agent: placement decides them in one pass with their
// status writes in flight together, and still never places more than the agent's capacity holds.
TEST_F(Agents, BulkPlacementStaysWithinCapacity) {
  requireKubectl();
  Token t = newToken();
  auto a1 = startAgent("edge-1", t);
  ASSERT_TRUE(waitFor([&] { return ready("edge-1") == "True/AgentReady"; }, std::chrono::seconds(20), "edge-1 Ready"))
      << a1->log() << hub_->log();
  Json cap = agent("edge-1")["status"]["capacity"];
  int64_t cpu = hub::parseQuantity(cap.value("cpu", ""), true).value_or(0);
  int64_t memory = hub::parseQuantity(cap.value("memory", ""), false).value_or(0);
  auto need = hub::reservationFor("k3s");
  constexpr int64_t kCreated = 40;
  int64_t fits = std::min({kCreated, cpu / need.cpu_millis, memory / need.memory_bytes});
  std::string list = "apiVersion: v1\nkind: List\nitems:\n";
  for (int64_t i = 0; i < kCreated; ++i) {
    list += "- apiVersion: tenancy.kflex.kubestellar.org/v1alpha1\n  kind: ControlPlane\n  metadata:\n    name: bulk-" +
            std::to_string(i) + "\n  spec:\n    type: k3s\n";
  }
  auto applied = kubectl(hub_->kubeconfig(), {"apply", "-f", "-"}, list);
  ASSERT_EQ(applied.exit_code, 0) << applied.err;
  auto counts = [&] {
    auto out = kubectl(hub_->kubeconfig(), {"get", "cp", "-o", "json"}).out;
    Json items = Json::parse(out, nullptr, false).value("items", Json::array());
    std::pair<int64_t, int64_t> placed_unschedulable{0, 0};
    for (const auto& cp : items) {
      const Json st = cp.value("status", Json::object());
      if (!st.value("agent", "").empty()) {
        ++placed_unschedulable.first;
      }
      for (const auto& c : st.value("conditions", Json::array())) {
        if (c.value("type", "") == "Scheduled" && c.value("reason", "") == "Unschedulable") {
          ++placed_unschedulable.second;
          EXPECT_NE(c.value("message", "").find("free for a k3s control plane"), std::string::npos) << c.dump();
        }
      }
    }
    return placed_unschedulable;
  };
  EXPECT_TRUE(waitFor([&] { return counts() == std::make_pair(fits, kCreated - fits); }, std::chrono::seconds(20),
                      "every control plane decided"))
      << counts().first << " placed, " << counts().second << " unschedulable; " << fits << " fit\n" << hub_->log();
  EXPECT_TRUE(waitFor([&] { return agent("edge-1").value("status", Json::object()).value("controlPlanes", int64_t(-1)) == fits; },
                      std::chrono::seconds(10), "the agent's count"));
}

// A real network partition: the agent runs in its own network namespace, joined to the hub by a
// veth pair; the link is cut by taking the hub's end down (packets vanish, nothing is reset).
TEST_F(Agents, NetworkPartitionInANamespace) {
  requireKubectl();
  VethNamespace edge("t", 213);
  if (!edge.unavailable().empty()) {
    GTEST_SKIP() << edge.unavailable();
  }
  ASSERT_EQ(edge.problem(), "");
  hub_->stop();
  startHub(edge.hostAddress() + ":0");
  Token t = newToken();
  std::vector<std::string> argv = edge.exec();
  for (const auto& a : agentArgs("edge-1", t)) {
    argv.push_back(a);
  }
  auto a1 = std::make_unique<Process>(argv, dir_.path() / "edge-1.log");
  ASSERT_TRUE(waitFor([&] { return ready("edge-1") == "True/AgentReady"; }, std::chrono::seconds(20), "edge-1 Ready"))
      << a1->log() << hub_->log();
  EXPECT_EQ(agent("edge-1")["status"].value("address", ""), edge.innerAddress());
  auto readyReason = [&](const std::string& cp) {
    return kubectl(hub_->kubeconfig(), {"get", "cp", cp, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].reason}"}).out;
  };
  ASSERT_EQ(kflex({"create", "--no-wait", "cp-1", "-t", "k3s", "--agent", "edge-1"}).exit_code, 0);
  ASSERT_TRUE(waitFor([&] { return readyReason("cp-1") == "Unavailable"; }, std::chrono::seconds(15), "cp-1 reported"));

  // Cut: the lease runs out, the control plane goes Unknown; desired state changes meanwhile.
  ASSERT_EQ(run({"ip", "link", "set", edge.hostInterface(), "down"}).exit_code, 0);
  EXPECT_TRUE(waitFor([&] { return ready("edge-1") == "False/LeaseExpired"; }, std::chrono::seconds(15), "lease expired"));
  EXPECT_TRUE(waitFor([&] { return readyReason("cp-1") == "AgentUnreachable"; }, std::chrono::seconds(10), "Unknown"));
  ASSERT_EQ(kflex({"create", "--no-wait", "cp-2", "-t", "k3s", "--agent", "edge-1"}).exit_code, 0);
  ASSERT_EQ(kflex({"delete", "cp-1", "--no-wait"}).exit_code, 0);

  // Heal: the agent is back, cp-2 is placed and reported, cp-1 is gone from the agent too.
  ASSERT_EQ(run({"ip", "link", "set", edge.hostInterface(), "up"}).exit_code, 0);
  EXPECT_TRUE(waitFor([&] { return readyReason("cp-2") == "Unavailable"; }, std::chrono::seconds(60), "converged"))
      << a1->log() << hub_->log();
  EXPECT_TRUE(waitFor([&] { return kubectl(hub_->kubeconfig(), {"get", "cp", "cp-1"}).exit_code != 0; },
                      std::chrono::seconds(20), "cp-1 deleted once the agent confirmed"))
      << a1->log() << hub_->log();
  EXPECT_EQ(ready("edge-1"), "True/AgentReady");
  a1->signal(SIGTERM);
  ASSERT_EQ(a1->wait(std::chrono::seconds(10)), 0);
  auto state = agent::AgentState::open(dir_.path() / "edge-1", true);
  ASSERT_TRUE(state) << state.error().message;
  auto desired = state.value()->desired();
  ASSERT_EQ(desired.size(), 1u);
  EXPECT_EQ(desired[0].name, "cp-2");
}

TEST_F(Agents, HubRestoredFromAnOlderBackup) {
  if (hubDatastore() == "postgres") {
    GTEST_SKIP() << "restores the hub from a copy of its hub.db file (SQLite); a PostgreSQL hub is restored with "
                    "PostgreSQL's own tools";
  }
  requireKubectl();
  auto a1 = edgeWithLongLeaseAndCpA();
  if (!a1) {
    return;
  }
  fs::path data = dir_.path() / "edge-1";
  auto desiredNames = [&] { return storedNames(data); };
  // A backup of the hub's data directory (taken while it is stopped).
  std::string port = hub_->url().substr(hub_->url().rfind(':') + 1);
  hub_->stop();
  fs::copy(dir_.path() / "hub", dir_.path() / "backup", fs::copy_options::recursive);
  startHub("127.0.0.1:" + port);
  ASSERT_EQ(kflex({"create", "--no-wait", "cp-b", "-t", "k3s", "--agent", "edge-1"}).exit_code, 0);
  ASSERT_EQ(kflex({"create", "--no-wait", "cp-c", "-t", "k3s", "--agent", "edge-1"}).exit_code, 0);
  ASSERT_TRUE(waitFor([&] { return desiredNames() == std::set<std::string>{"cp-a", "cp-b", "cp-c"}; },
                      std::chrono::seconds(15), "three stored"))
      << a1->log();
  // The hub comes back from the backup: the agent has seen revisions the hub never made (again).
  hub_->stop();
  fs::remove_all(dir_.path() / "hub");
  fs::rename(dir_.path() / "backup", dir_.path() / "hub");
  startHub("127.0.0.1:" + port);
  EXPECT_TRUE(waitFor([&] { return hub_->log().find("agent is ahead of the hub's store") != std::string::npos; },
                      std::chrono::seconds(20), "full resync"))
      << hub_->log();
  // A full snapshot, not an inference that everything was deleted: the agent holds what the
  // restored hub wants.
  EXPECT_TRUE(waitFor([&] { return desiredNames() == std::set<std::string>{"cp-a"}; }, std::chrono::seconds(15),
                      "the restored desired state"))
      << a1->log();
  EXPECT_NE(a1->log().find("kind=snapshot"), std::string::npos);
}

TEST_F(Agents, BadFramesAndForeignCertificates) {
  requireKubectl();
  Token t = newToken();
  auto a1 = startAgent("edge-1", t);
  ASSERT_TRUE(waitFor([&] { return ready("edge-1") == "True/AgentReady"; }, std::chrono::seconds(20), "Ready"))
      << a1->log();
  a1->signal(SIGTERM);
  ASSERT_EQ(a1->wait(std::chrono::seconds(10)), 0);
  auto pki = dir_.path() / "edge-1" / "pki";
  std::string ca = readFile(pki / "ca.crt").value();
  std::string cert = readFile(pki / "agent.crt").value();
  std::string key = readFile(pki / "agent.key").value();

  auto expectProtocolError = [&](const std::string& frame, const std::string& expect) {
    RawLink link(hub_->url(), ca, cert, key);
    ASSERT_EQ(link.connect(), 101u);
    std::string said = link.sendAndReadUntilClose(frame);
    EXPECT_NE(said.find("ProtocolError"), std::string::npos) << said;
    EXPECT_NE(said.find(expect), std::string::npos) << said;
    EXPECT_NE(said.find("|closed"), std::string::npos) << said;
  };
  expectProtocolError("this is not json", "not a JSON object");
  expectProtocolError(R"({"v":2,"type":"hello","body":{}})", "unsupported protocol version 2");
  expectProtocolError(R"({"v":1,"type":"launch-missiles","body":{}})", "unknown message type");
  expectProtocolError(R"({"v":1,"type":"lease","body":{}})", "first message must be hello");
  expectProtocolError(R"({"v":1,"type":"hello","body":[]})", "body must be an object");
  {
    // Oversized: the hub closes the link (WebSocket "message too big") without reading it all.
    RawLink link(hub_->url(), ca, cert, key);
    ASSERT_EQ(link.connect(), 101u);
    std::string said = link.sendAndReadUntilClose(std::string(protocol::kMaxFrameBytes + 1024, 'x'));
    EXPECT_NE(said.find("|closed"), std::string::npos) << said;
  }
  // A certificate from another CA, and the admin's (not an agent) certificate.
  SystemClock clock;
  auto other_ca = tls::createCa({"other-ca"}, clock).value();
  tls::CertRequest req;
  req.common_name = "edge-1";
  req.organizations = {"kflex:agents"};
  req.client_auth = true;
  auto forged = tls::issueCertificate(other_ca, req, clock).value();
  EXPECT_EQ(RawLink(hub_->url(), ca, forged.cert_pem, forged.key_pem).connect(), 401u);
  std::string admin_cert = readFile(dir_.path() / "hub" / "pki" / "admin.crt").value();
  std::string admin_key = readFile(dir_.path() / "hub" / "pki" / "admin.key").value();
  EXPECT_EQ(RawLink(hub_->url(), ca, admin_cert, admin_key).connect(), 403u);
  // The hub kept serving everyone else throughout.
  auto r = kubectl(hub_->kubeconfig(), {"get", "agents"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("edge-1"), std::string::npos);
}

// A control plane being deleted on an agent that is gone (unreachable past
// agent_lost_release_seconds) is released without it, and the log says why; it does not wait
// for ever.
TEST_F(Agents, ADeletingControlPlaneOfALostAgentIsReleasedAfterTheGracePeriod) {
  requireKubectl();
  restartHub("agent_lease_renew_seconds: 1\nagent_lease_duration_seconds: 2\nagent_lost_release_seconds: 3\n");
  fs::path data = enrolled("edge-1");
  auto edge = std::make_unique<FakeAgent>(hub_->url(), data);
  ASSERT_EQ(edge->connect(), 101u);
  ASSERT_TRUE(edge->hello()) << edge->said();
  createOn("edge-1", {"cp-a"});
  edge.reset();  // the host goes away for good
  ASSERT_TRUE(waitFor([&] { return ready("edge-1") == "False/LeaseExpired"; }, std::chrono::seconds(15), "lost"));
  ASSERT_EQ(kflex({"delete", "cp-a", "--no-wait"}).exit_code, 0);
  EXPECT_TRUE(controlPlane("cp-a").is_object());  // waits for the agent, for now
  EXPECT_TRUE(waitFor([&] { return !controlPlane("cp-a").is_object(); }, std::chrono::seconds(20), "cp-a released"))
      << hub_->log();
  // (logged once the release is stored, so a moment after the object is gone)
  EXPECT_TRUE(waitFor([&] { return hub_->log().find("its agent edge-1 has been unreachable for") != std::string::npos; },
                      std::chrono::seconds(5), "the release logged"))
      << hub_->log();
}

// What may change on a placed control plane: a field whose change would lose its data (the
// datastore, the type, the adopted cluster) is refused with 422 naming it; the others are taken.
TEST_F(Agents, EditsThatWouldLoseAControlPlanesDataAreRefused) {
  requireKubectl();
  fs::path data = enrolled("edge-1");
  FakeAgent edge(hub_->url(), data);
  ASSERT_EQ(edge.connect(), 101u);
  ASSERT_TRUE(edge.hello()) << edge.said();
  createOn("edge-1", {"cp-a"});
  auto patch = [&](const std::string& body, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"patch", "cp", "cp-a", "--type=merge", "-p", body};
    args.insert(args.end(), extra.begin(), extra.end());
    return kubectl(hub_->kubeconfig(), args);
  };
  auto r = patch(R"({"spec":{"backend":"dedicated"}})");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("spec.backend: Forbidden: a placed control plane keeps its datastore"), std::string::npos) << r.err;
  r = patch(R"({"spec":{"type":"k8s"}})");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("spec.type: Forbidden"), std::string::npos) << r.err;
  EXPECT_EQ(controlPlane("cp-a")["spec"].value("backend", "shared"), "shared");
  // Taken as they are: the next token's lifetime, whether Ready waits for hooks.
  r = patch(R"({"spec":{"tokenExpirationSeconds":3600,"waitForPostCreateHooks":true}})");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(controlPlane("cp-a")["spec"].value("tokenExpirationSeconds", 0), 3600);
  // Once it has a kubeconfig, the bootstrap secret it was adopted with stays.
  r = patch(R"({"status":{"secretRef":{"namespace":"cp-a-system","name":"k3s-config","key":"config","inClusterKey":"config-incluster"}}})",
            {"--subresource=status"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = patch(R"({"spec":{"bootstrapSecretRef":{"namespace":"kubeflex-system","name":"other","inClusterKey":"kubeconfig"}}})");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("spec.bootstrapSecretRef: Forbidden"), std::string::npos) << r.err;
}

// A control plane waiting for room is placed as soon as room is freed (the docs' promise), not at
// the next full placement pass a minute later.
TEST_F(Agents, APendingControlPlaneIsPlacedAsSoonAsRoomIsFreed) {
  requireKubectl();
  fs::path data = enrolled("edge-1");
  FakeAgent edge(hub_->url(), data);
  ASSERT_EQ(edge.connect(), 101u);
  auto need = hub::reservationFor("k3s");
  ASSERT_TRUE(edge.hello({{"capacity", {{"cpu", std::to_string(need.cpu_millis) + "m"},
                                        {"memory", std::to_string(need.memory_bytes)}}}}))
      << edge.said();  // room for one k3s
  createOn("edge-1", {"cp-a"});
  ASSERT_EQ(kflex({"create", "--no-wait", "cp-b", "-t", "k3s", "--agent", "edge-1"}).exit_code, 0);
  auto scheduled = [&](const std::string& cp) {
    for (const auto& c : controlPlane(cp).value("status", Json::object()).value("conditions", Json::array())) {
      if (c.value("type", "") == "Scheduled") {
        return c.value("status", "") + "/" + c.value("reason", "");
      }
    }
    return std::string("<none>");
  };
  ASSERT_TRUE(waitFor([&] { return scheduled("cp-b") == "False/Unschedulable"; }, std::chrono::seconds(10),
                      "cp-b waiting for room"));
  // cp-a goes (its finalizer removed by hand, as an administrator would for a dead host).
  ASSERT_EQ(kflex({"delete", "cp-a", "--no-wait"}).exit_code, 0);
  auto patched = kubectl(hub_->kubeconfig(), {"patch", "cp", "cp-a", "--type=merge", "-p", R"({"metadata":{"finalizers":null}})"});
  ASSERT_EQ(patched.exit_code, 0) << patched.err;
  ASSERT_TRUE(waitFor([&] { return !controlPlane("cp-a").is_object(); }, std::chrono::seconds(10), "cp-a gone"));
  auto freed = std::chrono::steady_clock::now();
  EXPECT_TRUE(waitFor([&] { return controlPlane("cp-b").value("status", Json::object()).value("agent", "") == "edge-1"; },
                      std::chrono::seconds(5), "cp-b placed"))
      << scheduled("cp-b") << "\n" << hub_->log();
  EXPECT_LT(std::chrono::steady_clock::now() - freed, std::chrono::seconds(5));
}

// `kubectl delete agent`: the agent's link is closed and refused, its control planes go Unknown
// (nothing reports them any more) and those already being deleted are released at once, as
// those deleted later are, instead of waiting for an agent that no longer exists.
TEST_F(Agents, DeletingAnAgentMakesItsControlPlanesUnknownAndReleasesDeletingOnes) {
  requireKubectl();
  // Long leases: what happens here is the deletion's doing, not a lease running out.
  restartHub("agent_lease_renew_seconds: 1\nagent_lease_duration_seconds: 300\n");
  fs::path data = enrolled("edge-1");
  FakeAgent edge(hub_->url(), data);
  ASSERT_EQ(edge.connect(), 101u);
  ASSERT_TRUE(edge.hello()) << edge.said();
  createOn("edge-1", {"cp-live", "cp-going"});
  for (const char* cp : {"cp-live", "cp-going"}) {
    ASSERT_TRUE(edge.acked(edge.report(cp, "True", "Available", "serving"), std::chrono::seconds(10))) << edge.said();
  }
  ASSERT_EQ(readyOf("cp-live"), "True/Available/serving");
  // cp-going is being deleted: the agent holds its finalizer until it reports it removed.
  ASSERT_EQ(kflex({"delete", "cp-going", "--no-wait"}).exit_code, 0);
  ASSERT_TRUE(waitFor([&] { return controlPlane("cp-going")["metadata"].contains("deletionTimestamp"); },
                      std::chrono::seconds(10), "cp-going marked for deletion"));
  ASSERT_TRUE(controlPlane("cp-going").is_object());

  auto deleted = kubectl(hub_->kubeconfig(), {"delete", "agent", "edge-1"});
  ASSERT_EQ(deleted.exit_code, 0) << deleted.err;
  EXPECT_TRUE(edge.closed(std::chrono::seconds(10))) << edge.said();
  EXPECT_NE(edge.error().find(protocol::code::kUnauthorized), std::string::npos) << edge.said();
  EXPECT_TRUE(waitFor([&] { return readyOf("cp-live").rfind("Unknown/AgentDeleted/", 0) == 0; },
                      std::chrono::seconds(10), "cp-live Unknown"))
      << readyOf("cp-live") << "\n" << hub_->log();
  EXPECT_NE(readyOf("cp-live").find("edge-1"), std::string::npos) << readyOf("cp-live");
  EXPECT_TRUE(waitFor([&] { return !controlPlane("cp-going").is_object(); }, std::chrono::seconds(10),
                      "cp-going released and gone"))
      << controlPlane("cp-going").dump() << "\n" << hub_->log();
  // It stays so: the hub does not take reports for an agent that does not exist.
  FakeAgent again(hub_->url(), data);
  EXPECT_EQ(again.connect(), 401u);
  // A hub that starts looks too (had it stopped before it got to them): cp-live, said to be Ready
  // again (by a client), is Unknown once more.
  auto patched = kubectl(hub_->kubeconfig(),
                         {"patch", "cp", "cp-live", "--subresource=status", "--type=merge", "-p",
                          R"({"status":{"conditions":[{"type":"Ready","status":"True","reason":"Available",)"
                          R"("message":"stale","lastTransitionTime":"2026-01-01T00:00:00Z",)"
                          R"("lastUpdateTime":"2026-01-01T00:00:00Z"}]}})"});
  ASSERT_EQ(patched.exit_code, 0) << patched.err;
  ASSERT_EQ(readyOf("cp-live"), "True/Available/stale");
  hub_->stop();
  startHub("127.0.0.1:0");
  EXPECT_TRUE(waitFor([&] { return readyOf("cp-live").rfind("Unknown/AgentDeleted/", 0) == 0; },
                      std::chrono::seconds(10), "cp-live Unknown after a restart"))
      << readyOf("cp-live") << "\n" << hub_->log();
  // Deleted now, cp-live is released at once too.
  ASSERT_EQ(kflex({"delete", "cp-live", "--no-wait"}).exit_code, 0);
  EXPECT_TRUE(waitFor([&] { return !controlPlane("cp-live").is_object(); }, std::chrono::seconds(10),
                      "cp-live released and gone"));
}

// Every field the hub reads from an agent's messages, sent with the wrong JSON type: each is a
// protocol error answered with an error frame and a close, the link is cleaned up, and the hub
// goes on serving the other agents.
TEST_F(Agents, FieldsOfTheWrongTypeAreProtocolErrors) {
  requireKubectl();
  restartHub("agent_lease_renew_seconds: 1\nagent_lease_duration_seconds: 300\n");
  fs::path data = enrolled("edge-1");
  fs::path other_data = enrolled("edge-2");
  FakeAgent other(hub_->url(), other_data);
  ASSERT_EQ(other.connect(), 101u);
  ASSERT_TRUE(other.hello()) << other.said();
  {
    FakeAgent edge(hub_->url(), data);
    ASSERT_EQ(edge.connect(), 101u);
    ASSERT_TRUE(edge.hello()) << edge.said();
  }
  createOn("edge-1", {"cp-1"});
  createOn("edge-2", {"cp-2"});

  auto status = [](Json changes) {
    Json ready = {{"type", "Ready"}, {"status", "False"}, {"reason", "Creating"}, {"message", "m"}};
    Json body = {{"controlPlane", "cp-1"}, {"seq", 1}, {"observedGeneration", 1}, {"conditions", Json::array({ready})}};
    body.merge_patch(changes);
    return protocol::encode(protocol::msg::kStatus, "9", 0, body);
  };
  auto condition = [&](Json changes) {
    Json c = {{"type", "Ready"}, {"status", "False"}, {"reason", "Creating"}, {"message", "m"}};
    c.merge_patch(changes);
    return status({{"conditions", Json::array({c})}});
  };
  auto hello = [](Json body) { return protocol::encode(protocol::msg::kHello, "1", 0, std::move(body)); };
  struct Case {
    std::string frame;
    bool after_hello;
  };
  const std::vector<Case> cases = {
      {hello({{"name", 5}}), false},
      {hello({{"acknowledgedRevision", "12"}}), false},
      {hello({{"acknowledgedRevision", {{"rev", 12}}}}), false},
      {hello({{"caBundleHash", 7}}), false},
      {hello({{"hostname", {{"a", 1}}}}), false},
      {hello({{"agentVersion", 1.5}}), false},
      {hello({{"capacity", "lots"}}), false},
      {hello({{"capacity", {{"cpu", 4}}}}), false},
      {hello({{"controlPlaneTypes", "k3s"}}), false},
      {hello({{"controlPlaneTypes", {1, 2}}}), false},
      {hello({{"tunnel", "1"}}), false},
      {status({{"controlPlane", 5}}), true},
      {status({{"controlPlane", {"cp-1"}}}), true},
      {status({{"seq", "1"}}), true},
      {status({{"observedGeneration", "3"}}), true},
      {status({{"observedGeneration", {{"n", 3}}}}), true},
      {status({{"conditions", {{"type", "Ready"}}}}), true},
      {status({{"conditions", {"Ready"}}}), true},
      {condition({{"type", 5}}), true},
      {condition({{"status", true}}), true},
      {condition({{"reason", 5}}), true},
      {condition({{"message", {"m"}}}), true},
      {status({{"endpoint", 443}}), true},
      {status({{"components", {{"name", "k3s"}}}}), true},
      {status({{"components", {{{"name", "k3s"}, {"state", "Running"}, {"restarts", "2"}}}}}), true},
      {status({{"kubeconfig", "apiVersion: v1"}}), true},
      {status({{"kubeconfig", {{"secretName", 5}, {"data", {{"config", "x"}}}}}}), true},
      {status({{"kubeconfig", {{"secretName", "k3s-config"}, {"data", {"x"}}}}}), true},
      {status({{"removed", "yes"}}), true},
      {status({{"removed", 1}}), true},
      {status({{"postCreateHooks", {"h"}}}), true},
      {status({{"postCreateHookCompleted", "true"}}), true},
      {status({{"hookLabels", {{"a", 1}}}}), true},
      {protocol::encode(protocol::msg::kCsr, "3", 0, {{"csr", 5}}), true},
      {protocol::encode(protocol::msg::kCsr, "3", 0, {{"csr", {"-----BEGIN"}}}), true},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.frame);
    FakeAgent edge(hub_->url(), data);
    ASSERT_EQ(edge.connect(), 101u);
    if (c.after_hello) {
      ASSERT_TRUE(edge.hello()) << edge.said();
    }
    ASSERT_TRUE(edge.send(c.frame));
    EXPECT_TRUE(edge.closed(std::chrono::seconds(5))) << edge.said();
    EXPECT_EQ(edge.error().rfind(protocol::code::kProtocol, 0), 0u) << edge.said();
    other.poll();
  }
  // Every link was cleaned up (and none ended in an exception).
  auto count = [&](const std::string& what) {
    std::string log = hub_->log();
    size_t n = 0;
    for (size_t at = log.find(what); at != std::string::npos; at = log.find(what, at + 1)) {
      ++n;
    }
    return n;
  };
  EXPECT_TRUE(waitFor([&] { return count("agent disconnected") + 1 == count("agent connected"); },
                      std::chrono::seconds(10), "every closed link unregistered"))
      << count("agent connected") << " connected, " << count("agent disconnected") << " disconnected\n" << hub_->log();
  EXPECT_EQ(count("connection ended with an error"), 0u) << hub_->log();
  // The other agent's link went on throughout, and so do its reports.
  EXPECT_TRUE(other.acked(other.report("cp-2", "True", "Available", "fine"), std::chrono::seconds(10))) << other.said();
  EXPECT_EQ(readyOf("cp-2"), "True/Available/fine");
  EXPECT_EQ(kubectl(hub_->kubeconfig(), {"get", "agents"}).exit_code, 0);
  // And edge-1 itself, well-behaved again, is served.
  FakeAgent edge(hub_->url(), data);
  ASSERT_EQ(edge.connect(), 101u);
  ASSERT_TRUE(edge.hello()) << edge.said();
  EXPECT_TRUE(edge.acked(edge.report("cp-1", "True", "Available", "back"), std::chrono::seconds(10))) << edge.said();
  EXPECT_EQ(readyOf("cp-1"), "True/Available/back");
}

// An agent is sent what it acts on (spec, the metadata it uses, deletion), never its own status
// back: a report that changes the control plane's status reaches the store, but no delta for it
// reaches the agent; a change of the control plane itself does.
TEST_F(Agents, AnAgentIsNotSentItsOwnStatusBack) {
  requireKubectl();
  fs::path data = enrolled("edge-1");
  FakeAgent edge(hub_->url(), data);
  ASSERT_EQ(edge.connect(), 101u);
  ASSERT_TRUE(edge.hello()) << edge.said();
  createOn("edge-1", {"cp-0"});
  // The messages that carried cp-0 so far, each as the agent got it.
  std::vector<Json> carried;
  auto deltasOfCp = [&] {
    edge.poll();
    carried.clear();
    edge.waitFor([&](const protocol::Envelope& e) {
      if (e.type == protocol::msg::kDelta || e.type == protocol::msg::kSnapshot) {
        for (const auto& o : e.body.value(e.type == protocol::msg::kDelta ? "upserts" : "controlPlanes", Json::array())) {
          if (o["metadata"].value("name", "") == "cp-0") {
            carried.push_back(o);
          }
        }
      }
      return false;
    }, std::chrono::milliseconds(0));
    return carried.size();
  };
  ASSERT_TRUE(edge.waitFor([](const protocol::Envelope& e) { return e.body.dump().find("\"cp-0\"") != std::string::npos; },
                           std::chrono::seconds(10)))
      << edge.said();
  // (Placement's own writes after the placement settle first.)
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const size_t before = deltasOfCp();
  ASSERT_GE(before, 1u) << edge.said();
  for (const Json& o : carried) {
    EXPECT_FALSE(o.contains("status")) << o.dump();
    EXPECT_FALSE(o["metadata"].contains("resourceVersion")) << o.dump();
    EXPECT_FALSE(o["metadata"].contains("managedFields")) << o.dump();
  }

  // Three reports, each a change the hub stores: nothing comes back.
  for (const char* message : {"starting", "serving", "serving again"}) {
    ASSERT_TRUE(edge.acked(edge.report("cp-0", "True", "Available", message), std::chrono::seconds(10))) << edge.said();
    EXPECT_TRUE(waitFor([&] { return readyOf("cp-0") == std::string("True/Available/") + message; },
                        std::chrono::seconds(10), "stored"));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(deltasOfCp(), before) << edge.said();

  // A label is the control plane's own: it is sent.
  ASSERT_EQ(kubectl(hub_->kubeconfig(), {"label", "cp", "cp-0", "team=edge"}).exit_code, 0);
  EXPECT_TRUE(waitFor([&] { return deltasOfCp() > before; }, std::chrono::seconds(10), "the label sent")) << edge.said();
  EXPECT_EQ(carried.back()["metadata"]["labels"].value("team", ""), "edge") << carried.back().dump();
}

// An agent that flaps a condition as fast as it can: its reports are coalesced per control plane
// (the latest wins) and its writes limited per agent, so the store takes a bounded number of
// writes, the last state reported lands, and a watcher from before the flapping can still resume
// (the flapping did not push its revision out of the event window).
TEST_F(Agents, AFlappingAgentIsCoalescedAndRateLimited) {
  requireKubectl();
  // The smallest event window there is; a control plane is written at most every 200 ms, an
  // agent's status writes at most 5 a second (after a burst of 5).
  restartHub("agent_lease_renew_seconds: 1\nagent_lease_duration_seconds: 300\nevent_retention: 100\n"
             "agent_status_interval_ms: 200\nagent_status_writes_per_second: 5\nagent_status_burst: 5\n");
  fs::path data = enrolled("edge-1");
  FakeAgent edge(hub_->url(), data);
  ASSERT_EQ(edge.connect(), 101u);
  ASSERT_TRUE(edge.hello()) << edge.said();
  const std::vector<std::string> cps = {"cp-0", "cp-1", "cp-2", "cp-3"};
  createOn("edge-1", cps);
  // (Placement's bookkeeping on the agent is written once they are placed: let it settle.)
  ASSERT_TRUE(waitFor([&] { return agent("edge-1")["status"].value("controlPlanes", int64_t(0)) == 4; },
                      std::chrono::seconds(10), "the agent's count"));

  // A watcher from before the flapping, that has seen everything up to here.
  int64_t before = storeRevision();
  ASSERT_GT(before, 0);
  auto watch = api()->request(http::verb::get, std::string(kCps) + "?watch=1&timeoutSeconds=1&resourceVersion=" +
                                                   std::to_string(before));
  ASSERT_TRUE(watch);
  ASSERT_EQ(watch->status, 200u) << watch->body;

  // Flap: Ready True, False, True, ... on all four, for 3 seconds, as fast as the link takes it.
  auto start = std::chrono::steady_clock::now();
  int64_t n = 0;
  size_t sent = edge.sendEach([&]() -> std::optional<std::string> {
    if (std::chrono::steady_clock::now() - start > std::chrono::seconds(3)) {
      return std::nullopt;
    }
    ++n;
    const int64_t kinds = int64_t(cps.size());
    Json body = {{"controlPlane", cps[size_t(n % kinds)]},
                 {"seq", 1000 + n},
                 {"observedGeneration", 1},
                 {"conditions", Json::array({{{"type", "Ready"},
                                              {"status", (n / kinds) % 2 ? "True" : "False"},
                                              {"reason", "Flapping"},
                                              {"message", "report " + std::to_string(n)}}})}};
    return protocol::encode(protocol::msg::kStatus, std::to_string(n), 0, std::move(body));
  }, std::chrono::seconds(10));
  EXPECT_GT(sent, 200u) << "the test did not flap fast enough to show anything";
  // The last word on each.
  std::vector<int64_t> finals;
  for (const auto& cp : cps) {
    finals.push_back(edge.report(cp, "True", "Available", "final"));
  }
  for (auto seq : finals) {
    EXPECT_TRUE(edge.acked(seq, std::chrono::seconds(10))) << "seq " << seq;
  }
  EXPECT_TRUE(waitFor([&] {
    return std::all_of(cps.begin(), cps.end(), [&](const std::string& cp) { return readyOf(cp) == "True/Available/final"; });
  }, std::chrono::seconds(10), "the last state of every control plane stored"))
      << readyOf("cp-0") << " " << readyOf("cp-1") << " " << readyOf("cp-2") << " " << readyOf("cp-3");
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // Writes: at most the burst and 5 a second since the flapping began (and a couple of others).
  int64_t writes = storeRevision() - before;
  EXPECT_GE(writes, 4);
  EXPECT_LE(writes, int64_t(5 + 5 * elapsed + 3)) << sent << " reports in " << elapsed << " s";
  // The watcher resumes where it was.
  auto resumed = api()->request(http::verb::get, std::string(kCps) + "?watch=1&timeoutSeconds=1&resourceVersion=" +
                                                     std::to_string(before));
  ASSERT_TRUE(resumed);
  EXPECT_EQ(resumed->status, 200u) << resumed->body.substr(0, 500);
  EXPECT_NE(resumed->body.find("final"), std::string::npos);
}

// `kflex-agent check` says what this host can run: each program it would launch, its release
// against the supported range, and what is missing; an unsupported release fails the check.
TEST(AgentCheck, SaysWhatThisHostCanRunAndFailsOnAnUnsupportedRelease) {
  TempDir dir;
  std::string agent = (binDir() / "kflex-agent").string();
  std::string standins = (binDir() / "standins").string();
  auto ok = run({agent, "check", "--config", "/dev/null", "--data-dir", (dir.path() / "d").string(), "--bin-dir", standins});
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
  EXPECT_TRUE(std::regex_search(ok.out, std::regex("OK +k3s +v1\\.30\\.13\\+k3s1 at .*supported: v1\\.28 to v1\\.30"))) << ok.out;
  EXPECT_TRUE(std::regex_search(ok.out, std::regex("SKIP +kine +k8s control planes are off"))) << ok.out;
  EXPECT_NE(ok.out.find("cluster for vClusters"), std::string::npos) << ok.out;

  // The k8s programs are looked at once a shared PostgreSQL is configured.
  PostgresServer pg;
  if (pg.problem().empty()) {
    auto k8s = run({agent, "check", "--config", "/dev/null", "--data-dir", (dir.path() / "d").string(), "--bin-dir",
                    standins, "--postgres-dsn", pg.dsn(), "--postgres-password-file", pg.passwordFile().string()});
    EXPECT_EQ(k8s.exit_code, 0) << k8s.out << k8s.err;
    EXPECT_TRUE(std::regex_search(k8s.out, std::regex("OK +kine +v0\\.11\\.4 at .*supported: v0\\.11\\.4 to v0\\.16"))) << k8s.out;
    EXPECT_TRUE(std::regex_search(k8s.out, std::regex("OK +kube-apiserver +v1\\.29\\.9"))) << k8s.out;
    EXPECT_TRUE(std::regex_search(k8s.out, std::regex("OK +shared PostgreSQL"))) << k8s.out;
  }

  // A k3s older than the supported range.
  fs::create_directories(dir.path() / "old");
  ASSERT_TRUE(writeFileAtomic(dir.path() / "old" / "k3s",
                              "#!/bin/sh\necho 'k3s version v1.27.4+k3s1 (36645e73)'\necho 'go version go1.20.6'\n", 0755));
  ASSERT_TRUE(writeFileAtomic(dir.path() / "agent.yaml", "programs:\n  k3s: " + (dir.path() / "old" / "k3s").string() + "\n",
                              0644));
  auto old = run({agent, "check", "--config", (dir.path() / "agent.yaml").string(), "--data-dir",
                  (dir.path() / "d").string(), "--bin-dir", standins});
  EXPECT_EQ(old.exit_code, 1) << old.out;
  EXPECT_TRUE(std::regex_search(old.out, std::regex("FAIL +k3s +k3s v1\\.27\\.4\\+k3s1 .* needs k3s v1\\.28 to v1\\.30"))) << old.out;
  auto json = run({agent, "check", "--json", "--config", (dir.path() / "agent.yaml").string(), "--data-dir",
                   (dir.path() / "d").string(), "--bin-dir", standins});
  EXPECT_EQ(json.exit_code, 1);
  Json doc = Json::parse(json.out, nullptr, false);
  ASSERT_TRUE(doc.is_object()) << json.out;
  EXPECT_GE(doc.value("failed", 0), 1);
  bool k3s_failed = false;
  for (const auto& c : doc["checks"]) {
    k3s_failed = k3s_failed || (c.value("item", "") == "k3s" && c.value("verdict", "") == "fail");
  }
  EXPECT_TRUE(k3s_failed) << json.out;
}

}  // namespace
}  // namespace kflex::test
