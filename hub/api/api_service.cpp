// SPDX-License-Identifier: Apache-2.0
#include "hub/api/api_service.hpp"

#include <algorithm>
#include <cctype>
#include <optional>
#include <variant>

#include "hub/api/managed_fields.hpp"
#include "hub/api/openapi_proto.hpp"
#include "shared/common/json_decode.hpp"
#include "shared/common/json_pluck.hpp"
#include "shared/common/json_write.hpp"
#include "shared/common/log.hpp"
#include "shared/common/util.hpp"
#include "shared/common/version.hpp"
#include "shared/config/yaml_json.hpp"
#include "shared/model/selector.hpp"

namespace kflex::hub {
namespace {

using model::FieldError;
using model::ResourceType;
using model::FieldSelector;
using model::LabelSelector;

constexpr const char* kJson = "application/json";

}  // namespace

std::string resourceKey(const ResourceType& t, const std::string& ns) {
  // Objects of a namespaced kind are kept per namespace: "group/plural/namespace".
  return t.namespaced ? t.group + "/" + t.plural + "/" + ns : t.group + "/" + t.plural;
}

std::string objectPath(const ResourceType& t, const std::string& name, bool status, const std::string& ns) {
  std::string base = t.group.empty() ? "/api/" + t.version : "/apis/" + t.apiVersion();
  if (t.namespaced) {
    base += "/namespaces/" + ns;
  }
  return base + "/" + t.plural + "/" + name + (status ? "/status" : "");
}

ApiResponse statusResponse(unsigned code, const std::string& reason, const std::string& message,
                           const Json& details) {
  Json s = {{"kind", "Status"}, {"apiVersion", "v1"}, {"metadata", Json::object()}, {"status", "Failure"},
            {"message", message}, {"reason", reason}, {"code", code}};
  if (!details.is_null()) {
    s["details"] = details;
  }
  ApiResponse r;
  r.status = code;
  r.body = dumpSafe(s);  // a message may quote bytes a client sent that are not UTF-8
  return r;
}

namespace {
// Adds a Warning header (RFC 9111 §5.5, as kube-apiserver writes them) per message.
void addWarnings(ApiResponse& r, const std::vector<std::string>& warnings) {
  for (const auto& w : warnings) {
    r.headers.emplace_back("Warning", "299 - " + dumpSafe(Json(w)));
  }
}

std::string qualifiedResource(const ResourceType& t) {
  return t.group.empty() ? t.plural : t.plural + "." + t.group;
}

ApiResponse fromDecision(const Decision& d) {
  return statusResponse(unsigned(d.status), d.reason, d.message, d.details);
}

Decision failure(int status, std::string reason, std::string message, Json details = nullptr) {
  Decision d;
  d.kind = Decision::Kind::Fail;
  d.status = status;
  d.reason = std::move(reason);
  d.message = std::move(message);
  d.details = std::move(details);
  return d;
}

Decision notFound(const ResourceType& t, const std::string& name) {
  return failure(404, "NotFound", qualifiedResource(t) + " \"" + name + "\" not found",
                 {{"name", name}, {"group", t.group}, {"kind", t.plural}});
}

Decision conflict(const ResourceType& t, const std::string& name) {
  return failure(409, "Conflict",
                 "Operation cannot be fulfilled on " + qualifiedResource(t) + " \"" + name +
                     "\": the object has been modified; please apply your changes to the latest version and try again",
                 {{"name", name}, {"group", t.group}, {"kind", t.plural}});
}

Decision invalid(const ResourceType& t, const std::string& name, const std::vector<FieldError>& errors) {
  Json causes = Json::array();
  std::string joined;
  for (const auto& e : errors) {
    causes.push_back({{"reason", e.reason}, {"message", e.message}, {"field", e.field}});
    joined += (joined.empty() ? "" : ", ") + e.field + ": " + e.message;
  }
  if (errors.size() > 1) {
    joined = "[" + joined + "]";
  }
  return failure(422, "Invalid", t.qualifiedKind() + " \"" + name + "\" is invalid: " + joined,
                 {{"name", name}, {"group", t.group}, {"kind", t.kind}, {"causes", causes}});
}

bool isDryRun(const ApiRequest& req) {
  auto it = req.query.find("dryRun");
  return it != req.query.end() && it->second == "All";
}

// What kubectl and client-go call the manager when fieldManager is not given.
std::string managerOf(const ApiRequest& req) {
  auto it = req.query.find("fieldManager");
  if (it != req.query.end() && !it->second.empty()) {
    return it->second;
  }
  std::string ua = req.user_agent;
  auto slash = ua.find('/');
  return slash == std::string::npos ? (ua.empty() ? "unknown" : ua) : ua.substr(0, slash);
}

// Decodes a request's JSON or YAML body. `duplicates`, when given, receives the paths of keys a
// JSON body sets twice (YAML refuses them in any case).
Result<Json> parseBody(const ApiRequest& req, std::vector<std::string>* duplicates = nullptr) {
  if (trim(req.body).empty()) {
    return fail("the request body is empty; send a JSON or YAML object");
  }
  bool yaml = req.content_type.find("yaml") != std::string::npos;
  if (!yaml) {
    auto j = decodeJson(req.body, {kMaxJsonDepth, duplicates});
    if (!j) {
      return fail("couldn't decode the JSON body: " + j.error().message);
    }
    return j;
  }
  auto j = config::yamlToJson(req.body);
  if (!j) {
    return fail("couldn't decode the YAML body: " + j.error().message);
  }
  return j;
}

// Checks apiVersion/kind of a body against the endpoint; fills them in when absent.
std::optional<Decision> checkKind(Json& obj, const ResourceType& t, const std::string& ns) {
  if (!obj.is_object()) {
    return failure(400, "BadRequest", "the body must be a JSON or YAML object, not " + std::string(obj.type_name()));
  }
  // (null is absent, as kube's decoder reads it; the type is checked before the value is read.)
  for (const char* field : {"apiVersion", "kind"}) {
    if (auto it = obj.find(field); it != obj.end() && !it->is_string() && !it->is_null()) {
      return failure(400, "BadRequest", std::string(field) + " must be a string");
    }
  }
  auto text = [&obj](const char* field) {
    auto it = obj.find(field);
    return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  std::string api_version = text("apiVersion");
  std::string kind = text("kind");
  if (!api_version.empty() && api_version != t.apiVersion()) {
    return failure(400, "BadRequest", "the API version in the data (" + api_version +
                                          ") does not match the expected API version (" + t.apiVersion() + ")");
  }
  if (!kind.empty() && kind != t.kind) {
    return failure(400, "BadRequest",
                   "the kind in the data (" + kind + ") does not match the expected kind (" + t.kind + ")");
  }
  obj["apiVersion"] = t.apiVersion();
  obj["kind"] = t.kind;
  if (!obj.contains("metadata")) {
    obj["metadata"] = Json::object();
  }
  if (!obj["metadata"].is_object()) {
    return failure(400, "BadRequest", "metadata must be an object");
  }
  if (!t.namespaced) {
    obj["metadata"].erase("namespace");
    return std::nullopt;
  }
  const Json& given = obj["metadata"]["namespace"];
  if (!given.is_null() && given != "" && given != ns) {
    return failure(400, "BadRequest", "the namespace of the provided object (" + given.dump() +
                                          ") does not match the namespace sent on the request (" + ns + ")");
  }
  obj["metadata"]["namespace"] = ns;
  return std::nullopt;
}

// Validates and defaults everything but server-managed metadata. Returns errors.
std::vector<FieldError> validateObject(const ResourceType& t, Json& obj, model::UnknownFields unknown,
                                       std::vector<std::string>& dropped) {
  std::vector<FieldError> errors;
  model::validateObjectMeta(obj["metadata"], t.namespaced, t.name_is_label, errors);
  Json metadata = std::move(obj["metadata"]);
  obj.erase("metadata");
  model::validateAndDefault(*t.compiled_schema, obj, "", unknown, errors, dropped);  // (every kind is registered)
  obj["metadata"] = std::move(metadata);
  model::applyKindRules(t, obj, errors);
  if (errors.empty() && t.admit) {
    t.admit(obj);
  }
  return errors;
}

// A status write keeps metadata and spec as they are stored (validated when they were written):
// only status is checked against the schema; the kind's own rules still see the whole object.
std::vector<FieldError> validateStatusWrite(const ResourceType& t, Json& obj, model::UnknownFields unknown,
                                            std::vector<std::string>& dropped) {
  const model::CompiledSchema* schema = t.compiled_schema->property("status");
  if (schema == nullptr) {
    return validateObject(t, obj, unknown, dropped);
  }
  std::vector<FieldError> errors;
  if (auto st = obj.find("status"); st != obj.end()) {
    model::validateAndDefault(*schema, *st, "status", unknown, errors, dropped);
  }
  model::applyKindRules(t, obj, errors);
  return errors;
}

model::UnknownFields unknownPolicy(const ApiRequest& req) {
  auto it = req.query.find("fieldValidation");
  if (it != req.query.end() && (it->second == "Ignore" || it->second == "Warn")) {
    return model::UnknownFields::Drop;
  }
  return model::UnknownFields::Reject;
}

// With fieldValidation=Warn the dropped unknown fields come back as warnings.
std::vector<std::string> unknownFieldWarnings(const ApiRequest& req, const std::vector<std::string>& dropped) {
  std::vector<std::string> out;
  auto it = req.query.find("fieldValidation");
  if (it != req.query.end() && it->second == "Warn") {
    for (const auto& f : dropped) {
      out.push_back("unknown field \"" + f + "\"");
    }
  }
  return out;
}

std::optional<Decision> checkFieldValidationParam(const ApiRequest& req) {
  auto it = req.query.find("fieldValidation");
  if (it != req.query.end() && it->second != "Ignore" && it->second != "Warn" && it->second != "Strict") {
    return failure(400, "BadRequest", "fieldValidation must be one of Ignore, Warn or Strict, not \"" + it->second + "\"");
  }
  return std::nullopt;
}

// True when two objects are equal in every key but those in `skip` (compared in place: these
// objects are copied nowhere on the way to the store).
bool equalExcept(const Json& a, const Json& b, std::initializer_list<const char*> skip) {
  if (!a.is_object() || !b.is_object()) {
    return a == b;
  }
  auto skipped = [&skip](const std::string& key) {
    return std::any_of(skip.begin(), skip.end(), [&key](const char* s) { return key == s; });
  };
  size_t compared = 0;
  for (auto it = a.begin(); it != a.end(); ++it) {
    if (skipped(it.key())) {
      continue;
    }
    auto other = b.find(it.key());
    if (other == b.end() || *other != it.value()) {
      return false;
    }
    ++compared;
  }
  size_t in_b = 0;
  for (auto it = b.begin(); it != b.end(); ++it) {
    in_b += skipped(it.key()) ? 0 : 1;
  }
  return compared == in_b;
}

const Json& metaOf(const Json& obj) {
  static const Json kEmpty = Json::object();
  auto it = obj.find("metadata");
  return it != obj.end() && it->is_object() ? *it : kEmpty;
}

bool hasFinalizers(const Json& obj) {
  auto f = metaOf(obj).find("finalizers");
  return f != metaOf(obj).end() && f->is_array() && !f->empty();
}

// Applies the rules every write shares once the new object is known: keeps server-owned metadata,
// keeps the other half (status or the rest) of the object, bumps generation, validates, and turns
// the removal of the last finalizer of a deleting object into a delete.
Decision finishUpdate(const ResourceType& t, const ApiRequest& req, const std::string& name, const Json& old_obj,
                      Json obj, const std::string& subresource, const std::string& now,
                      std::vector<std::string>* dropped_out) {
  const Json& old_meta = metaOf(old_obj);
  Json& meta = obj["metadata"];
  std::string want_rv = meta.value("resourceVersion", "");
  if (meta.contains("name") && meta["name"] != name) {
    return failure(400, "BadRequest", "the name of the object (" + meta["name"].dump() +
                                          ") does not match the name on the URL (" + name + ")");
  }
  meta["name"] = name;
  if (!want_rv.empty() && want_rv != old_meta.value("resourceVersion", "")) {
    return conflict(t, name);
  }
  if (meta.contains("uid") && meta["uid"] != old_meta.value("uid", "")) {
    return failure(409, "Conflict", "Precondition failed: UID in precondition: " + meta["uid"].dump() +
                                        ", UID in object meta: " + old_meta.value("uid", ""));
  }
  for (const char* key : {"uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"}) {
    if (old_meta.contains(key)) {
      meta[key] = old_meta[key];
    } else {
      meta.erase(key);
    }
  }
  meta.erase("resourceVersion");
  if (subresource == "status") {
    // Status writes change only status (and nothing of metadata).
    Json status = obj.contains("status") ? obj["status"] : Json(nullptr);
    obj = old_obj;
    if (status.is_null()) {
      obj.erase("status");
    } else {
      obj["status"] = status;
    }
    // managedFields is recorded by the caller on `obj`.
  } else {
    if (t.has_status) {
      if (old_obj.contains("status")) {
        obj["status"] = old_obj["status"];
      } else {
        obj.erase("status");
      }
    }
    if (old_meta.contains("deletionTimestamp") && meta.contains("finalizers")) {
      std::set<std::string> before;
      if (auto f = old_meta.find("finalizers"); f != old_meta.end() && f->is_array()) {
        for (const auto& x : *f) {
          before.insert(x.dump());
        }
      }
      for (const auto& x : meta["finalizers"]) {
        if (before.count(x.dump()) == 0) {
          return failure(422, "Invalid", t.qualifiedKind() + " \"" + name +
                                             "\" is invalid: metadata.finalizers: Forbidden: no new finalizers can be "
                                             "added if the object is being deleted, found new finalizers " + x.dump());
        }
      }
    }
  }
  std::vector<std::string> dropped;
  auto errors = subresource == "status" ? validateStatusWrite(t, obj, unknownPolicy(req), dropped)
                                        : validateObject(t, obj, unknownPolicy(req), dropped);
  if (errors.empty() && t.validate_update) {
    try {
      t.validate_update(old_obj, obj, errors);
    } catch (const Json::exception&) {
      errors.push_back({"FieldValueInvalid", "", "Invalid value: the object does not have the shape of a " + t.kind});
    }
  }
  if (dropped_out != nullptr) {
    *dropped_out = dropped;
  }
  if (!errors.empty()) {
    return invalid(t, name, errors);
  }
  if (!equalExcept(obj, old_obj, {"metadata", "status"})) {
    obj["metadata"]["generation"] = old_meta.value("generation", int64_t(1)) + 1;
  }
  bool own_managed_fields = subresource != "apply" && setsManagedFields(old_obj, obj, subresource);
  if (subresource != "apply") {
    recordUpdate(&old_obj, obj, managerOf(req), subresource == "status" ? "status" : "", now);
  }
  // Compare without the volatile managedFields timestamps (unless the writer set them itself).
  if (!own_managed_fields && equalExcept(obj, old_obj, {"metadata"}) &&
      equalExcept(metaOf(obj), metaOf(old_obj), {"resourceVersion", "managedFields"})) {
    Decision d;
    d.kind = Decision::Kind::Unchanged;
    return d;
  }
  Decision d;
  d.warnings = unknownFieldWarnings(req, dropped);
  if (obj["metadata"].contains("deletionTimestamp") && !hasFinalizers(obj)) {
    d.kind = Decision::Kind::Delete;
    return d;
  }
  d.kind = Decision::Kind::Put;
  d.object = std::move(obj);
  return d;
}

// Fills in what create sets: uid, creationTimestamp, generation; drops what a client may not set.
Decision prepareCreate(const ResourceType& t, const ApiRequest& req, Json obj, const std::string& now) {
  Json& meta = obj["metadata"];
  if (!meta.value("resourceVersion", "").empty()) {
    return failure(500, "InternalError", "resourceVersion should not be set on objects to be created");
  }
  for (const char* key : {"uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                          "generation", "resourceVersion", "selfLink"}) {
    meta.erase(key);
  }
  if (t.has_status) {
    obj.erase("status");
  }
  std::string name = meta.value("name", "");
  std::vector<std::string> dropped;
  auto errors = validateObject(t, obj, unknownPolicy(req), dropped);
  if (!errors.empty()) {
    return invalid(t, name, errors);
  }
  if (t.on_create) {
    t.on_create(obj);
  }
  Json& fresh = obj["metadata"];  // validateObject re-seated metadata
  fresh["uid"] = newUuid();
  fresh["creationTimestamp"] = now;
  fresh["generation"] = 1;
  Decision d;
  d.kind = Decision::Kind::Put;
  d.object = std::move(obj);
  d.warnings = unknownFieldWarnings(req, dropped);
  return d;
}

Json parseObject(const ObjectRecord& rec) { return Json::parse(rec.bytes); }

std::string watchEventLine(EventType type, const std::string& object_json) {
  const char* name = type == EventType::Added ? "ADDED" : type == EventType::Modified ? "MODIFIED" : "DELETED";
  std::string line;
  line.reserve(object_json.size() + 32);
  line += "{\"type\":\"";
  line += name;
  line += "\",\"object\":";
  line += object_json;
  line += "}\n";
  return line;
}

bool wantsTable(const ApiRequest& req) { return req.accept.find("as=Table") != std::string::npos; }

Json partialMetadata(const Json& obj) {
  return {{"kind", "PartialObjectMetadata"}, {"apiVersion", "meta.k8s.io/v1"}, {"metadata", metaOf(obj)}};
}

// Checks the query, decodes the body and checks its apiVersion/kind: the steps create and update
// share. Returns the error response, or nothing with the object in `out`.
// Duplicate keys are refused under fieldValidation=Strict (the default here), come back as
// warnings under Warn, and are ignored under Ignore (the last one wins), as kube-apiserver does.
std::optional<ApiResponse> decodeObject(const ApiRequest& req, const ResourceType& t, Json& out,
                                        std::vector<std::string>& warnings) {
  if (auto bad = checkFieldValidationParam(req)) {
    return fromDecision(*bad);
  }
  std::string media(trim(std::string_view(req.content_type).substr(0, req.content_type.find(';'))));
  std::transform(media.begin(), media.end(), media.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  if (media != "application/json" && media != "application/yaml") {
    // kube-apiserver decodes a body only in a media type it names; no guessing from the bytes.
    return statusResponse(415, "UnsupportedMediaType",
                          (media.empty() ? std::string("the request has no Content-Type")
                                         : "the body of the request was in an unknown format (" + media + ")") +
                              " - accepted media types include: application/json, application/yaml");
  }
  std::vector<std::string> duplicates;
  auto body = parseBody(req, &duplicates);
  if (!body) {
    return statusResponse(400, "BadRequest", body.error().message);
  }
  if (!duplicates.empty()) {
    auto fv = req.query.find("fieldValidation");
    std::string policy = fv == req.query.end() ? "Strict" : fv->second;
    std::string listed;
    for (const auto& d : duplicates) {
      listed += (listed.empty() ? "" : ", ") + std::string("duplicate field \"") + d + "\"";
      if (policy == "Warn") {
        warnings.push_back("duplicate field \"" + d + "\"");
      }
    }
    if (policy == "Strict") {
      return statusResponse(400, "BadRequest", "strict decoding error: " + listed);
    }
  }
  out = std::move(body.value());
  if (auto bad = checkKind(out, t, req.ns)) {
    return fromDecision(*bad);
  }
  // The metadata strings every handler reads, typed as kube-apiserver's decoder types them
  // (null is absent, as in Go).
  Json& meta = out["metadata"];
  for (const char* key : {"name", "generateName", "namespace", "resourceVersion", "uid"}) {
    auto it = meta.find(key);
    if (it == meta.end()) {
      continue;
    }
    if (it->is_null()) {
      meta.erase(it);
    } else if (!it->is_string()) {
      return statusResponse(400, "BadRequest", std::string("json: cannot unmarshal ") + it->type_name() +
                                                   " into Go struct field ObjectMeta.metadata." + key + " of type string");
    }
  }
  return std::nullopt;
}

// The resourceVersion of a list or watch, as kube-apiserver reads it: "" or a decimal revision
// (no sign, nothing after it); one the hub has not reached yet is answered at once with kube's
// "Too large resource version" (504, retry after a second) instead of being held open.
std::optional<ApiResponse> checkQueryResourceVersion(const ApiRequest& req, int64_t current, int64_t& out) {
  out = 0;
  auto it = req.query.find("resourceVersion");
  if (it == req.query.end() || it->second.empty()) {
    return std::nullopt;
  }
  const std::string& rv = it->second;
  auto digits = std::all_of(rv.begin(), rv.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits || rv.size() > 18) {
    return statusResponse(400, "BadRequest", "invalid resourceVersion \"" + rv +
                                                 "\": must be a revision number such as \"42\", as returned in metadata.resourceVersion");
  }
  out = std::stoll(rv);
  if (out > current) {
    return statusResponse(504, "Timeout", "Too large resource version: " + rv + ", current: " + std::to_string(current),
                          {{"causes", Json::array({{{"reason", "ResourceVersionTooLarge"},
                                                    {"message", "Too large resource version"}}})},
                           {"retryAfterSeconds", 1}});
  }
  if (auto m = req.query.find("resourceVersionMatch"); m != req.query.end() && !m->second.empty() &&
                                                       m->second != "NotOlderThan" && m->second != "Exact") {
    return statusResponse(400, "BadRequest", "resourceVersionMatch: Unsupported value: \"" + m->second +
                                                 "\": supported values: \"Exact\", \"NotOlderThan\"");
  }
  return std::nullopt;
}

struct Selectors {
  LabelSelector labels;
  FieldSelector fields;
};

// Parses labelSelector and fieldSelector; the error response when either is malformed.
std::variant<Selectors, ApiResponse> parseSelectors(const ApiRequest& req) {
  auto param = [&](const char* key) { return req.query.count(key) ? req.query.at(key) : std::string(); };
  auto labels = LabelSelector::parse(param("labelSelector"));
  if (!labels) {
    return statusResponse(400, "BadRequest", "unable to parse labelSelector: " + labels.error().message);
  }
  auto fields = FieldSelector::parse(param("fieldSelector"));
  if (!fields) {
    return statusResponse(400, "BadRequest", "unable to parse fieldSelector: " + fields.error().message);
  }
  return Selectors{std::move(labels.value()), std::move(fields.value())};
}

}  // namespace

bool User::isAdmin() const {
  return std::find(groups.begin(), groups.end(), "system:masters") != groups.end();
}

void parseTarget(std::string_view target, std::string& path, std::map<std::string, std::string>& query) {
  auto decode = [](std::string_view s, bool plus_is_space) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
          std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
        out += char(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
        i += 2;
      } else if (s[i] == '+' && plus_is_space) {
        out += ' ';
      } else {
        out += s[i];
      }
    }
    return out;
  };
  auto q = target.find('?');
  path = decode(target.substr(0, q), false);
  if (q == std::string_view::npos) {
    return;
  }
  for (const auto& part : split(target.substr(q + 1), '&')) {
    if (part.empty()) {
      continue;
    }
    auto eq = part.find('=');
    if (eq == std::string::npos) {
      query[decode(part, true)] = "";
    } else {
      query[decode(std::string_view(part).substr(0, eq), true)] = decode(std::string_view(part).substr(eq + 1), true);
    }
  }
}

ApiService::ApiService(ObjectStore& store, const model::Registry& registry, const Clock& clock, ApiOptions options)
    : store_(store), registry_(registry), clock_(clock), options_(std::move(options)),
      docs_(buildDiscovery(registry, options_.server_version)) {}

namespace {
// A request made by the hub itself: user system:kflex-hub in group system:masters.
ApiRequest hubRequest(http::verb method, const std::string& path) {
  ApiRequest req;
  req.method = method;
  parseTarget(path, req.path, req.query);
  req.user_agent = kHubFieldManager;
  req.user.name = "system:kflex-hub";
  req.user.groups = {"system:masters", "system:authenticated"};
  return req;
}
}  // namespace

net::awaitable<ApiResponse> ApiService::internal(http::verb method, std::string path, std::string body,
                                                 std::string content_type) {
  ApiRequest req = hubRequest(method, path);
  req.body = std::move(body);
  req.content_type = std::move(content_type);
  co_return co_await handle(std::move(req));
}

net::awaitable<unsigned> ApiService::changeStatus(const ResourceType& t, std::string name,
                                                  std::function<bool(Json& obj)> change) {
  co_return co_await changeStatusIn(t, "", std::move(name), std::move(change));
}

net::awaitable<unsigned> ApiService::changeStatusIn(const ResourceType& t, std::string ns, std::string name,
                                                    std::function<bool(Json& obj)> change) {
  ApiRequest req = hubRequest(http::verb::put, objectPath(t, name, true, ns));
  req.ns = t.namespaced ? ns : "";
  unsigned last = 409;
  for (int attempt = 0; attempt < 8 && last == 409; ++attempt) {
    ObjectPtr seen = store_.get(resourceKey(t, req.ns), name);
    if (!seen) {
      co_return 404;
    }
    // `change` runs here, on the caller's strand, never on the writer thread.
    Json old_obj = parseObject(*seen);
    Json obj = old_obj;
    if (!change(obj)) {
      co_return 200;
    }
    auto prepared = std::make_shared<Decision>(
        finishUpdate(t, req, name, old_obj, std::move(obj), "status", formatTime(clock_.now()), nullptr));
    // Written only over the version it was computed from (moved out once: a second call gets
    // another version and answers with a conflict).
    Mutation m = [&t, name, seen, prepared](const ObjectRecord* current, int64_t) {
      return current == seen.get() ? std::move(*prepared) : conflict(t, name);
    };
    last = (co_await commit(req, t, name, std::move(m), 0)).status;
  }
  co_return last;
}

net::awaitable<bool> ApiService::removeFinalizer(const ResourceType& t, std::string name, std::string finalizer) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    ObjectPtr rec = store_.get(resourceKey(t), name);
    Json obj = rec ? parseObject(*rec) : Json();
    if (!obj.is_object()) {
      co_return true;
    }
    Json finalizers = obj["metadata"].value("finalizers", Json::array());
    Json remaining = Json::array();
    for (const auto& f : finalizers) {
      if (f != finalizer) {
        remaining.push_back(f);
      }
    }
    if (remaining.size() == finalizers.size()) {
      co_return true;
    }
    Json patch = {{"metadata", {{"finalizers", remaining}, {"resourceVersion", obj["metadata"].value("resourceVersion", "")}}}};
    auto res = co_await internal(http::verb::patch, objectPath(t, name), patch.dump(), "application/merge-patch+json");
    if (res.status == 200 || res.status == 404) {
      co_return true;
    }
    if (res.status != 409) {
      co_return false;
    }
  }
  co_return false;
}

