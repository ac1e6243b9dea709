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
