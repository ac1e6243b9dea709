// SPDX-License-Identifier: Apache-2.0
// The agent's end of the tunnel: streams to the API servers of its own control planes only.
#include "agent/link/tunnels.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace kflex::agent {
namespace {

namespace tunnel = protocol::tunnel;

// An echo server standing in for a control plane's API server, and the frames the agent sends.
struct Fixture {
  net::io_context ioc;
  net::ip::tcp::acceptor api{ioc, {net::ip::make_address("127.0.0.1"), 0}};
  std::vector<std::string> sent;
  std::vector<std::string> resolved;  // names the resolver was asked for
  Tunnels tunnels{ioc.get_executor(),
                  [this](const std::string& name) -> Result<Tunnels::Target> {
                    resolved.push_back(name);
                    if (name == "cp1") {
                      return api.local_endpoint();
                    }
                    if (name == "adopted") {  // a server by name, as an adopted cluster's may be
                      return Tunnels::Target("localhost", api.local_endpoint().port());
                    }
                    if (name == "down") {
                      net::ip::tcp::acceptor closed(ioc, {net::ip::make_address("127.0.0.1"), 0});
                      return closed.local_endpoint();  // (closed when this returns: nothing listens)
                    }
                    return fail(Errc::NotFound, "no control plane " + name + " on this agent");
                  },
                  [this](std::string frame) { sent.push_back(std::move(frame)); }, 3};