void ApiService::shutdown() {
  stopping_ = true;
  store_.closeWatches();
}

void ApiService::setCreateAdmission(const ResourceType& t, CreateAdmission* admission) { admissions_[&t] = admission; }

net::awaitable<ApiResponse> ApiService::handle(ApiRequest req) {
  const std::string& p = req.path;
  // Health and version are public, as kube-apiserver's system:public-info-viewer makes them.
  if (p == "/livez" || p == "/healthz" || p == "/readyz" || p == "/livez/ping" || p == "/readyz/ping") {
    ApiResponse r;
    r.content_type = "text/plain; charset=utf-8";
    if (p.rfind("/readyz", 0) == 0 && stopping_) {
      r.status = 503;
      r.body = "[-]shutdown failed: the hub is shutting down\nreadyz check failed";
    } else {
      r.body = "ok";
    }
    co_return r;
  }
  if (p == "/version") {
    ApiResponse r;
    r.body = Json{{"major", "1"}, {"minor", "32"}, {"gitVersion", options_.server_version},
                  {"gitCommit", ""}, {"gitTreeState", "clean"}, {"buildDate", ""}, {"goVersion", ""},
                  {"compiler", "gcc"}, {"platform", "linux/amd64"}, {"kflexVersion", kVersion}}.dump();
    co_return r;
  }
  if (!req.user.authenticated()) {
    co_return statusResponse(401, "Unauthorized",
                             req.auth_error.empty() ? "Unauthorized" : "Unauthorized: " + req.auth_error);
  }
  auto doc = [](std::string body, const char* type = kJson) {
    ApiResponse r;
    r.body = std::move(body);
    r.content_type = type;
    return r;
  };
  if (bool core = p == "/api" || p == "/api/"; core || p == "/apis" || p == "/apis/") {
    // kubectl 1.27-1.29 ask for v2beta1 and cannot read v2; newer ones ask for v2 first.
    DiscoveryForm form = negotiateDiscovery(req.accept);
    const std::string* body = core ? &docs_.api : &docs_.apis;
    if (form == DiscoveryForm::AggregatedV2) {
      body = core ? &docs_.aggregated_api : &docs_.aggregated_apis;
    } else if (form == DiscoveryForm::AggregatedV2Beta1) {
      body = core ? &docs_.aggregated_api_v2beta1 : &docs_.aggregated_apis_v2beta1;
    }
    ApiResponse r = doc(*body, discoveryContentType(form));
    // The same URL answers differently by Accept: caches must keep the forms apart.
    r.headers.emplace_back("Vary", "Accept");
    co_return r;
  }
  if (p == "/openapi/v2") {
    // kubectl asks for protobuf only (it validates a `kind: List` against this document).
    if (acceptsOpenApiV2Protobuf(req.accept)) {
      co_return doc(docs_.openapi_v2_protobuf, kOpenApiV2Protobuf);
    }
    if (req.accept.find("json") == std::string::npos && req.accept.find("*/*") == std::string::npos &&
        !req.accept.empty()) {
      co_return statusResponse(406, "NotAcceptable",
                               std::string("/openapi/v2 is served as application/json and ") + kOpenApiV2Protobuf);
    }
    co_return doc(docs_.openapi_v2);
  }
  if (p == "/openapi/v3" || p == "/openapi/v3/") {
    co_return doc(docs_.openapi_v3_root);
  }
  if (p.rfind("/openapi/v3/", 0) == 0) {
    auto it = docs_.openapi_v3.find(p.substr(12));
    if (it != docs_.openapi_v3.end()) {
      ApiResponse r = doc(it->second);
      r.headers.emplace_back("Cache-Control", "public, immutable");
      co_return r;
    }
    co_return statusResponse(404, "NotFound", "the server could not find the requested resource");
  }
  if (auto it = docs_.groups.find(p); it != docs_.groups.end()) {
    co_return doc(it->second);
  }
  if (auto it = docs_.versions.find(p); it != docs_.versions.end()) {
    co_return doc(it->second);
  }
  // /apis/GROUP/VERSION/[namespaces/NS/]PLURAL[/NAME[/SUBRESOURCE]], or /api/VERSION/... for core.
  auto parts = split(p, '/');
  size_t at = 0;
  std::string group;
  std::string version;
  if (parts.size() >= 4 && parts[0].empty() && parts[1] == "api") {
    version = parts[2];
    at = 3;
  } else if (parts.size() >= 5 && parts[0].empty() && parts[1] == "apis") {
    group = parts[2];
    version = parts[3];
    at = 4;
  }
  if (at != 0) {
    if (parts.size() > at + 2 && parts[at] == "namespaces") {
      if (const ResourceType* nt = registry_.find(group, version, parts[at + 2]); nt != nullptr && nt->namespaced) {
        req.ns = parts[at + 1];
        at += 2;
      }
    }
    const ResourceType* t = registry_.find(group, version, parts[at]);
    if (t != nullptr && parts.size() <= at + 3) {
      std::string name = parts.size() > at + 1 ? parts[at + 1] : "";
      std::string sub = parts.size() > at + 2 ? parts[at + 2] : "";
      bool bad_ns = t->namespaced && req.ns.empty() && (!name.empty() || req.method != http::verb::get);
      if ((parts.size() > at + 1 && name.empty()) || (parts.size() > at + 2 && (sub != "status" || !t->has_status)) ||
          bad_ns || (t->namespaced && !req.ns.empty() && !isDns1123Label(req.ns))) {
        co_return statusResponse(404, "NotFound", "the server could not find the requested resource");
      }
      if (!req.user.isAdmin()) {
        std::string scope = req.ns.empty() ? "at the cluster scope" : "in the namespace \"" + req.ns + "\"";
        co_return statusResponse(403, "Forbidden",
                                 qualifiedResource(*t) + " is forbidden: User \"" + req.user.name +
                                     "\" cannot access resource \"" + t->plural + "\" in API group \"" + t->group +
                                     "\" " + scope + ": only members of system:masters may");
      }
      co_return co_await handleResource(req, *t, name, sub);
    }
  }
  co_return statusResponse(404, "NotFound", "the server could not find the requested resource");
}

