// SPDX-License-Identifier: Apache-2.0
// The tunnel's streams on the agent link (docs/dev/tunnel.md): binary WebSocket messages beside
// the link's JSON ones, each `type:u8 | stream:u32 big-endian | payload`, and the per-stream
// flow-control windows both ends keep. No I/O here: the hub and the agent frame and account with
// these, and a decoder never throws.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "shared/common/result.hpp"

namespace kflex::protocol::tunnel {

/// What a frame does (docs/dev/tunnel.md has the table).
enum class FrameType : uint8_t {
  Open = 1,    ///< hub → agent: JSON {"controlPlane": NAME}.
  Opened = 2,  ///< agent → hub: the stream is connected.
  Data = 3,    ///< Bytes, at most kMaxData.
  Window = 4,  ///< u32 big-endian: more bytes the sender of this frame will accept.
  Close = 5,   ///< No more data from this side; optional UTF-8 reason.
  Reset = 6,   ///< The stream is gone; a UTF-8 reason.
};

/// The version of the frames below an agent says it speaks in its hello (`tunnel`).
inline constexpr int64_t kVersion = 1;
inline constexpr size_t kHeaderBytes = 5;
inline constexpr size_t kMaxData = 16 * 1024;          ///< Largest DATA payload a receiver accepts.
/// What a sender puts in one DATA frame at most: with the frame's header and the WebSocket's (8
/// bytes for a masked frame of this size) the message fits one TLS record of 16 KiB, so that a
/// frame on the link costs one record and one write, not a full record and a sliver.
inline constexpr size_t kDataChunk = 16 * 1024 - 64;
/// The link's WebSocket write buffer (Beast's `write_buffer_bytes`, 4 KiB by default): an agent
/// masks what it sends through it, and a frame of kDataChunk must go through in one piece.
inline constexpr size_t kLinkWriteBuffer = 16 * 1024;
inline constexpr size_t kMaxReason = 1024;             ///< Largest CLOSE/RESET/OPEN payload.
inline constexpr uint32_t kInitialWindow = 256 * 1024; ///< What each side may send at first.
inline constexpr uint64_t kMaxWindow = uint64_t(1) << 31;  ///< A window may never grow past this.

/// One decoded frame. `payload` views the message it was decoded from.
struct Frame {
  FrameType type = FrameType::Data;
  uint32_t stream = 0;
  std::string_view payload;
};

/// The name a control plane is reached by through the hub (`NAME.controlplanes.kflex`): the
/// CONNECT authority kubectl sends, and a SAN of the control plane's serving certificate so that
/// the end-to-end TLS verifies. Never resolved by anyone.
std::string tunnelHost(std::string_view control_plane);

/// A frame as a binary WebSocket message.
std::string encode(FrameType type, uint32_t stream, std::string_view payload = {});
/// Writes a frame's header into the first kHeaderBytes of `frame` (which the payload follows):
/// a DATA frame read straight into its message, without a copy.
void putHeader(std::string& frame, FrameType type, uint32_t stream);
/// An OPEN for the control plane `name`.
std::string encodeOpen(uint32_t stream, std::string_view control_plane);
/// A WINDOW granting `bytes` more.
std::string encodeWindow(uint32_t stream, uint32_t bytes);

/// Parses and checks one binary message: a known type, stream id not 0, a payload within its
/// type's limits (DATA not empty and at most kMaxData, WINDOW exactly 4 bytes and not 0, OPENED
/// empty, CLOSE/RESET/OPEN at most kMaxReason). The error says what was wrong.
Result<Frame> decode(std::string_view message);
/// (A frame views its message: decoding a temporary would leave it dangling.)
Result<Frame> decode(std::string&& message) = delete;
/// The control plane an OPEN names: a DNS-1123 subdomain, or an error.
Result<std::string> openedControlPlane(const Frame& open);
/// A WINDOW's grant.
uint32_t windowGrant(const Frame& window);

/**
 * What one side may still send on a stream: it starts at kInitialWindow, each DATA sent takes
 * from it, each WINDOW received adds to it. Thread safety: none (one stream, one strand).
 */
class SendWindow {
 public:
  uint64_t available() const { return available_; }
  /// Takes `bytes` for a DATA frame; false (nothing taken) when the window has less.
  bool take(size_t bytes);
  /// Adds a WINDOW's grant; an error (the peer broke the protocol) past kMaxWindow.
  Result<void> grant(uint32_t bytes);

 private:
  uint64_t available_ = kInitialWindow;
};

/**
 * What one side has allowed its peer to send and not yet seen: each DATA received takes from
 * it (an error when the peer sent more than it was allowed), and as the consumer drains the
 * received bytes it grants them back, in one WINDOW once at least half the initial window is
 * drained (so a WINDOW goes out per ~128 KiB, not per frame). Thread safety: none.
 */
class ReceiveWindow {
 public:
  /// DATA of `bytes` arrived; an error when it is more than the peer may send.
  Result<void> received(size_t bytes);
  /// The consumer drained `bytes`; the grant to send in a WINDOW now, or 0 for none yet.
  uint32_t consumed(size_t bytes);
  /// Bytes the peer may still send.
  uint64_t open() const { return open_; }
  /// Received and not yet drained (the memory this stream holds).
  uint64_t buffered() const { return buffered_; }

 private:
  uint64_t open_ = kInitialWindow;
  uint64_t buffered_ = 0;
  uint64_t drained_ = 0;  // drained and not yet granted back
};

}  // namespace kflex::protocol::tunnel
