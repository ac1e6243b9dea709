// SPDX-License-Identifier: Apache-2.0
// What a BootstrapToken (`ID.SECRET`, stored with only the secret's hash) lets its holder do:
// enroll an agent (usage `enroll`), or open tunnel streams to the control planes it lists (usage
// `tunnel`, docs/dev/tunnel.md).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "shared/common/time.hpp"

namespace kflex::hub {

using Json = nlohmann::json;

/// Why the stored token `tok` does not grant `usage` to the holder of `secret` at `now`
/// ("wrong secret", "expired", "not for USAGE"), or "" when it does. The secret is compared
/// by hash in constant time.
std::string tokenProblem(const Json& tok, std::string_view secret, std::string_view usage, TimePoint now);

/// Whether a `tunnel` token lists control plane `name`.
bool tokenCoversControlPlane(const Json& tok, std::string_view name);

}  // namespace kflex::hub