net::awaitable<ApiResponse> ApiService::handleResource(ApiRequest& req, const ResourceType& t,
                                                       const std::string& name, const std::string& sub) {
  bool watching = req.query.count("watch") > 0 && req.query["watch"] != "false" && req.query["watch"] != "0";
  if (req.content_type.find("protobuf") != std::string::npos || req.content_type.find("cbor") != std::string::npos) {
    // As kube-apiserver answers for a kind without that encoding; clients then send JSON.
    co_return statusResponse(415, "UnsupportedMediaType",
                             "the body of the request was in an unknown format - accepted media types include: "
                             "application/json, application/yaml, application/apply-patch+yaml, "
                             "application/merge-patch+json, application/json-patch+json, "
                             "application/strategic-merge-patch+json");
  }
  // A write's options: dryRun is All or absent (apiserver's ValidateCreateOptions and siblings
  // answer anything else, `true` and `all` included, with 422 before anything is written).
  if (auto dry = req.query.find("dryRun"); dry != req.query.end() && dry->second != "All") {
    const char* options = req.method == http::verb::post    ? "CreateOptions"
                          : req.method == http::verb::put   ? "UpdateOptions"
                          : req.method == http::verb::patch ? "PatchOptions"
                          : req.method == http::verb::delete_ ? "DeleteOptions"
                                                              : nullptr;
    if (options != nullptr) {
      co_return statusResponse(422, "Invalid",
                               std::string(options) + ".meta.k8s.io \"\" is invalid: dryRun: Unsupported value: " +
                                   dumpSafe(Json::array({dry->second})) + ": supported values: \"All\"");
    }
  }
  switch (req.method) {
    case http::verb::get:
      if (watching) {
        co_return watch(req, t, name);
      }
      co_return name.empty() ? list(req, t) : get(req, t, name);
    case http::verb::post:
      if (!name.empty()) {
        co_return statusResponse(405, "MethodNotAllowed", "POST is not supported on a named " + t.kind);
      }
      co_return co_await create(req, t);
    case http::verb::put:
      if (name.empty()) {
        co_return statusResponse(405, "MethodNotAllowed", "PUT needs an object name in the path");
      }
      co_return co_await update(req, t, name, sub);
    case http::verb::patch:
      if (name.empty()) {
        co_return statusResponse(405, "MethodNotAllowed", "PATCH needs an object name in the path");
      }
      co_return co_await patch(req, t, name, sub);
    case http::verb::delete_:
      if (name.empty() || !sub.empty()) {
        co_return statusResponse(405, "MethodNotAllowed", "DELETE needs an object name in the path");
      }
      co_return co_await remove(req, t, name);
    default:
      co_return statusResponse(405, "MethodNotAllowed", "the method is not supported on this resource");
  }
}

