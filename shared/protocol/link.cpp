// SPDX-License-Identifier: Apache-2.0
#include "shared/protocol/link.hpp"

#include <algorithm>
#include <array>
#include <limits>

#include "shared/common/util.hpp"

#include "shared/common/json_decode.hpp"

namespace kflex::protocol {
namespace {

std::string expected(Json::value_t type) {
  switch (type) {
    case Json::value_t::string:
      return "a string";
    case Json::value_t::number_integer:
      return "an integer";
    case Json::value_t::boolean:
      return "a boolean";
    case Json::value_t::object:
      return "an object";
    case Json::value_t::array:
      return "an array";
    default:
      return Json(type).type_name();
  }
}

// Reads the fields of one message object by the JSON type each must have. An absent (or null)
// field reads as nothing; one of another type reads as nothing too, and the first such is kept as
// the problem, named by its path. (nlohmann's value() throws on a type mismatch instead.)
class Fields {
 public:
  Fields(const Json& object, std::string path) : object_(object), path_(std::move(path)) {}
  /// The field when present with `type` (number_integer: any integer that fits int64_t).
  const Json* find(const char* key, Json::value_t type) {
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) {
      return nullptr;
    }
    bool ok = type == Json::value_t::number_integer ? it->is_number_integer() : it->type() == type;
    if (!ok) {
      note(key, "must be " + expected(type) + ", not " + (it->is_number() ? "a number" : expected(it->type())));
      return nullptr;
    }
    if (it->is_number_unsigned() && it->get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max())) {
      note(key, "is out of range");
      return nullptr;
    }
    return &*it;
  }
  std::string string(const char* key) {
    const Json* v = find(key, Json::value_t::string);
    return v ? v->get<std::string>() : std::string();
  }
  int64_t integer(const char* key, int64_t absent) {
    const Json* v = find(key, Json::value_t::number_integer);
    return v ? v->get<int64_t>() : absent;
  }
  bool boolean(const char* key) {
    const Json* v = find(key, Json::value_t::boolean);
    return v && v->get<bool>();
  }
  /// Records a problem with a field's value.
  void note(const std::string& key, const std::string& what) {
    if (problem_.empty()) {
      problem_ = path_ + key + " " + what;
    }
  }
  /// Keeps the problem of a nested object's fields (when this one has none yet).
  void take(const Fields& inner) {
    if (problem_.empty()) {
      problem_ = inner.problem_;
    }
  }
  const std::string& problem() const { return problem_; }

 private:
  const Json& object_;
  std::string path_;  // "kubeconfig.", "conditions[2]." or ""
  std::string problem_;
};

// A map of strings to values of one JSON type (postCreateHooks, hookLabels, capacity, data).
bool mapOf(Fields& f, const Json* map, const char* key, Json::value_t type) {
  if (map == nullptr) {
    return true;
  }
  for (auto it = map->begin(); it != map->end(); ++it) {
    if (it.value().type() != type) {
      std::string actual = it.value().is_number() ? "a number" : expected(it.value().type());
      f.note(std::string(key) + "." + it.key(), "must be " + expected(type) + ", not " + actual);
      return false;
    }
  }
  return true;
}

// The components of a status report: at most 16 of {name, state, restarts, lastExit}, short strings.
bool validComponents(const Json& c) {
  if (!c.is_array() || c.size() > 16) {
    return false;
  }
  for (const auto& x : c) {
    if (!x.is_object() || x.size() > 4 || !x.contains("name") || !x["name"].is_string() || !x.contains("state") ||
        !x["state"].is_string() || x["name"].get<std::string>().size() > 64 || x["state"].get<std::string>().size() > 64) {
      return false;
    }
    for (const auto& [k, v] : x.items()) {
      bool ok = (k == "name" || k == "state") || (k == "restarts" && v.is_number_integer()) ||
                (k == "lastExit" && v.is_string() && v.get<std::string>().size() <= 256);
      if (!ok) {
        return false;
      }
    }
  }
  return true;
}

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

