// SPDX-License-Identifier: Apache-2.0
// What arrives over the agent link and at enrollment: the envelope decoder, every link message's
// decoder (whatever type the envelope claims), and the enrollment messages.
#include <string_view>

#include "fuzz/fuzz_target.hpp"
#include "shared/common/json_decode.hpp"
#include "shared/protocol/messages.hpp"

namespace {

using namespace kflex::protocol;

// Decodes `body` as every message type; a decoded message must encode again.
void decodeAsEveryMessage(const Json& body) {
  auto check = [&](auto decoded) {
    if (decoded) {
      (void)kflex::dumpSafe(decoded->toJson());
    }
  };
  check(Hello::fromJson(body));
  check(Welcome::fromJson(body));
  check(Snapshot::fromJson(body));
  check(Delta::fromJson(body));
  check(StatusReport::fromJson(body));
  check(StatusAck::fromJson(body));
  check(Csr::fromJson(body));
  check(Certificate::fromJson(body));
  check(CaBundle::fromJson(body));
  check(ErrorBody::fromJson(body));
  (void)enrollRequestFromJson(body);
  (void)enrollResponseFromJson(body);
}

}  // namespace

KFLEX_FUZZ_TARGET(agent_protocol) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto env = decode(text)) {
    decodeAsEveryMessage(env->body);
    (void)kflex::dumpSafe(env->body);
  }
  if (auto j = kflex::decodeJson(text)) {
    decodeAsEveryMessage(*j);
  }
  return 0;
}