std::string ApiService::tableFor(const ApiRequest& req, const ResourceType& t, const std::vector<ObjectPtr>& objects,
                                 int64_t revision, bool with_columns) const {
  Json table = {{"kind", "Table"}, {"apiVersion", "meta.k8s.io/v1"},
                {"metadata", {{"resourceVersion", std::to_string(revision)}}}};
  if (with_columns) {
    Json cols = Json::array({{{"name", "Name"}, {"type", "string"}, {"format", "name"},
                              {"description", "Name must be unique. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"},
                              {"priority", 0}}});
    for (const auto& c : t.columns) {
      cols.push_back({{"name", c.name}, {"type", c.type}, {"format", ""}, {"description", c.description},
                      {"priority", c.priority}});
    }
    table["columnDefinitions"] = cols;
  } else {
    table["columnDefinitions"] = nullptr;
  }
  std::string include = "Metadata";
  if (auto it = req.query.find("includeObject"); it != req.query.end()) {
    include = it->second;
  }
  Json rows = Json::array();
  auto now = clock_.now();
  for (const auto& rec : objects) {
    Json obj = parseObject(*rec);
    Json cells = Json::array({rec->name});
    for (const auto& c : t.columns) {
      Json v = model::evalJsonPath(obj, c.json_path);
      if (c.type == "date" && v.is_string()) {
        auto tp = parseTime(v.get<std::string>());
        v = tp ? humanDuration(std::chrono::duration_cast<std::chrono::seconds>(now - *tp)) : "<invalid>";
      }
      cells.push_back(v);
    }
    Json row = {{"cells", cells}};
    if (include == "Object") {
      row["object"] = obj;
    } else if (include != "None") {
      row["object"] = partialMetadata(obj);
    }
    rows.push_back(std::move(row));
  }
  table["rows"] = rows;
  return dumpJson(table);
}