  Fixture() { net::co_spawn(ioc, echo(), net::detached); }
  net::awaitable<void> echo() {
    while (true) {
      auto [aec, s] = co_await api.async_accept(net::as_tuple(net::use_awaitable));
      if (aec) {
        co_return;
      }
      net::co_spawn(ioc, [](net::ip::tcp::socket sock) -> net::awaitable<void> {
        std::string buf(4096, '\0');
        while (true) {
          auto [ec, n] = co_await sock.async_read_some(net::buffer(buf), net::as_tuple(net::use_awaitable));
          if (ec) {
            co_return;
          }
          co_await net::async_write(sock, net::buffer(buf.data(), n), net::as_tuple(net::use_awaitable));
        }
      }(std::move(s)), net::detached);
    }
  }
  void run() { ioc.run_for(std::chrono::milliseconds(300)); ioc.restart(); }
  // The frames sent so far of `type` for stream `id` (payloads).
  std::vector<std::string> frames(tunnel::FrameType type, uint32_t id) {
    std::vector<std::string> out;
    for (const auto& m : sent) {
      auto f = tunnel::decode(m);
      if (f && f->type == type && f->stream == id) {
        out.emplace_back(f->payload);
      }
    }
    return out;
  }
  // The bytes the DATA frames of stream `id` carried so far, in order.
  std::string data(uint32_t id) {
    std::string out;
    for (const auto& d : frames(tunnel::FrameType::Data, id)) {
      out += d;
    }
    return out;
  }
};

TEST(AgentTunnels, AStreamToOneOfItsControlPlanesCarriesBytesBothWays) {
  Fixture t;
  t.tunnels.onMessage(tunnel::encodeOpen(1, "cp1"));
  t.run();
  ASSERT_EQ(t.frames(tunnel::FrameType::Opened, 1).size(), 1u);
  t.tunnels.onMessage(tunnel::encode(tunnel::FrameType::Data, 1, "GET /version"));
  t.run();
  EXPECT_EQ(t.data(1), "GET /version");
  EXPECT_EQ(t.tunnels.size(), 1u);
  // The link ends: the stream with it, nothing more is sent.
  size_t before = t.sent.size();
  t.tunnels.closeAll();
  t.run();
  EXPECT_EQ(t.tunnels.size(), 0u);
  EXPECT_EQ(t.sent.size(), before);
}

// An adopted cluster's server may be a name: this host resolves it (localhost here: a name that
// is not would send a query to a DNS server, which tests never do).
TEST(AgentTunnels, AServerByNameIsResolvedHere) {
  Fixture t;
  t.tunnels.onMessage(tunnel::encodeOpen(1, "adopted"));
  t.run();
  t.run();
  ASSERT_EQ(t.frames(tunnel::FrameType::Opened, 1).size(), 1u);
  t.tunnels.onMessage(tunnel::encode(tunnel::FrameType::Data, 1, "hello"));
  t.run();
  EXPECT_EQ(t.data(1), "hello");
}

// Only names of control planes it runs: anything else is refused before any connection is made.
TEST(AgentTunnels, AnythingButAControlPlaneItRunsIsRefusedWithTheReason) {
  Fixture t;
  t.tunnels.onMessage(tunnel::encodeOpen(1, "someone-elses"));
  t.tunnels.onMessage(tunnel::encode(tunnel::FrameType::Open, 2, R"({"controlPlane":"10.0.0.1:6443"})"));
  t.tunnels.onMessage(tunnel::encode(tunnel::FrameType::Open, 3, R"({"host":"metadata.internal"})"));
  t.tunnels.onMessage(tunnel::encodeOpen(4, "down"));
  t.run();
  ASSERT_EQ(t.frames(tunnel::FrameType::Reset, 1).size(), 1u);
  EXPECT_EQ(t.frames(tunnel::FrameType::Reset, 1)[0], "no control plane someone-elses on this agent");
  ASSERT_EQ(t.frames(tunnel::FrameType::Reset, 2).size(), 1u);
  EXPECT_NE(t.frames(tunnel::FrameType::Reset, 2)[0].find("not a control plane name"), std::string::npos);
  ASSERT_EQ(t.frames(tunnel::FrameType::Reset, 3).size(), 1u);
  ASSERT_EQ(t.frames(tunnel::FrameType::Reset, 4).size(), 1u);
  EXPECT_NE(t.frames(tunnel::FrameType::Reset, 4)[0].find("cannot connect to control plane down's API server"),
            std::string::npos)
      << t.frames(tunnel::FrameType::Reset, 4)[0];
  // The resolver only ever saw names.
  EXPECT_EQ(t.resolved, (std::vector<std::string>{"someone-elses", "down"}));
  EXPECT_EQ(t.tunnels.size(), 0u);
  for (uint32_t id = 1; id <= 4; ++id) {
    EXPECT_TRUE(t.frames(tunnel::FrameType::Opened, id).empty());
  }
}

TEST(AgentTunnels, StreamsAreCappedAndIdsAreNotReused) {
  Fixture t;
  for (uint32_t id = 1; id <= 4; ++id) {
    t.tunnels.onMessage(tunnel::encodeOpen(id, "cp1"));
  }
  t.tunnels.onMessage(tunnel::encodeOpen(2, "cp1"));  // in use
  t.run();
  EXPECT_EQ(t.tunnels.size(), 3u);
  ASSERT_EQ(t.frames(tunnel::FrameType::Reset, 4).size(), 1u);
  EXPECT_NE(t.frames(tunnel::FrameType::Reset, 4)[0].find("its limit"), std::string::npos);
  ASSERT_EQ(t.frames(tunnel::FrameType::Reset, 2).size(), 1u);
  EXPECT_NE(t.frames(tunnel::FrameType::Reset, 2)[0].find("already open"), std::string::npos);
  // A stream the hub resets ends here too, and frees its place.
  t.tunnels.onMessage(tunnel::encode(tunnel::FrameType::Reset, 1, "kubectl went away"));
  t.run();
  EXPECT_EQ(t.tunnels.size(), 2u);
  // Malformed frames are ignored (logged), the streams go on.
  t.tunnels.onMessage(std::string("\x09garbage", 8));
  t.run();
  EXPECT_EQ(t.tunnels.size(), 2u);
}

}  // namespace
}  // namespace kflex::agent
