// SPDX-License-Identifier: Apache-2.0
// What arrives over the agent link and at enrollment: the envelope decoder and the enrollment
// messages, with whatever body the envelope carries.
#include <string_view>

#include "fuzz/fuzz_target.hpp"
#include "shared/common/json_decode.hpp"
#include "shared/protocol/link.hpp"

KFLEX_FUZZ_TARGET(agent_protocol) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto env = kflex::protocol::decode(text)) {
    (void)kflex::protocol::enrollRequestFromJson(env->body);
    (void)kflex::protocol::enrollResponseFromJson(env->body);
    (void)kflex::dumpSafe(env->body);
  }
  if (auto j = kflex::decodeJson(text)) {
    (void)kflex::protocol::enrollRequestFromJson(*j);
    (void)kflex::protocol::enrollResponseFromJson(*j);
  }
  return 0;
}