ApiResponse ApiService::get(const ApiRequest& req, const ResourceType& t, const std::string& name) {
  ObjectPtr obj = store_.get(resourceKey(t, req.ns), name);
  if (!obj) {
    return fromDecision(notFound(t, name));
  }
  ApiResponse r;
  r.body = wantsTable(req) ? tableFor(req, t, {obj}, obj->revision, true) : obj->bytes;
  return r;
}

ApiResponse ApiService::list(const ApiRequest& req, const ResourceType& t) {
  auto parsed = parseSelectors(req);
  if (auto* bad = std::get_if<ApiResponse>(&parsed)) {
    return std::move(*bad);
  }
  const auto& [labels, fields] = std::get<Selectors>(parsed);
  int64_t asked_rv = 0;
  if (auto bad = checkQueryResourceVersion(req, store_.revision(), asked_rv)) {
    return std::move(*bad);
  }
  size_t limit = 0;
  if (auto it = req.query.find("limit"); it != req.query.end() && !it->second.empty()) {
    try {
      long v = std::stol(it->second);
      limit = v > 0 ? size_t(v) : 0;
    } catch (const std::exception&) {
      return statusResponse(400, "BadRequest", "limit must be an integer, not \"" + it->second + "\"");
    }
  }
  std::string start_after;
  if (auto it = req.query.find("continue"); it != req.query.end() && !it->second.empty()) {
    auto decoded = base64Decode(it->second);
    Json token = decoded ? Json::parse(decoded.value(), nullptr, false) : Json();
    if (!token.is_object() || !token.contains("start") || !token["start"].is_string()) {
      return statusResponse(400, "BadRequest", "the continue token is not valid; list again without it");
    }
    start_after = token["start"].get<std::string>();
  }
  // A namespaced kind listed without a namespace: every namespace, ordered by namespace/name.
  bool every_ns = t.namespaced && req.ns.empty();
  auto [all, revision] = every_ns ? store_.listPrefix(resourceKey(t, "")) : store_.list(resourceKey(t, req.ns));
  auto position = [every_ns](const ObjectPtr& o) { return every_ns ? o->resource + "/" + o->name : o->name; };
  std::vector<ObjectPtr> items;
  size_t remaining = 0;
  std::string next;
  for (const auto& obj : all) {
    if (!start_after.empty() && position(obj) <= start_after) {
      continue;
    }
    if (!labels.matches(obj->labels) || !fields.matches(obj->name)) {
      continue;
    }
    if (limit > 0 && items.size() >= limit) {
      ++remaining;
      continue;
    }
    items.push_back(obj);
  }
  if (limit > 0 && remaining > 0 && !items.empty()) {
    next = base64Encode(Json{{"start", position(items.back())}, {"rv", revision}}.dump());
  }
  ApiResponse r;
  if (wantsTable(req)) {
    Json table = Json::parse(tableFor(req, t, items, revision, true));
    if (!next.empty()) {
      table["metadata"]["continue"] = next;
      table["metadata"]["remainingItemCount"] = remaining;
    }
    r.body = dumpJson(table);
    return r;
  }
  // Assemble the list from the stored bytes: no object is decoded or re-encoded.
  Json meta = {{"resourceVersion", std::to_string(revision)}};
  if (!next.empty()) {
    meta["continue"] = next;
    meta["remainingItemCount"] = remaining;
  }
  std::string body = "{\"apiVersion\":\"" + t.apiVersion() + "\",\"items\":[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) {
      body += ',';
    }
    body += items[i]->bytes;
  }
  body += "],\"kind\":\"" + t.list_kind + "\",\"metadata\":" + meta.dump() + "}";
  r.body = std::move(body);
  return r;
}

