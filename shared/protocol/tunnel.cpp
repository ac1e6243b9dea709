// SPDX-License-Identifier: Apache-2.0
#include "shared/protocol/tunnel.hpp"

#include <nlohmann/json.hpp>

#include "shared/common/util.hpp"

namespace kflex::protocol::tunnel {
namespace {

void putU32(std::string& out, uint32_t v) {
  out.push_back(char((v >> 24) & 0xff));
  out.push_back(char((v >> 16) & 0xff));
  out.push_back(char((v >> 8) & 0xff));
  out.push_back(char(v & 0xff));
}

uint32_t getU32(std::string_view in) {
  auto b = [&](size_t i) { return uint32_t(static_cast<unsigned char>(in[i])); };
  return (b(0) << 24) | (b(1) << 16) | (b(2) << 8) | b(3);
}

const char* nameOf(FrameType t) {
  switch (t) {
    case FrameType::Open:
      return "OPEN";
    case FrameType::Opened:
      return "OPENED";
    case FrameType::Data:
      return "DATA";
    case FrameType::Window:
      return "WINDOW";
    case FrameType::Close:
      return "CLOSE";
    case FrameType::Reset:
      return "RESET";
  }
  return "?";
}

}  // namespace

std::string tunnelHost(std::string_view control_plane) {
  return std::string(control_plane) + ".controlplanes.kflex";
}

std::string encode(FrameType type, uint32_t stream, std::string_view payload) {
  std::string out;
  out.reserve(kHeaderBytes + payload.size());
  out.push_back(char(type));
  putU32(out, stream);
  out.append(payload);
  return out;
}

void putHeader(std::string& frame, FrameType type, uint32_t stream) {
  frame[0] = char(type);
  frame[1] = char((stream >> 24) & 0xff);
  frame[2] = char((stream >> 16) & 0xff);
  frame[3] = char((stream >> 8) & 0xff);
  frame[4] = char(stream & 0xff);
}

std::string encodeOpen(uint32_t stream, std::string_view control_plane) {
  return encode(FrameType::Open, stream, nlohmann::json{{"controlPlane", control_plane}}.dump());
}

std::string encodeWindow(uint32_t stream, uint32_t bytes) {
  std::string grant;
  putU32(grant, bytes);
  return encode(FrameType::Window, stream, grant);
}

Result<Frame> decode(std::string_view message) {
  if (message.size() < kHeaderBytes) {
    return fail(Errc::Invalid, "tunnel frame of " + std::to_string(message.size()) + " bytes: shorter than its " +
                                   std::to_string(kHeaderBytes) + "-byte header");
  }
  auto raw = static_cast<unsigned char>(message[0]);
  if (raw < uint8_t(FrameType::Open) || raw > uint8_t(FrameType::Reset)) {
    return fail(Errc::Invalid, "tunnel frame of unknown type " + std::to_string(raw));
  }
  Frame f;
  f.type = FrameType(raw);
  f.stream = getU32(message.substr(1, 4));
  f.payload = message.substr(kHeaderBytes);
  std::string what = std::string(nameOf(f.type)) + " frame";
  if (f.stream == 0) {
    return fail(Errc::Invalid, what + " for stream 0 (stream ids start at 1)");
  }
  size_t n = f.payload.size();
  switch (f.type) {
    case FrameType::Data:
      if (n == 0 || n > kMaxData) {
        return fail(Errc::Invalid, what + " of " + std::to_string(n) + " bytes (1 to " + std::to_string(kMaxData) +
                                       " allowed)");
      }
      break;
    case FrameType::Window:
      if (n != 4 || getU32(f.payload) == 0) {
        return fail(Errc::Invalid, what + " must grant a positive 32-bit count of bytes");
      }
      break;
    case FrameType::Opened:
      if (n != 0) {
        return fail(Errc::Invalid, what + " carries no payload");
      }
      break;
    case FrameType::Open:
    case FrameType::Close:
    case FrameType::Reset:
      if (n > kMaxReason) {
        return fail(Errc::Invalid, what + " payload of " + std::to_string(n) + " bytes (at most " +
                                       std::to_string(kMaxReason) + ")");
      }
      break;
  }
  return f;
}

Result<std::string> openedControlPlane(const Frame& open) {
  auto body = nlohmann::json::parse(open.payload, nullptr, false);
  if (!body.is_object() || !body.contains("controlPlane") || !body["controlPlane"].is_string()) {
    return fail(Errc::Invalid, "OPEN frame without a controlPlane name");
  }
  std::string name = body["controlPlane"].get<std::string>();
  if (!isDns1123Subdomain(name)) {
    return fail(Errc::Invalid, "OPEN frame names \"" + name.substr(0, 64) + "\", which is not a control plane name");
  }
  return name;
}

uint32_t windowGrant(const Frame& window) { return window.payload.size() == 4 ? getU32(window.payload) : 0; }

bool SendWindow::take(size_t bytes) {
  if (bytes > available_) {
    return false;
  }
  available_ -= bytes;
  return true;
}

Result<void> SendWindow::grant(uint32_t bytes) {
  if (available_ + bytes > kMaxWindow) {
    return fail(Errc::Invalid, "the peer granted a window past 2^31 bytes");
  }
  available_ += bytes;
  return {};
}

Result<void> ReceiveWindow::received(size_t bytes) {
  if (bytes > open_) {
    return fail(Errc::Invalid, "the peer sent " + std::to_string(bytes) + " bytes with only " + std::to_string(open_) +
                                   " allowed");
  }
  open_ -= bytes;
  buffered_ += bytes;
  return {};
}

uint32_t ReceiveWindow::consumed(size_t bytes) {
  bytes = std::min<uint64_t>(bytes, buffered_);
  buffered_ -= bytes;
  drained_ += bytes;
  if (drained_ < kInitialWindow / 2) {
    return 0;
  }
  auto grant = uint32_t(drained_);
  open_ += drained_;
  drained_ = 0;
  return grant;
}

}  // namespace kflex::protocol::tunnel
