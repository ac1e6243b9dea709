// SPDX-License-Identifier: Apache-2.0
#include "shared/protocol/link.hpp"

#include <algorithm>
#include <array>
#include <limits>

#include "shared/common/util.hpp"

#include "shared/common/json_decode.hpp"

namespace kflex::protocol {
namespace {

constexpr std::array<std::string_view, 12> kTypes = {
    msg::kHello, msg::kWelcome, msg::kLease,       msg::kSnapshot, msg::kDelta,    msg::kAck,
    msg::kStatus, msg::kStatusAck, msg::kCsr, msg::kCertificate, msg::kCaBundle, msg::kError};

}  // namespace

std::string encode(const Envelope& e) {
  Json j = {{"v", e.version}, {"type", e.type}, {"id", e.id}, {"rev", e.revision}, {"body", e.body}};
  return j.dump();
}

std::string encode(std::string_view type, std::string_view id, int64_t revision, Json body) {
  Envelope e;
  e.type = std::string(type);
  e.id = std::string(id);
  e.revision = revision;
  e.body = std::move(body);
  return encode(e);
}

Result<Envelope> decode(std::string_view text) {
  auto decoded = decodeJson(text);
  Json j = decoded ? std::move(*decoded) : Json();
  if (!j.is_object()) {
    return fail("the message is not a JSON object");
  }
  Envelope e;
  auto v = j.find("v");
  if (v == j.end() || !v->is_number_integer()) {
    return fail("the message has no protocol version (\"v\")");
  }
  e.version = v->get<int>();
  if (e.version != kVersion) {
    return fail("unsupported protocol version " + std::to_string(e.version) + " (this side speaks " +
                std::to_string(kVersion) + "); upgrade the older of kflex-hub and kflex-agent");
  }
  auto t = j.find("type");
  if (t == j.end() || !t->is_string()) {
    return fail("the message has no type");
  }
  e.type = t->get<std::string>();
  if (std::find(kTypes.begin(), kTypes.end(), e.type) == kTypes.end()) {
    return fail("unknown message type \"" + e.type.substr(0, 64) + "\"");
  }
  auto id = j.find("id");
  if (id != j.end()) {
    if (!id->is_string() || id->get_ref<const std::string&>().size() > 64) {
      return fail("the message id must be a string of at most 64 characters");
    }
    e.id = id->get<std::string>();
  }
  auto rev = j.find("rev");
  if (rev != j.end()) {
    if (!rev->is_number_integer() || rev->get<int64_t>() < 0) {
      return fail("the message revision must be a non-negative integer");
    }
    e.revision = rev->get<int64_t>();
  }
  auto body = j.find("body");
  if (body != j.end()) {
    if (!body->is_object()) {
      return fail("the message body must be an object");
    }
    e.body = std::move(*body);
  }
  return e;
}

Backoff::Backoff(std::chrono::milliseconds base, std::chrono::milliseconds cap, uint64_t seed)
    : base_(base), cap_(cap), rng_(seed) {}

std::chrono::milliseconds Backoff::next() {
  int64_t ceiling = base_.count();
  for (int i = 0; i < attempt_ && ceiling < cap_.count(); ++i) {
    ceiling *= 2;
  }
  ceiling = std::min<int64_t>(ceiling, cap_.count());
  ++attempt_;
  std::uniform_int_distribution<int64_t> dist(0, ceiling);
  return std::chrono::milliseconds(dist(rng_));
}

Json toJson(const EnrollRequest& r) {
  return {{"name", r.name}, {"csr", r.csr_pem}, {"labels", r.labels}};
}

Result<EnrollRequest> enrollRequestFromJson(const Json& j) {
  if (!j.is_object()) {
    return fail("the enrollment request must be a JSON object");
  }
  EnrollRequest r;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() != "name" && it.key() != "csr" && it.key() != "labels") {
      return fail("unknown field \"" + it.key() + "\" in the enrollment request");
    }
  }
  if (!j.contains("name") || !j["name"].is_string()) {
    return fail("name: required, a string");
  }
  if (!j.contains("csr") || !j["csr"].is_string()) {
    return fail("csr: required, a PEM certificate signing request");
  }
  r.name = j["name"].get<std::string>();
  r.csr_pem = j["csr"].get<std::string>();
  if (auto l = j.find("labels"); l != j.end()) {
    if (!l->is_object()) {
      return fail("labels: must be an object of strings");
    }
    for (auto it = l->begin(); it != l->end(); ++it) {
      if (!it.value().is_string()) {
        return fail("labels." + it.key() + ": must be a string");
      }
      r.labels[it.key()] = it.value().get<std::string>();
    }
  }
  return r;
}

Json toJson(const EnrollResponse& r) {
  return {{"certificate", r.certificate_pem}, {"caBundle", r.ca_bundle_pem}, {"hubURLs", r.hub_urls}};
}

Result<EnrollResponse> enrollResponseFromJson(const Json& j) {
  if (!j.is_object() || !j.contains("certificate") || !j["certificate"].is_string() || !j.contains("caBundle") ||
      !j["caBundle"].is_string()) {
    return fail("the hub's enrollment answer lacks certificate or caBundle");
  }
  EnrollResponse r;
  r.certificate_pem = j["certificate"].get<std::string>();
  r.ca_bundle_pem = j["caBundle"].get<std::string>();
  if (auto u = j.find("hubURLs"); u != j.end() && u->is_array()) {
    for (const auto& x : *u) {
      if (x.is_string()) {
        r.hub_urls.push_back(x.get<std::string>());
      }
    }
  }
  return r;
}

}  // namespace kflex::protocol