ApiResponse ApiService::watch(const ApiRequest& req, const ResourceType& t, const std::string& name) {
  auto parsed = parseSelectors(req);
  if (auto* bad = std::get_if<ApiResponse>(&parsed)) {
    return std::move(*bad);
  }
  const auto& [labels, fields] = std::get<Selectors>(parsed);
  int64_t since = 0;
  std::string rv = req.query.count("resourceVersion") ? req.query.at("resourceVersion") : "";
  if (auto bad = checkQueryResourceVersion(req, store_.revision(), since)) {
    return std::move(*bad);
  }
  std::chrono::seconds timeout = options_.default_watch_timeout;
  if (auto it = req.query.find("timeoutSeconds"); it != req.query.end() && !it->second.empty()) {
    try {
      timeout = std::chrono::seconds(std::max(1L, std::stol(it->second)));
    } catch (const std::exception&) {
      return statusResponse(400, "BadRequest", "timeoutSeconds must be an integer");
    }
  }
  bool bookmarks = req.query.count("allowWatchBookmarks") && req.query.at("allowWatchBookmarks") == "true";
  bool send_initial = req.query.count("sendInitialEvents") && req.query.at("sendInitialEvents") == "true";
  if (send_initial && !bookmarks) {
    return statusResponse(422, "Invalid", "sendInitialEvents requires allowWatchBookmarks=true");
  }
  // Only the named object, when watching one (kubectl get NAME -w uses a field selector instead).
  ApiRequest copy = req;
  bool every_ns = t.namespaced && req.ns.empty();
  auto filter = [labels = labels, fields = fields, name, key = resourceKey(t, req.ns), every_ns](const ObjectRecord& o) {
    bool ours = every_ns ? o.resource.rfind(key, 0) == 0 : o.resource == key;
    return ours && (name.empty() || o.name == name) && labels.matches(o.labels) && fields.matches(o.name);
  };
  ApiResponse r;
  if (stopping_) {
    return statusResponse(503, "ServiceUnavailable", "the hub is shutting down");
  }
  // Subscribe now so that a 410 is a real status code, not an event inside a 200 stream.
  auto sub_result = store_.watch(rv == "0" ? 0 : since, net::system_executor(), 0, filter);
  if (!sub_result) {
    return statusResponse(410, "Expired", sub_result.error().message);
  }
  auto sub = std::make_shared<WatchSubscription>(std::move(sub_result.value()));
  bool table = wantsTable(req);
  r.stream = [this, sub, filter, copy, table, timeout, bookmarks, send_initial, &t](ChunkWriter& out)
      -> net::awaitable<void> {
    auto ex = co_await net::this_coro::executor;
    bool first_table = true;
    auto encode = [&](const Event& e) -> std::string {
      if (!table) {
        return watchEventLine(e.type, e.object->bytes);
      }
      std::string tbl = tableFor(copy, t, {e.object}, e.revision, first_table);
      first_table = false;
      return watchEventLine(e.type, tbl);
    };
    auto bookmark = [&](int64_t revision, bool initial_end) {
      Json meta = {{"resourceVersion", std::to_string(revision)}, {"creationTimestamp", nullptr}};
      if (initial_end) {
        meta["annotations"] = {{"k8s.io/initial-events-end", "true"}};
      }
      return "{\"type\":\"BOOKMARK\",\"object\":" +
             Json{{"kind", t.kind}, {"apiVersion", t.apiVersion()}, {"metadata", meta}}.dump() + "}\n";
    };
    int64_t last = sub->revision;
    bool ok = true;
    std::string batch;
    for (const auto& e : sub->replay) {
      batch += encode(*e);  // the store kept only what `filter` accepts
    }
    if (send_initial) {
      batch += bookmark(sub->revision, true);
    }
    if (!batch.empty()) {
      ok = co_await out.write(std::move(batch));
    }
    sub->replay = {};  // its memory too: a watch may live for half an hour
    auto deadline = std::chrono::steady_clock::now() + timeout;
    // One timer per watch, not one per event: a ticker sends a tick through the event channel
    // when a bookmark is due and when the watch's time is up, so the loop waits on the channel
    // alone. (When the queue is full the tick is dropped; the loop is busy with events then and
    // checks the deadline after each.)
    static const EventPtr kTick = std::make_shared<const Event>();
    struct Ticker {
      explicit Ticker(const net::any_io_executor& e) : timer(e) {}
      net::steady_timer timer;
      bool done = false;  // set by the loop when it ends; both run on the connection's loop
    };
    auto ticker = std::make_shared<Ticker>(ex);
    std::chrono::steady_clock::duration interval = options_.bookmark_interval;
    net::co_spawn(ex, [ticker, sub, deadline, interval]() -> net::awaitable<void> {
      while (!ticker->done) {
        ticker->timer.expires_at(std::min(deadline, std::chrono::steady_clock::now() + interval));
        auto [ec] = co_await ticker->timer.async_wait(net::as_tuple(net::use_awaitable));
        if (ec || ticker->done) {
          co_return;
        }
        sub->channel->try_send(boost::system::error_code{}, kTick);
        if (std::chrono::steady_clock::now() >= deadline) {
          co_return;
        }
      }
    }, net::detached);
    while (ok && !stopping_) {
      auto [ec, event] = co_await sub->channel->async_receive(net::as_tuple(net::use_awaitable));
      if (ec || !event) {
        break;  // closed: shutdown or the watcher fell behind
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        break;
      }
      if (event == kTick) {
        if (bookmarks) {
          ok = co_await out.write(bookmark(last, false));
        }
        continue;
      }
      last = event->revision;
      std::string chunk;
      if (filter(*event->object)) {
        chunk = encode(*event);
      }
      // Drain what else is queued into the same chunk.
      EventPtr more;
      while (sub->channel->try_receive([&](boost::system::error_code e2, EventPtr ev) {
        if (!e2 && ev && ev != kTick) {
          more = std::move(ev);
        }
      })) {
        if (more) {
          last = more->revision;
          if (filter(*more->object)) {
            chunk += encode(*more);
          }
          more.reset();
        }
      }
      if (!chunk.empty()) {
        ok = co_await out.write(std::move(chunk));
      }
    }
    ticker->done = true;
    ticker->timer.cancel();
    store_.unwatch(sub->id);
  };
  return r;
}

