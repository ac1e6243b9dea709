// SPDX-License-Identifier: Apache-2.0
#include "hub/agents/bootstrap_tokens.hpp"

#include <openssl/crypto.h>

#include <algorithm>

#include "shared/tls/pki.hpp"

namespace kflex::hub {
namespace {

bool listed(const Json& spec, const char* field, std::string_view value) {
  auto it = spec.find(field);
  return it != spec.end() && it->is_array() &&
         std::any_of(it->begin(), it->end(), [&](const Json& v) { return v.is_string() && v.get<std::string>() == value; });
}

}  // namespace

std::string tokenProblem(const Json& tok, std::string_view secret, std::string_view usage, TimePoint now) {
  const Json spec = tok.is_object() ? tok.value("spec", Json::object()) : Json::object();
  const std::string want = tls::sha256Hex(secret);
  const std::string have = spec.value("secretHash", "");
  if (have.size() != want.size() || CRYPTO_memcmp(have.data(), want.data(), want.size()) != 0) {
    return "wrong secret";
  }
  if (auto exp = spec.find("expiration"); exp != spec.end() && exp->is_string() &&
                                          parseTime(exp->get<std::string>()).value_or(TimePoint{}) <= now) {
    return "expired";
  }
  if (!listed(spec, "usages", usage)) {
    return "not for " + std::string(usage == "enroll" ? "enrollment" : usage);
  }
  return "";
}

bool tokenCoversControlPlane(const Json& tok, std::string_view name) {
  return tok.is_object() && listed(tok.value("spec", Json::object()), "controlPlanes", name);
}

}  // namespace kflex::hub
