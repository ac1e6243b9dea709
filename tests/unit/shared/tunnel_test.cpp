// SPDX-License-Identifier: Apache-2.0
// The tunnel's frames and flow-control windows (docs/dev/tunnel.md).
#include "shared/protocol/tunnel.hpp"

#include <gtest/gtest.h>

namespace kflex::protocol::tunnel {
namespace {

TEST(TunnelFrames, EveryTypeRoundTrips) {
  // (A Frame views the message it was decoded from: each message is kept.)
  std::string data_msg = encode(FrameType::Data, 7, "hello");
  auto data = decode(data_msg);
  ASSERT_TRUE(data) << data.error().message;
  EXPECT_EQ(data->type, FrameType::Data);
  EXPECT_EQ(data->stream, 7u);
  EXPECT_EQ(data->payload, "hello");

  std::string open_msg = encodeOpen(0xfffffffe, "cp-1.example");
  auto open = decode(open_msg);
  ASSERT_TRUE(open) << open.error().message;
  EXPECT_EQ(open->stream, 0xfffffffeu);
  auto name = openedControlPlane(*open);
  ASSERT_TRUE(name) << name.error().message;
  EXPECT_EQ(name.value(), "cp-1.example");

  std::string window_msg = encodeWindow(3, 131072);
  auto window = decode(window_msg);
  ASSERT_TRUE(window) << window.error().message;
  EXPECT_EQ(window->type, FrameType::Window);
  EXPECT_EQ(windowGrant(*window), 131072u);

  for (auto t : {FrameType::Opened, FrameType::Close, FrameType::Reset}) {
    std::string msg = encode(t, 1);
    auto f = decode(msg);
    ASSERT_TRUE(f) << f.error().message;
    EXPECT_EQ(f->type, t);
    EXPECT_TRUE(f->payload.empty());
  }
  std::string reset_msg = encode(FrameType::Reset, 9, "no such control plane");
  auto reset = decode(reset_msg);
  ASSERT_TRUE(reset);
  EXPECT_EQ(reset->payload, "no such control plane");
}

// Whatever a peer sends, a decoder answers with an error that says what was wrong.
TEST(TunnelFrames, MalformedFramesAreRefusedWithTheReason) {
  struct Case {
    std::string message;
    std::string says;
  };
  std::string big(kMaxData + 1, 'x');
  std::string long_reason(kMaxReason + 1, 'r');
  std::vector<Case> cases = {
      {"", "shorter than its 5-byte header"},
      {std::string("\x03\x00\x00\x01", 4), "shorter than its 5-byte header"},
      {encode(FrameType(0), 1, "x"), "unknown type 0"},
      {encode(FrameType(7), 1, "x"), "unknown type 7"},
      {encode(FrameType::Data, 0, "x"), "stream 0"},
      {encode(FrameType::Data, 1, ""), "DATA frame of 0 bytes"},
      {encode(FrameType::Data, 1, big), "DATA frame of 16385 bytes"},
      {encode(FrameType::Window, 1, std::string(3, '\1')), "positive 32-bit"},
      {encodeWindow(1, 0), "positive 32-bit"},
      {encode(FrameType::Opened, 1, "x"), "carries no payload"},
      {encode(FrameType::Reset, 1, long_reason), "at most 1024"},
  };
  for (const auto& c : cases) {
    auto f = decode(c.message);
    ASSERT_FALSE(f) << "accepted a frame that should say: " << c.says;
    EXPECT_NE(f.error().message.find(c.says), std::string::npos) << f.error().message;
  }
}

// An OPEN names a control plane, never an address: anything else is refused.
TEST(TunnelFrames, AnOpenNamesAControlPlaneAndNothingElse) {
  for (std::string payload : {std::string("{}"), std::string("[]"), std::string("not json"),
                              std::string(R"({"controlPlane": 5})"), std::string(R"({"controlPlane": "10.0.0.1:6443"})"),
                              std::string(R"({"controlPlane": "Upper"})"), std::string(R"({"controlPlane": ""})"),
                              std::string(R"({"controlPlane": "http://evil"})")}) {
    std::string msg = encode(FrameType::Open, 1, payload);
    auto f = decode(msg);
    ASSERT_TRUE(f) << payload;
    EXPECT_FALSE(openedControlPlane(*f)) << payload;
  }
}

TEST(TunnelWindows, ASenderStopsAtTheWindowUntilItIsGrantedMore) {
  SendWindow w;
  EXPECT_EQ(w.available(), kInitialWindow);
  size_t sent = 0;
  while (w.take(kMaxData)) {
    sent += kMaxData;
  }
  EXPECT_EQ(sent, kInitialWindow);  // 256 KiB is 16 frames of 16 KiB
  EXPECT_FALSE(w.take(1));
  ASSERT_TRUE(w.grant(kMaxData));
  EXPECT_TRUE(w.take(kMaxData));
  EXPECT_FALSE(w.take(1));
  // A peer that grants past 2^31 breaks the protocol.
  EXPECT_TRUE(w.grant(0x7fffffff));
  EXPECT_FALSE(w.grant(2));
}

TEST(TunnelWindows, AReceiverGrantsBackWhatItDrainedInHalfWindows) {
  ReceiveWindow r;
  ASSERT_TRUE(r.received(100 * 1024));
  EXPECT_EQ(r.buffered(), 100u * 1024);
  EXPECT_EQ(r.consumed(100 * 1024), 0u);  // under half the window: no WINDOW yet
  ASSERT_TRUE(r.received(100 * 1024));
  uint32_t grant = r.consumed(100 * 1024);
  EXPECT_EQ(grant, 200u * 1024);  // one WINDOW for both
  EXPECT_EQ(r.open(), kInitialWindow);
  EXPECT_EQ(r.buffered(), 0u);
  // Draining more than was received grants nothing extra.
  EXPECT_EQ(r.consumed(1 << 20), 0u);
  EXPECT_EQ(r.open(), kInitialWindow);
}

TEST(TunnelWindows, APeerThatSendsPastItsWindowIsCaught) {
  ReceiveWindow r;
  ASSERT_TRUE(r.received(kInitialWindow));
  EXPECT_EQ(r.open(), 0u);
  auto over = r.received(1);
  ASSERT_FALSE(over);
  EXPECT_NE(over.error().message.find("only 0 allowed"), std::string::npos) << over.error().message;
}

// A sender and a receiver that follow the rules move any amount of data, never holding more than
// the window at once.
TEST(TunnelWindows, SenderAndReceiverTogetherMoveEverythingWithinTheWindow) {
  SendWindow send;
  ReceiveWindow receive;
  const size_t total = 10 * 1024 * 1024;
  size_t moved = 0;
  uint64_t most_buffered = 0;
  while (moved < total) {
    size_t n = std::min<size_t>(kMaxData, total - moved);
    if (send.take(n)) {
      ASSERT_TRUE(receive.received(n));
      moved += n;
      most_buffered = std::max(most_buffered, receive.buffered());
    }
    // The consumer drains in small, uneven bites.
    if (uint32_t grant = receive.consumed(3000)) {
      ASSERT_TRUE(send.grant(grant));
    }
  }
  EXPECT_LE(most_buffered, kInitialWindow);
}

}  // namespace
}  // namespace kflex::protocol::tunnel

// Two ends of a stream relayed through an in-memory "link" on one event loop: a client socket on
// one end, an echo server (standing in for an API server) on the other.
#include "shared/net/tunnel_stream.hpp"

namespace kflex::net_tunnel {
namespace {

using Stream = TunnelStream<net::ip::tcp::socket>;

struct Relay {
  net::io_context ioc;
  net::ip::tcp::acceptor server{ioc, {net::ip::make_address("127.0.0.1"), 0}};
  std::shared_ptr<Stream> near, far;  // near: the client's side; far: the server's side
  uint64_t most_buffered = 0;
  std::string ended_near = "(running)";
  std::string ended_far = "(running)";
  bool stall_server = false;  // the server stops reading (a stalled consumer)