std::string errorMessage(std::string_view code, std::string_view message) {
  return encode(msg::kError, "", 0, Json{{"code", code}, {"message", message}});
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

Result<Hello> helloFromJson(const Json& body) {
  Fields f(body, "");
  Hello h;
  h.name = f.string("name");
  h.acknowledged_revision = f.integer("acknowledgedRevision", 0);
  h.ca_bundle_hash = f.string("caBundleHash");
  for (const char* key : {"hostname", "os", "arch", "kernelVersion", "agentVersion"}) {
    if (std::string v = f.string(key); !v.empty()) {
      h.facts[key] = v.substr(0, 256);
    }
  }
  const Json* capacity = f.find("capacity", Json::value_t::object);
  if (mapOf(f, capacity, "capacity", Json::value_t::string) && capacity) {
    for (auto it = capacity->begin(); it != capacity->end(); ++it) {
      if (it.key().size() < 64) {
        h.capacity[it.key()] = it.value().get<std::string>().substr(0, 64);
      }
    }
  }
  if (const Json* types = f.find("controlPlaneTypes", Json::value_t::array)) {
    h.control_plane_types.emplace();
    for (size_t i = 0; i < types->size(); ++i) {
      const Json& t = (*types)[i];
      if (!t.is_string()) {
        f.note("controlPlaneTypes[" + std::to_string(i) + "]", "must be a string");
        break;
      }
      if (t.get_ref<const std::string&>().size() < 32 && h.control_plane_types->size() < 16) {
        h.control_plane_types->push_back(t.get<std::string>());
      }
    }
  }
  if (!f.problem().empty()) {
    return fail("hello: " + f.problem());
  }
  return h;
}

Result<StatusReport> statusReportFromJson(const Json& body) {
  Fields f(body, "");
  StatusReport r;
  r.control_plane = f.string("controlPlane");
  r.seq = f.integer("seq", -1);
  r.observed_generation = f.integer("observedGeneration", 0);
  const Json* conds = f.find("conditions", Json::value_t::array);
  for (size_t i = 0; conds && i < conds->size() && f.problem().empty(); ++i) {
    const Json& c = (*conds)[i];
    std::string at = "conditions[" + std::to_string(i) + "]";
    if (!c.is_object()) {
      f.note(at, "must be an object");
      break;
    }
    Fields cf(c, at + ".");
    ReportedCondition rc{cf.string("type"), cf.string("status"), cf.string("reason"), cf.string("message")};
    if (!cf.problem().empty()) {
      f.take(cf);
      break;
    }
    r.conditions.push_back(std::move(rc));
  }
  if (const Json* e = f.find("endpoint", Json::value_t::string)) {
    r.endpoint = *e;
  }
  if (const Json* c = f.find("components", Json::value_t::array)) {
    r.components = *c;
  }
  const Json* hooks = f.find("postCreateHooks", Json::value_t::object);
  if (mapOf(f, hooks, "postCreateHooks", Json::value_t::boolean) && hooks) {
    r.hook_states = *hooks;
  }
  if (const Json* done = f.find("postCreateHookCompleted", Json::value_t::boolean)) {
    r.hooks_done = *done;
  }
  const Json* labels = f.find("hookLabels", Json::value_t::object);
  if (mapOf(f, labels, "hookLabels", Json::value_t::string) && labels) {
    r.hook_labels = *labels;
  }
  if (const Json* kc = f.find("kubeconfig", Json::value_t::object)) {
    Fields kf(*kc, "kubeconfig.");
    StatusReport::Kubeconfig k;
    k.secret_name = kf.string("secretName");
    const Json* data = kf.find("data", Json::value_t::object);
    if (mapOf(kf, data, "data", Json::value_t::string) && data) {
      for (auto it = data->begin(); it != data->end(); ++it) {
        k.data[it.key()] = it.value().get<std::string>();
      }
    }
    f.take(kf);
    r.kubeconfig = std::move(k);
  }
  r.removed = f.boolean("removed");
  if (!f.problem().empty()) {
    return fail("status: " + f.problem());
  }
  // Then the bounds, field by field.
  bool conditions_ok = conds != nullptr && conds->size() <= 16;
  for (const auto& c : r.conditions) {
    conditions_ok = conditions_ok && !c.type.empty() && c.type.size() <= 64 &&
                    (c.status == "True" || c.status == "False" || c.status == "Unknown") && c.reason.size() <= 128 &&
                    c.message.size() <= 4096;
  }
  if (!isDns1123Label(r.control_plane) || r.seq < 0 || !conditions_ok) {
    return fail(
        "a status report needs controlPlane (a name), seq, and at most 16 conditions with type, status "
        "(True, False or Unknown), reason and message");
  }
  if ((!r.endpoint.is_null() && (r.endpoint.get_ref<const std::string&>().rfind("https://", 0) != 0 ||
                                 r.endpoint.get_ref<const std::string&>().size() > 256)) ||
      (!r.components.is_null() && !validComponents(r.components))) {
    return fail(
        "a status report's endpoint must be an https:// URL and its components at most 16 of {name, state, "
        "restarts, lastExit}");
  }
  bool hooks_ok = (r.hook_states.is_null() || r.hook_states.size() <= 64) &&
                  (r.hook_labels.is_null() || r.hook_labels.size() <= 64);
  for (const Json* group : {&r.hook_states, &r.hook_labels}) {
    for (auto it = group->begin(); hooks_ok && group->is_object() && it != group->end(); ++it) {
      hooks_ok = it.key().size() <= 253;
    }
  }
  if (!hooks_ok) {
    return fail(
        "a status report's postCreateHooks must map at most 64 hook names to booleans, postCreateHookCompleted "
        "be a boolean and hookLabels map at most 64 label keys to strings");
  }
  return r;
}

Result<std::string> csrFromJson(const Json& body) {
  Fields f(body, "");
  std::string csr = f.string("csr");
  if (!f.problem().empty()) {
    return fail("csr: " + f.problem());
  }
  return csr;
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
