// SPDX-License-Identifier: Apache-2.0
#include "hub/api/request_codec.hpp"

#include <algorithm>
#include <cctype>

#include "hub/api/errors.hpp"
#include "shared/common/json_decode.hpp"
#include "shared/common/util.hpp"
#include "shared/config/yaml_json.hpp"

namespace kflex::hub {

using model::FieldSelector;
using model::LabelSelector;
using model::ResourceType;

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
Result<Json> parseBody(const ApiRequest& req, std::vector<std::string>* duplicates) {
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
    return failure("BadRequest", "the body must be a JSON or YAML object, not " + std::string(obj.type_name()));
  }
  // (null is absent, as kube's decoder reads it; the type is checked before the value is read.)
  for (const char* field : {"apiVersion", "kind"}) {
    if (auto it = obj.find(field); it != obj.end() && !it->is_string() && !it->is_null()) {
      return failure("BadRequest", std::string(field) + " must be a string");
    }
  }
  auto text = [&obj](const char* field) {
    auto it = obj.find(field);
    return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  std::string api_version = text("apiVersion");
  std::string kind = text("kind");
  if (!api_version.empty() && api_version != t.apiVersion()) {
    return failure("BadRequest", "the API version in the data (" + api_version +
                                          ") does not match the expected API version (" + t.apiVersion() + ")");
  }
  if (!kind.empty() && kind != t.kind) {
    return failure("BadRequest",
                   "the kind in the data (" + kind + ") does not match the expected kind (" + t.kind + ")");
  }
  obj["apiVersion"] = t.apiVersion();
  obj["kind"] = t.kind;
  if (!obj.contains("metadata")) {
    obj["metadata"] = Json::object();
  }
  if (!obj["metadata"].is_object()) {
    return failure("BadRequest", "metadata must be an object");
  }
  if (!t.namespaced) {
    obj["metadata"].erase("namespace");
    return std::nullopt;
  }
  const Json& given = obj["metadata"]["namespace"];
  if (!given.is_null() && given != "" && given != ns) {
    return failure("BadRequest", "the namespace of the provided object (" + given.dump() +
                                          ") does not match the namespace sent on the request (" + ns + ")");
  }
  obj["metadata"]["namespace"] = ns;
  return std::nullopt;
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
    return failure("BadRequest", "fieldValidation must be one of Ignore, Warn or Strict, not \"" + it->second + "\"");
  }
  return std::nullopt;
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

std::optional<int64_t> parseRevision(std::string_view rv) {
  if (rv.empty() || rv.size() > 18 || !std::all_of(rv.begin(), rv.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  return std::stoll(std::string(rv));
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
  auto parsed = parseRevision(rv);
  if (!parsed) {
    return statusResponse(400, "BadRequest", "invalid resourceVersion \"" + rv +
                                                 "\": must be a revision number such as \"42\", as returned in metadata.resourceVersion");
  }
  out = *parsed;
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

std::optional<ApiResponse> refuseEncoding(const ApiRequest& req) {
  if (req.content_type.find("protobuf") == std::string::npos && req.content_type.find("cbor") == std::string::npos) {
    return std::nullopt;
  }
  // As kube-apiserver answers for a kind without that encoding; clients then send JSON.
  return statusResponse(415, "UnsupportedMediaType",
                        "the body of the request was in an unknown format - accepted media types include: "
                        "application/json, application/yaml, application/apply-patch+yaml, "
                        "application/merge-patch+json, application/json-patch+json, "
                        "application/strategic-merge-patch+json");
}

}  // namespace kflex::hub