  size_t largest_data = 0;  // the largest DATA payload either end sent
  size_t full_data = 0;     // DATA frames of a whole kDataChunk

  // Frames from one end, handed to the other after a turn of the loop (as a link would): to the
  // near end with the message it was decoded from (its payload written from there, as the hub
  // and agent do), to the far end decoded alone (copied).
  Stream::Send to(std::shared_ptr<Stream>* other) {
    return [this, other](std::string frame) {
      net::post(ioc, [this, other, frame = std::move(frame)]() mutable {
        auto f = tunnel::decode(frame);
        ASSERT_TRUE(f) << f.error().message;
        if (f->type == tunnel::FrameType::Data) {
          largest_data = std::max(largest_data, f->payload.size());
          full_data += f->payload.size() == tunnel::kDataChunk ? 1 : 0;
        }
        if (*other) {
          if (other == &near) {
            (*other)->onFrame(*f, std::move(frame));
          } else {
            (*other)->onFrame(*f);
          }
          most_buffered = std::max({most_buffered, near->buffered(), far->buffered()});
        }
      });
    };
  }

  // Accepts one connection and echoes it (or, stalled, reads nothing).
  net::awaitable<void> echo() {
    auto s = co_await server.async_accept(net::use_awaitable);
    if (stall_server) {
      net::steady_timer t(ioc, std::chrono::hours(1));
      co_await t.async_wait(net::as_tuple(net::use_awaitable));
      co_return;
    }
    std::string buf(65536, '\0');
    while (true) {
      auto [ec, n] = co_await s.async_read_some(net::buffer(buf), net::as_tuple(net::use_awaitable));
      if (ec) {
        s.shutdown(net::socket_base::shutdown_send);
        co_return;
      }
      co_await net::async_write(s, net::buffer(buf.data(), n), net::use_awaitable);
    }
  }