net::awaitable<ApiResponse> ApiService::commit(const ApiRequest& req, const ResourceType& t, const std::string& name,
                                               Mutation mutation, unsigned created_status) {
  WriteResult result;
  if (isDryRun(req)) {
    try {
      result = store_.dryRun(resourceKey(t, req.ns), name, mutation);
    } catch (const Json::type_error& e) {
      co_return statusResponse(400, "BadRequest", std::string("the object cannot be stored: ") + e.what());
    } catch (const std::exception& e) {
      co_return statusResponse(500, "InternalError", std::string("internal error: ") + e.what());
    }
  } else {
    // Optimistic: compute the outcome here, against the version current now, so the work runs
    // in parallel on the request's thread. The writer thread takes it as it is when that version
    // is still current (the record it points to is kept alive, so pointer identity means the same
    // version) and otherwise runs the mutation again itself. A mutation therefore runs at most
    // twice, the second time only against another version than the first.
    ObjectPtr seen = store_.get(resourceKey(t, req.ns), name);
    std::shared_ptr<Decision> computed;
    try {
      computed = std::make_shared<Decision>(mutation(seen.get(), 0));
      ObjectStore::encode(*computed);
      if (computed->encoded && computed->encoded->head.size() + computed->encoded->tail.size() > kMaxObjectBytes) {
        co_return statusResponse(413, "RequestEntityTooLarge",
                                 "the object would be " +
                                     std::to_string(computed->encoded->head.size() + computed->encoded->tail.size()) +
                                     " bytes once stored; the limit is " + std::to_string(kMaxObjectBytes) +
                                     " bytes (etcd's default request limit, which kube-apiserver's objects share)");
      }
    } catch (const Json::type_error& e) {
      // The object cannot be serialized (a string that is not UTF-8): nothing is written. Not
      // retried: a mutation may have moved its object out on this first call.
      co_return statusResponse(400, "BadRequest", std::string("the object cannot be stored: ") + e.what());
    } catch (const std::exception& e) {
      co_return statusResponse(500, "InternalError", std::string("internal error: ") + e.what());
    }
    Mutation checked = [seen, computed, mutation = std::move(mutation)](const ObjectRecord* current, int64_t next) {
      if (computed && current == seen.get()) {
        return std::move(*computed);
      }
      return mutation(current, next);
    };
    result = co_await store_.write(resourceKey(t, req.ns), name, std::move(checked), net::use_awaitable);
  }
  const Decision& d = result.decision;
  if (d.kind == Decision::Kind::Fail) {
    co_return fromDecision(d);
  }
  ApiResponse r;
  r.status = d.kind == Decision::Kind::Put && created_status != 0 ? created_status : 200;
  r.body = result.object ? result.object->bytes : "{}";
  addWarnings(r, d.warnings);
  co_return r;
}

net::awaitable<ApiResponse> ApiService::create(const ApiRequest& req, const ResourceType& t) {
  Json obj;
  std::vector<std::string> decode_warnings;
  if (auto bad = decodeObject(req, t, obj, decode_warnings)) {
    co_return std::move(*bad);
  }
  Json& meta = obj["metadata"];
  if (meta.value("name", "").empty() && !meta.value("generateName", "").empty()) {
    static constexpr char kChars[] = "bcdfghjklmnpqrstvwxz2456789";
    std::string suffix;
    std::string uuid = newUuid();
    for (int i = 0; i < 5; ++i) {
      suffix += kChars[static_cast<unsigned char>(uuid[size_t(i)]) % 27];
    }
    meta["name"] = meta["generateName"].get<std::string>() + suffix;
  }
  std::string name = meta.value("name", "");
  std::string now = formatTime(clock_.now());
  // Validation and defaulting run here, on the request's strand; the writer thread only checks
  // that the name is free, so concurrent creates are validated in parallel and committed in groups.
  auto prepared = std::make_shared<Decision>(prepareCreate(t, req, std::move(obj), now));
  if (prepared->kind != Decision::Kind::Put) {
    co_return fromDecision(*prepared);
  }
  recordUpdate(nullptr, prepared->object, managerOf(req), "", now);
  // A controller may settle the new object's first status now (placement picks its agent), so
  // that one write stores both; that status is the hub's, as if written through /status.
  auto admission = admissions_.find(&t);
  uint64_t ticket = 0;
  if (admission != admissions_.end()) {
    ticket = admission->second->admit(prepared->object, isDryRun(req));
    if (prepared->object.contains("status")) {
      recordNewStatus(prepared->object, kHubFieldManager, now);
    }
  }
  Mutation m = [&t, prepared, name](const ObjectRecord* current, int64_t) {
    if (current != nullptr) {
      return failure(409, "AlreadyExists", qualifiedResource(t) + " \"" + name + "\" already exists",
                     {{"name", name}, {"group", t.group}, {"kind", t.plural}});
    }
    // Only a call with no current object moves the prepared one out, and commit() calls a
    // mutation again only against another version than the first time: it is moved once.
    return std::move(*prepared);
  };
  ApiResponse r = co_await commit(req, t, name, std::move(m), 201);
  if (ticket != 0) {
    admission->second->settled(name, ticket, r.status == 201);
  }
  addWarnings(r, decode_warnings);
  co_return r;
}

net::awaitable<ApiResponse> ApiService::update(const ApiRequest& req, const ResourceType& t, const std::string& name,
                                               const std::string& sub) {
  Json obj;
  std::vector<std::string> decode_warnings;
  if (auto bad = decodeObject(req, t, obj, decode_warnings)) {
    co_return std::move(*bad);
  }
  if (obj["metadata"].value("resourceVersion", "").empty()) {
    co_return fromDecision(invalid(t, name, {{"FieldValueInvalid", "metadata.resourceVersion",
                                              "Invalid value: 0x0: must be specified for an update"}}));
  }
  std::string now = formatTime(clock_.now());
  Mutation m = [&t, req, obj, now, name, sub](const ObjectRecord* current, int64_t) {
    if (current == nullptr) {
      return notFound(t, name);
    }
    return finishUpdate(t, req, name, parseObject(*current), obj, sub, now, nullptr);
  };
  ApiResponse r = co_await commit(req, t, name, std::move(m), 0);
  addWarnings(r, decode_warnings);
  co_return r;
}

