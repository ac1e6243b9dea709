// SPDX-License-Identifier: Apache-2.0
#include "shared/protocol/messages.hpp"

#include <algorithm>
#include <limits>

#include "shared/common/util.hpp"

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

std::string actual(const Json& v) { return v.is_number() ? "a number" : expected(v.type()); }

// Reads the fields of one message object by the JSON type each must have. An absent (or null)
// field reads as nothing; one of another type reads as nothing too, and the first such is kept as
// the problem, named by its path. (nlohmann's value() throws on a type mismatch instead.)
class Fields {
 public:
  Fields(const Json& object, std::string path) : object_(object), path_(std::move(path)) {}
  /// The field when present with `type` (number_integer: any integer that fits int64_t).
  const Json* find(const char* key, Json::value_t type) {
    if (!object_.is_object()) {
      return nullptr;
    }
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) {
      return nullptr;
    }
    bool ok = type == Json::value_t::number_integer ? it->is_number_integer() : it->type() == type;
    if (!ok) {
      note(key, "must be " + expected(type) + ", not " + actual(*it));
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
  std::optional<std::string> optionalString(const char* key) {
    const Json* v = find(key, Json::value_t::string);
    return v ? std::optional<std::string>(v->get<std::string>()) : std::nullopt;
  }
  int64_t integer(const char* key, int64_t absent) {
    const Json* v = find(key, Json::value_t::number_integer);
    return v ? v->get<int64_t>() : absent;
  }
  bool boolean(const char* key) {
    const Json* v = find(key, Json::value_t::boolean);
    return v && v->get<bool>();
  }
  /// A map of strings to values of one JSON type (postCreateHooks, hookLabels, capacity, data);
  /// nullopt when absent or when a value has another type (then noted).
  template <class Value>
  std::optional<std::map<std::string, Value>> mapOf(const char* key, Json::value_t type) {
    const Json* map = find(key, Json::value_t::object);
    if (map == nullptr) {
      return std::nullopt;
    }
    std::map<std::string, Value> out;
    for (auto it = map->begin(); it != map->end(); ++it) {
      if (it.value().type() != type) {
        note(std::string(key) + "." + it.key(), "must be " + expected(type) + ", not " + actual(it.value()));
        return std::nullopt;
      }
      out.emplace(it.key(), it.value().get<Value>());
    }
    return out;
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
  /// The error for message `what` when a field was wrong.
  Error error(std::string_view what) const { return fail(std::string(what) + ": " + problem_); }

 private:
  const Json& object_;
  std::string path_;  // "kubeconfig.", "conditions[2]." or ""
  std::string problem_;
};

// Reads a message body with `read` (which takes its fields from a Fields); the first field of
// the wrong type is the error, named with the message `what`.
template <class Message, class Read>
Result<Message> readBody(const Json& body, std::string_view what, Read read) {
  Fields f(body, "");
  Message m = read(f);
  if (!f.problem().empty()) {
    return f.error(what);
  }
  return m;
}

// A list of desired objects (each an object with a metadata.name).
Result<std::vector<DesiredObject>> desiredObjects(const Json& body, const char* key, std::string_view what) {
  std::vector<DesiredObject> out;
  auto list = body.find(key);
  if (list == body.end() || list->is_null()) {
    return out;
  }
  if (!list->is_array()) {
    return fail(std::string(what) + ": " + key + " must be an array");
  }
  out.reserve(list->size());
  for (size_t i = 0; i < list->size(); ++i) {
    const Json& o = (*list)[i];
    auto meta = o.is_object() ? o.find("metadata") : o.end();
    bool named = o.is_object() && meta != o.end() && meta->is_object() && meta->contains("name") &&
                 (*meta)["name"].is_string() && !(*meta)["name"].get_ref<const std::string&>().empty();
    if (!named) {
      return fail(std::string(what) + ": " + key + "[" + std::to_string(i) + "] must be an object with metadata.name");
    }
    out.push_back({(*meta)["name"].get<std::string>(), o.dump()});
  }
  return out;
}

Json objectsJson(const std::vector<DesiredObject>& objects) {
  Json out = Json::array();
  for (const auto& o : objects) {
    out.push_back(Json::parse(o.json));
  }
  return out;
}

// Cuts a string to at most `max` bytes, at a UTF-8 character boundary.
void cut(std::string& s, size_t max) {
  if (s.size() > max) {
    s.resize(utf8Prefix(s, max));
  }
}

template <class Map>
void cutMap(std::optional<Map>& m, size_t max_entries, size_t max_key) {
  if (!m) {
    return;
  }
  for (auto it = m->begin(); it != m->end();) {
    it = it->first.size() > max_key ? m->erase(it) : std::next(it);
  }
  while (m->size() > max_entries) {
    m->erase(std::prev(m->end()));
  }
}

}  // namespace

// --- Hello ---

Json Hello::toJson() const {
  Json j = Json::object();
  j["name"] = name;
  j["acknowledgedRevision"] = acknowledged_revision;
  if (!ca_bundle_hash.empty()) {
    j["caBundleHash"] = ca_bundle_hash;
  }
  for (const auto& [k, v] : facts) {
    j[k] = v;
  }
  j["capacity"] = capacity;
  if (control_plane_types) {
    j["controlPlaneTypes"] = *control_plane_types;
  }
  if (tunnel > 0) {
    j["tunnel"] = tunnel;
  }
  return j;
}

Result<Hello> Hello::fromJson(const Json& body) {
  Fields f(body, "");
  Hello h;
  h.name = f.string("name");
  h.acknowledged_revision = f.integer("acknowledgedRevision", 0);
  h.ca_bundle_hash = f.string("caBundleHash");
  h.tunnel = f.integer("tunnel", 0);
  for (const char* key : {"hostname", "os", "arch", "kernelVersion", "agentVersion"}) {
    if (std::string v = f.string(key); !v.empty()) {
      cut(v, 256);
      h.facts[key] = std::move(v);
    }
  }
  if (auto capacity = f.mapOf<std::string>("capacity", Json::value_t::string)) {
    for (auto& [k, v] : *capacity) {
      if (k.size() < 64) {
        cut(v, 64);
        h.capacity[k] = std::move(v);
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
    return f.error("hello");
  }
  return h;
}

// --- Welcome ---

Json Welcome::toJson() const {
  return {{"leaseRenewSeconds", lease_renew_seconds},
          {"leaseDurationSeconds", lease_duration_seconds},
          {"hubVersion", hub_version},
          {"certificateExpired", certificate_expired}};
}

Result<Welcome> Welcome::fromJson(const Json& body) {
  return readBody<Welcome>(body, "welcome", [](Fields& f) {
    return Welcome{std::clamp<int64_t>(f.integer("leaseRenewSeconds", 10), 1, 3600),
                   std::max<int64_t>(f.integer("leaseDurationSeconds", 50), 1), f.string("hubVersion"),
                   f.boolean("certificateExpired")};
  });
}

// --- Snapshot and Delta ---

Json Snapshot::toJson() const { return {{"controlPlanes", objectsJson(control_planes)}, {"deletes", Json::array()}}; }

Result<Snapshot> Snapshot::fromJson(const Json& body) {
  auto objects = desiredObjects(body, "controlPlanes", "snapshot");
  if (!objects) {
    return objects.error();
  }
  return Snapshot{std::move(objects.value())};
}

Json Delta::toJson() const { return {{"upserts", objectsJson(upserts)}, {"deletes", deletes}}; }

Result<Delta> Delta::fromJson(const Json& body) {
  auto objects = desiredObjects(body, "upserts", "delta");
  if (!objects) {
    return objects.error();
  }
  Delta d;
  d.upserts = std::move(objects.value());
  if (auto list = body.find("deletes"); list != body.end() && !list->is_null()) {
    if (!list->is_array()) {
      return fail("delta: deletes must be an array of names");
    }
    for (const auto& n : *list) {
      if (!n.is_string()) {
        return fail("delta: deletes must be an array of names");
      }
      d.deletes.push_back(n.get<std::string>());
    }
  }
  return d;
}

std::string encodeDesired(bool snapshot, uint64_t id, int64_t revision, const std::vector<const std::string*>& objects,
                          const std::vector<std::string>& deletes) {
  std::string_view type = snapshot ? Snapshot::kType : Delta::kType;
  size_t size = 96 + deletes.size() * 16;
  for (const std::string* o : objects) {
    size += o->size() + 1;
  }
  std::string out;
  out.reserve(size);
  out += "{\"v\":" + std::to_string(kVersion) + ",\"type\":\"";
  out += type;
  out += "\",\"id\":\"" + std::to_string(id) + "\",\"rev\":" + std::to_string(revision) + ",\"body\":{\"";
  out += snapshot ? "controlPlanes" : "upserts";
  out += "\":[";
  for (size_t i = 0; i < objects.size(); ++i) {
    if (i > 0) {
      out += ',';
    }
    out += *objects[i];
  }
  out += "],\"deletes\":" + Json(deletes).dump() + "}}";
  return out;
}

// --- StatusReport ---

ReportedCondition* StatusReport::condition(std::string_view type) {
  auto it = std::find_if(conditions.begin(), conditions.end(), [&](const ReportedCondition& c) { return c.type == type; });
  return it == conditions.end() ? nullptr : &*it;
}

void StatusReport::clampToBounds() {
  if (conditions.size() > kMaxConditions) {
    conditions.resize(kMaxConditions);
  }
  for (auto& c : conditions) {
    cut(c.type, 64);
    cut(c.reason, 128);
    cut(c.message, 4096);
  }
  if (endpoint && endpoint->size() > 256) {
    endpoint.reset();
  }
  if (components) {
    if (components->size() > kMaxComponents) {
      components->resize(kMaxComponents);
    }
    for (auto& c : *components) {
      cut(c.name, 64);
      cut(c.state, 64);
      if (c.last_exit) {
        cut(*c.last_exit, 256);
      }
    }
  }
  cutMap(hook_states, kMaxHooks, 253);
  cutMap(hook_labels, kMaxHooks, 253);
}

Json StatusReport::componentsJson() const {
  if (!components) {
    return Json();
  }
  Json out = Json::array();
  for (const auto& c : *components) {
    Json j = {{"name", c.name}, {"state", c.state}};
    if (c.restarts) {
      j["restarts"] = *c.restarts;
    }
    if (c.last_exit) {
      j["lastExit"] = *c.last_exit;
    }
    out.push_back(std::move(j));
  }
  return out;
}

Json StatusReport::toJson() const {
  Json j = {{"controlPlane", control_plane}, {"seq", seq}, {"observedGeneration", observed_generation}};
  Json conds = Json::array();
  for (const auto& c : conditions) {
    conds.push_back({{"type", c.type}, {"status", c.status}, {"reason", c.reason}, {"message", c.message}});
  }
  j["conditions"] = std::move(conds);
  if (endpoint) {
    j["endpoint"] = *endpoint;
  }
  if (components) {
    j["components"] = componentsJson();
  }
  if (hook_states) {
    j["postCreateHooks"] = *hook_states;
  }
  if (hooks_done) {
    j["postCreateHookCompleted"] = *hooks_done;
  }
  if (hook_labels) {
    j["hookLabels"] = *hook_labels;
  }
  if (kubeconfig) {
    j["kubeconfig"] = {{"secretName", kubeconfig->secret_name}, {"data", kubeconfig->data}};
  }
  if (removed) {
    j["removed"] = true;
  }
  return j;
}

Result<StatusReport> StatusReport::fromJson(const Json& body) {
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
  r.endpoint = f.optionalString("endpoint");
  bool components_ok = true;
  if (const Json* list = f.find("components", Json::value_t::array)) {
    components_ok = list->size() <= kMaxComponents;
    r.components.emplace();
    for (size_t i = 0; components_ok && i < list->size(); ++i) {
      const Json& x = (*list)[i];
      components_ok = x.is_object() && x.size() <= 4;
      if (!components_ok) {
        break;
      }
      Fields cf(x, "components[" + std::to_string(i) + "].");
      Component c{cf.string("name"), cf.string("state"), std::nullopt, cf.optionalString("lastExit")};
      if (const Json* restarts = cf.find("restarts", Json::value_t::number_integer)) {
        c.restarts = restarts->get<int64_t>();
      }
      for (auto it = x.begin(); it != x.end(); ++it) {
        components_ok = components_ok && (it.key() == "name" || it.key() == "state" || it.key() == "restarts" ||
                                          it.key() == "lastExit");
      }
      components_ok = components_ok && cf.problem().empty() && x.contains("name") && x.contains("state") &&
                      c.name.size() <= 64 && c.state.size() <= 64 && (!c.last_exit || c.last_exit->size() <= 256);
      r.components->push_back(std::move(c));
    }
  }
  r.hook_states = f.mapOf<bool>("postCreateHooks", Json::value_t::boolean);
  if (const Json* done = f.find("postCreateHookCompleted", Json::value_t::boolean)) {
    r.hooks_done = done->get<bool>();
  }
  r.hook_labels = f.mapOf<std::string>("hookLabels", Json::value_t::string);
  if (const Json* kc = f.find("kubeconfig", Json::value_t::object)) {
    Fields kf(*kc, "kubeconfig.");
    StatusReport::Kubeconfig k;
    k.secret_name = kf.string("secretName");
    if (auto data = kf.mapOf<std::string>("data", Json::value_t::string)) {
      k.data = std::move(*data);
    }
    f.take(kf);
    r.kubeconfig = std::move(k);
  }
  r.removed = f.boolean("removed");
  if (!f.problem().empty()) {
    return f.error("status");
  }
  // Then the bounds, field by field.
  bool conditions_ok = conds != nullptr && conds->size() <= kMaxConditions;
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
  if ((r.endpoint && (r.endpoint->rfind("https://", 0) != 0 || r.endpoint->size() > 256)) || !components_ok) {
    return fail(
        "a status report's endpoint must be an https:// URL and its components at most 16 of {name, state, "
        "restarts, lastExit}");
  }
  bool hooks_ok = (!r.hook_states || r.hook_states->size() <= kMaxHooks) &&
                  (!r.hook_labels || r.hook_labels->size() <= kMaxHooks);
  for (const auto& [key, value] : r.hook_states.value_or(std::map<std::string, bool>{})) {
    hooks_ok = hooks_ok && key.size() <= 253;
  }
  for (const auto& [key, value] : r.hook_labels.value_or(std::map<std::string, std::string>{})) {
    hooks_ok = hooks_ok && key.size() <= 253;
  }
  if (!hooks_ok) {
    return fail(
        "a status report's postCreateHooks must map at most 64 hook names to booleans, postCreateHookCompleted "
        "be a boolean and hookLabels map at most 64 label keys to strings");
  }
  return r;
}

// --- The small ones ---

Json StatusAck::toJson() const { return {{"seq", seq}}; }

Result<StatusAck> StatusAck::fromJson(const Json& body) {
  return readBody<StatusAck>(body, "status-ack", [](Fields& f) { return StatusAck{f.integer("seq", 0)}; });
}

Json Csr::toJson() const { return {{"csr", csr_pem}}; }

Result<Csr> Csr::fromJson(const Json& body) {
  return readBody<Csr>(body, "csr", [](Fields& f) { return Csr{f.string("csr")}; });
}

Json Certificate::toJson() const {
  Json j = {{"certificate", certificate_pem}};
  if (!ca_bundle_pem.empty()) {
    j["caBundle"] = ca_bundle_pem;
  }
  return j;
}

Result<Certificate> Certificate::fromJson(const Json& body) {
  return readBody<Certificate>(body, "certificate",
                               [](Fields& f) { return Certificate{f.string("certificate"), f.string("caBundle")}; });
}

Json CaBundle::toJson() const { return {{"caBundle", ca_bundle_pem}, {"renewCertificate", renew_certificate}}; }

Result<CaBundle> CaBundle::fromJson(const Json& body) {
  return readBody<CaBundle>(body, "ca-bundle",
                            [](Fields& f) { return CaBundle{f.string("caBundle"), f.boolean("renewCertificate")}; });
}

Json ErrorBody::toJson() const { return {{"code", code}, {"message", message}}; }

Result<ErrorBody> ErrorBody::fromJson(const Json& body) {
  return readBody<ErrorBody>(body, "error", [](Fields& f) { return ErrorBody{f.string("code"), f.string("message")}; });
}

}  // namespace kflex::protocol