  // Connects the far end to the server and the near end to a new client socket; returns it.
  net::ip::tcp::socket connect() {
    net::co_spawn(ioc, echo(), net::detached);
    net::ip::tcp::socket to_server(ioc);
    to_server.connect(server.local_endpoint());
    net::ip::tcp::acceptor local(ioc, {net::ip::make_address("127.0.0.1"), 0});
    net::ip::tcp::socket client(ioc);
    client.connect(local.local_endpoint());
    net::ip::tcp::socket accepted = local.accept();
    near = std::make_shared<Stream>(1, std::move(accepted), to(&far),
                                    [this](uint32_t, const std::string& why) { ended_near = why; });
    far = std::make_shared<Stream>(1, std::move(to_server), to(&near),
                                   [this](uint32_t, const std::string& why) { ended_far = why; });
    near->start();
    far->start();
    return client;
  }
};

TEST(TunnelStream, MovesBytesBothWaysWithinTheWindowAndClosesCleanly) {
  Relay relay;
  auto client = relay.connect();
  std::string sent(5 * 1024 * 1024, '\0');
  for (size_t i = 0; i < sent.size(); ++i) {
    sent[i] = char('a' + i % 23);
  }
  std::string got;
  net::co_spawn(relay.ioc, [&]() -> net::awaitable<void> {
    co_await net::async_write(client, net::buffer(sent), net::use_awaitable);
    client.shutdown(net::socket_base::shutdown_send);
  }, net::detached);
  net::co_spawn(relay.ioc, [&]() -> net::awaitable<void> {
    std::string buf(65536, '\0');
    while (true) {
      auto [ec, n] = co_await client.async_read_some(net::buffer(buf), net::as_tuple(net::use_awaitable));
      if (ec) {
        co_return;
      }
      got.append(buf.data(), n);
    }
  }, net::detached);
  relay.ioc.run_for(std::chrono::seconds(30));
  EXPECT_EQ(got.size(), sent.size());
  EXPECT_TRUE(got == sent);
  EXPECT_LE(relay.most_buffered, tunnel::kInitialWindow);
  // Frames never pass kDataChunk (one frame, one TLS record on a link), and a bulk transfer
  // fills them.
  EXPECT_EQ(relay.largest_data, tunnel::kDataChunk);
  EXPECT_GT(relay.full_data, 100u);
  EXPECT_EQ(relay.ended_near, "");
  EXPECT_EQ(relay.ended_far, "");
}

// A consumer that stops reading holds up its own stream only: the sender stops at the window,
// and the memory the stream holds stays within it.
TEST(TunnelStream, AStalledConsumerStopsItsSenderAtTheWindow) {
  Relay relay;
  relay.stall_server = true;
  auto client = relay.connect();
  // (More than the kernel may buffer for the connection at both ends: the maxima of tcp_rmem
  // and tcp_wmem, 6 and 4 MiB by default, 32 and 4 on some hosts.)
  std::string sent(64 * 1024 * 1024, 'x');
  size_t written = 0;
  net::co_spawn(relay.ioc, [&]() -> net::awaitable<void> {
    auto [ec, n] = co_await net::async_write(client, net::buffer(sent), net::as_tuple(net::use_awaitable));
    written = n;
  }, net::detached);
  relay.ioc.run_for(std::chrono::seconds(3));
  EXPECT_LT(written, sent.size());  // blocked: nothing drains at the far end
  EXPECT_LE(relay.most_buffered, tunnel::kInitialWindow);
  EXPECT_EQ(relay.ended_far, "(running)");
}

TEST(TunnelStream, AResetEndsBothSidesWithTheReason) {
  Relay relay;
  auto client = relay.connect();
  relay.ioc.run_for(std::chrono::milliseconds(100));
  net::post(relay.ioc, [&] { relay.far->fail("the control plane went away", true); });
  bool closed = false;
  net::co_spawn(relay.ioc, [&]() -> net::awaitable<void> {
    char c;
    auto [ec, n] = co_await client.async_read_some(net::buffer(&c, 1), net::as_tuple(net::use_awaitable));
    closed = bool(ec);
  }, net::detached);
  relay.ioc.run_for(std::chrono::seconds(3));
  EXPECT_TRUE(closed);
  EXPECT_EQ(relay.ended_far, "the control plane went away");
  EXPECT_EQ(relay.ended_near, "the peer reset the stream: the control plane went away");
}

}  // namespace
}  // namespace kflex::net_tunnel