net::awaitable<ApiResponse> ApiService::patch(const ApiRequest& req, const ResourceType& t, const std::string& name,
                                              const std::string& sub) {
  if (auto bad = checkFieldValidationParam(req)) {
    co_return fromDecision(*bad);
  }
  std::string ct = req.content_type.substr(0, req.content_type.find(';'));
  std::string now = formatTime(clock_.now());
  if (ct == "application/apply-patch+yaml" || ct == "application/apply-patch+cbor") {
    ApiRequest yaml_req = req;
    yaml_req.content_type = "application/yaml";
    auto body = parseBody(yaml_req);
    if (!body) {
      co_return statusResponse(400, "BadRequest", body.error().message);
    }
    Json applied = std::move(body.value());
    if (auto bad = checkKind(applied, t, req.ns)) {
      co_return fromDecision(*bad);
    }
    auto fm = req.query.find("fieldManager");
    if (fm == req.query.end() || fm->second.empty()) {
      co_return statusResponse(400, "BadRequest", "PATCH with application/apply-patch+yaml requires fieldManager");
    }
    std::string manager = fm->second;
    bool force = req.query.count("force") && req.query.at("force") == "true";
    if (applied["metadata"].contains("name") && applied["metadata"]["name"] != name) {
      co_return statusResponse(400, "BadRequest", "the name of the object (" + applied["metadata"]["name"].dump() +
                                                      ") does not match the name on the URL (" + name + ")");
    }
    applied["metadata"]["name"] = name;
    Mutation m = [&t, req, applied, now, manager, force, name, sub](const ObjectRecord* current, int64_t) {
      Json result;
      if (current == nullptr) {
        if (sub == "status") {
          return notFound(t, name);
        }
        Json base = applied;
        base["metadata"].erase("managedFields");
        Decision d = prepareCreate(t, req, base, now);
        if (d.kind != Decision::Kind::Put) {
          return d;
        }
        Json merged;
        applyConfig(nullptr, applied, manager, true, "", now, merged);
        d.object["metadata"]["managedFields"] = merged["metadata"]["managedFields"];
        return d;
      }
      Json live = parseObject(*current);
      auto conflicts = applyConfig(&live, applied, manager, force, sub, now, result);
      if (!conflicts.empty() && !force) {
        Json causes = Json::array();
        std::string msg;
        for (const auto& c : conflicts) {
          std::string field = pathString(c.path);
          causes.push_back({{"reason", "FieldManagerConflict"},
                            {"message", "conflict with \"" + c.manager + "\""},
                            {"field", field}});
          msg += (msg.empty() ? "" : "\n") + std::string("- conflict with \"") + c.manager + "\": " + field;
        }
        return failure(409, "Conflict", "Apply failed with " + std::to_string(conflicts.size()) +
                                            " conflict" + (conflicts.size() > 1 ? "s" : "") + ": " + msg,
                       {{"name", name}, {"group", t.group}, {"kind", t.plural}, {"causes", causes}});
      }
      Json managed = result["metadata"].contains("managedFields") ? result["metadata"]["managedFields"] : Json();
      Decision d = finishUpdate(t, req, name, live, result, sub == "status" ? "status" : "apply", now, nullptr);
      if (d.kind == Decision::Kind::Put) {
        if (managed.is_null()) {
          d.object["metadata"].erase("managedFields");
        } else {
          d.object["metadata"]["managedFields"] = managed;
        }
      }
      return d;
    };
    co_return co_await commit(req, t, name, std::move(m), 201);
  }
  enum class Kind { Merge, Strategic, Json6902 } kind;
  if (ct == "application/merge-patch+json") {
    kind = Kind::Merge;
  } else if (ct == "application/strategic-merge-patch+json") {
    kind = Kind::Strategic;
  } else if (ct == "application/json-patch+json") {
    kind = Kind::Json6902;
  } else {
    co_return statusResponse(415, "UnsupportedMediaType",
                             "the body of the request was in an unknown format - accepted media types include: "
                             "application/json-patch+json, application/merge-patch+json, "
                             "application/strategic-merge-patch+json, application/apply-patch+yaml");
  }
  auto decoded_patch = decodeJson(req.body);
  if (!decoded_patch) {
    co_return statusResponse(400, "BadRequest", "couldn't decode the patch: " + decoded_patch.error().message);
  }
  Json patch_doc = std::move(decoded_patch.value());
  if (kind != Kind::Json6902 && !patch_doc.is_object()) {
    co_return statusResponse(400, "BadRequest", "a merge patch must be a JSON object");
  }
  if (kind == Kind::Json6902 && !patch_doc.is_array()) {
    co_return statusResponse(400, "BadRequest", "a JSON patch must be a JSON array of operations");
  }
  Mutation m = [&t, req, patch_doc, kind, now, name, sub](const ObjectRecord* current, int64_t) {
    if (current == nullptr) {
      return notFound(t, name);
    }
    Json live = parseObject(*current);
    Json patched = live;
    if (kind == Kind::Json6902) {
      // Against the current object, resourceVersion included, so that a "test" of it works (kubectl
      // sends one when it hands managedFields over to server-side apply). A resourceVersion the
      // patch leaves as it is states no precondition; one it changes does (409 below if stale).
      try {
        patched = live.patch(patch_doc);
      } catch (const std::exception& e) {
        return failure(422, "Invalid", std::string("the JSON patch could not be applied: ") + e.what());
      }
      if (patched.is_object() && patched["metadata"].is_object() &&
          patched["metadata"].contains("resourceVersion") &&
          patched["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]) {
        patched["metadata"].erase("resourceVersion");
      }
    } else {
      // Without a stated resourceVersion a patch applies to whatever is current (no precondition).
      patched["metadata"].erase("resourceVersion");
      // For kinds without patch strategies (all CRD-like kinds), a strategic merge patch is a
      // JSON merge patch with $patch/$retainKeys directives removed.
      Json doc = patch_doc;
      if (kind == Kind::Strategic) {
        std::function<void(Json&)> strip = [&](Json& j) {
          if (j.is_object()) {
            j.erase("$patch");
            j.erase("$retainKeys");
            for (auto it = j.begin(); it != j.end();) {
              if (it.key().rfind("$setElementOrder/", 0) == 0 || it.key().rfind("$deleteFromPrimitiveList/", 0) == 0) {
                it = j.erase(it);
              } else {
                strip(*it);
                ++it;
              }
            }
          }
        };
        strip(doc);
      }
      patched.merge_patch(doc);
    }
    if (!patched.is_object()) {
      return failure(422, "Invalid", "the patched object is not an object");
    }
    Json& meta = patched["metadata"];
    if (!meta.is_object()) {
      return failure(422, "Invalid", "the patch removed metadata");
    }
    if (!meta.contains("resourceVersion")) {
      meta["resourceVersion"] = "";
    }
    if (meta["resourceVersion"] == "") {
      meta.erase("resourceVersion");
    }
    Json tmp = patched;
    if (auto bad = checkKind(tmp, t, req.ns)) {
      return *bad;
    }
    return finishUpdate(t, req, name, live, tmp, sub, now, nullptr);
  };
  co_return co_await commit(req, t, name, std::move(m), 0);
}

net::awaitable<ApiResponse> ApiService::remove(const ApiRequest& req, const ResourceType& t, const std::string& name) {
  Json options = Json::object();
  if (!trim(req.body).empty()) {
    auto decoded = decodeJson(req.body);
    if (!decoded || !decoded->is_object()) {
      co_return statusResponse(400, "BadRequest", "the DeleteOptions body is not a JSON object" +
                                                      (decoded ? std::string() : ": " + decoded.error().message));
    }
    options = std::move(decoded.value());
  }
  ApiRequest effective = req;
  if (auto dr = options.find("dryRun"); dr != options.end() && dr->is_array() && !dr->empty() && (*dr)[0] == "All") {
    effective.query["dryRun"] = "All";
  }
  Json preconditions = options.value("preconditions", Json::object());
  std::string now = formatTime(clock_.now());
  Mutation m = [&t, name, preconditions, now](const ObjectRecord* current, int64_t) {
    if (current == nullptr) {
      return notFound(t, name);
    }
    Json live = parseObject(*current);
    const Json& meta = live["metadata"];
    if (preconditions.is_object()) {
      if (auto uid = preconditions.find("uid"); uid != preconditions.end() && uid->is_string() &&
                                                 *uid != meta.value("uid", "")) {
        return failure(409, "Conflict", "Precondition failed: UID in precondition: " + uid->get<std::string>() +
                                            ", UID in object meta: " + meta.value("uid", ""));
      }
      if (auto rv = preconditions.find("resourceVersion"); rv != preconditions.end() && rv->is_string() &&
                                                            *rv != meta.value("resourceVersion", "")) {
        return failure(409, "Conflict", "Precondition failed: ResourceVersion in precondition: " +
                                            rv->get<std::string>() + ", ResourceVersion in object meta: " +
                                            meta.value("resourceVersion", ""));
      }
    }
    Decision d;
    if (hasFinalizers(live)) {
      if (meta.contains("deletionTimestamp")) {
        d.kind = Decision::Kind::Unchanged;
        return d;
      }
      live["metadata"]["deletionTimestamp"] = now;
      live["metadata"]["deletionGracePeriodSeconds"] = 0;
      live["metadata"]["generation"] = meta.value("generation", int64_t(1)) + 1;
      d.kind = Decision::Kind::Put;
      d.object = std::move(live);
      return d;
    }
    d.kind = Decision::Kind::Delete;
    return d;
  };
  co_return co_await commit(effective, t, name, std::move(m), 0);
}

}  // namespace kflex::hub
