// SPDX-License-Identifier: Apache-2.0
// The wire protocol between kflex-agent and kflex-hub: enrollment over HTTPS, then JSON envelopes
// over one mutual-TLS WebSocket. Both sides validate every message with these functions before
// acting on it.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "shared/common/result.hpp"

namespace kflex::protocol {

using Json = nlohmann::json;

/// The link protocol version this build speaks. A peer with another version is refused.
inline constexpr int kVersion = 1;

/// HTTP paths on the hub's listener (the same port as the API).
inline constexpr const char* kConnectPath = "/agent/v1/connect";  ///< WebSocket upgrade, client cert required.
inline constexpr const char* kEnrollCaPath = "/enroll/v1/ca";     ///< GET: the CA bundle (no authentication).
inline constexpr const char* kEnrollPath = "/enroll/v1/agents";   ///< POST: CSR + bootstrap token.

/// Largest WebSocket message either side accepts.
inline constexpr size_t kMaxFrameBytes = 4 * 1024 * 1024;
/// Largest message an agent accepts from its (authenticated) hub: a snapshot carries every
/// control plane placed there with the PostCreateHooks it uses (each up to 512 KiB of templates).
inline constexpr size_t kMaxDesiredFrameBytes = 64 * 1024 * 1024;
/// Largest enrollment request body.
inline constexpr size_t kMaxEnrollBytes = 64 * 1024;

/// Message types (each one's body is a struct in shared/protocol/messages.hpp).
namespace msg {
inline constexpr const char* kHello = "hello";
inline constexpr const char* kWelcome = "welcome";
inline constexpr const char* kLease = "lease";
inline constexpr const char* kSnapshot = "snapshot";
inline constexpr const char* kDelta = "delta";
inline constexpr const char* kAck = "ack";
inline constexpr const char* kStatus = "status";
inline constexpr const char* kStatusAck = "status-ack";
inline constexpr const char* kCsr = "csr";
inline constexpr const char* kCertificate = "certificate";
inline constexpr const char* kCaBundle = "ca-bundle";
inline constexpr const char* kError = "error";
}  // namespace msg

/// Error codes carried by an `error` message (and the WebSocket close reason).
namespace code {
inline constexpr const char* kProtocol = "ProtocolError";        ///< Malformed, unknown type or version.
inline constexpr const char* kUnauthorized = "Unauthorized";     ///< Unknown, revoked or mismatched identity.
inline constexpr const char* kTooSlow = "SendQueueFull";          ///< The agent did not read fast enough.
inline constexpr const char* kReplaced = "Replaced";              ///< A newer link of the same agent took over.
inline constexpr const char* kShuttingDown = "ShuttingDown";      ///< The hub is stopping.
}  // namespace code

/// One message: {"v":1,"type":"...","id":"...","rev":N,"body":{...}}.
struct Envelope {
  int version = kVersion;
  std::string type;
  std::string id;        ///< Unique per sender and link; answers echo it in body.replyTo when useful.
  int64_t revision = 0;  ///< The hub revision the message reflects (0 when not applicable).
  Json body = Json::object();
};

/// Serializes an envelope (compact JSON).
std::string encode(const Envelope& e);
/// Makes and serializes an envelope in one step.
std::string encode(std::string_view type, std::string_view id, int64_t revision, Json body);
/// Parses and checks one message: JSON object, supported version, known type, id, body object.
/// The error message says what was wrong, for the `error` reply and the log.
Result<Envelope> decode(std::string_view text);

/// Capped exponential backoff with full jitter (AWS architecture blog's "full jitter"): the n-th
/// retry waits a uniformly random time in [0, min(cap, base * 2^n)].
class Backoff {
 public:
  Backoff(std::chrono::milliseconds base, std::chrono::milliseconds cap, uint64_t seed);
  /// The next wait; grows until reset().
  std::chrono::milliseconds next();
  /// After a success.
  void reset() { attempt_ = 0; }
  int attempt() const { return attempt_; }

 private:
  std::chrono::milliseconds base_;
  std::chrono::milliseconds cap_;
  int attempt_ = 0;
  std::mt19937_64 rng_;
};

/// What an agent sends to enroll (POST kEnrollPath, Authorization: Bearer TOKEN).
struct EnrollRequest {
  std::string name;                         ///< Requested agent name (DNS-1123 label).
  std::string csr_pem;                      ///< PKCS#10 request for the agent's own key.
  std::map<std::string, std::string> labels;
};
Json toJson(const EnrollRequest& r);
Result<EnrollRequest> enrollRequestFromJson(const Json& j);

/// What the hub answers.
struct EnrollResponse {
  std::string certificate_pem;  ///< The agent's client certificate.
  std::string ca_bundle_pem;    ///< The CA(s) the agent must trust for the hub.
  std::vector<std::string> hub_urls;
};
Json toJson(const EnrollResponse& r);
Result<EnrollResponse> enrollResponseFromJson(const Json& j);

}  // namespace kflex::protocol
