// SPDX-License-Identifier: Apache-2.0
#include "shared/model/resource.hpp"

#include <cmath>
#include <map>
#include <optional>

#include "shared/common/util.hpp"

namespace kflex::model {

void Registry::add(ResourceType type) {
  type.compiled_schema = std::make_shared<const CompiledSchema>(type.schema);
  types_.push_back(std::make_unique<ResourceType>(std::move(type)));
}

const ResourceType* Registry::find(const std::string& group, const std::string& version,
                                   const std::string& plural) const {
  for (const auto& t : types_) {
    if (t->group == group && t->version == version && t->plural == plural) {
      return t.get();
    }
  }
  return nullptr;
}

const ResourceType* Registry::findKind(const std::string& api_version, const std::string& kind) const {
  for (const auto& t : types_) {
    if (t->apiVersion() == api_version && t->kind == kind) {
      return t.get();
    }
  }
  return nullptr;
}

std::vector<std::string> Registry::groups() const {
  std::vector<std::string> out;
  for (const auto& t : types_) {
    if (std::find(out.begin(), out.end(), t->group) == out.end()) {
      out.push_back(t->group);
    }
  }
  return out;
}

namespace {

bool isQualifiedNamePart(std::string_view s) {
  if (s.empty() || s.size() > 63) {
    return false;
  }
  auto alnum = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; };
  if (!alnum(s.front()) || !alnum(s.back())) {
    return false;
  }
  for (char c : s) {
    if (!alnum(c) && c != '-' && c != '_' && c != '.') {
      return false;
    }
  }
  return true;
}

// Label and annotation keys: optional DNS-subdomain prefix, then a qualified name.
bool isQualifiedName(std::string_view key) {
  auto slash = key.find('/');
  if (slash != std::string_view::npos) {
    return isDns1123Subdomain(key.substr(0, slash)) && isQualifiedNamePart(key.substr(slash + 1));
  }
  return isQualifiedNamePart(key);
}

bool isLabelValue(std::string_view v) { return v.empty() || isQualifiedNamePart(v); }

}  // namespace

const Json& objectMetaSchema() {
  static const Json schema = Json::parse(R"({
    "type": "object",
    "description": "Standard object's metadata.",
    "properties": {
      "name": {"type": "string", "description": "Name must be unique. For ControlPlane a DNS-1123 label (lower-case letters, digits and '-', at most 63 characters)."},
      "generateName": {"type": "string", "description": "Prefix the server uses to make a unique name when name is empty."},
      "namespace": {"type": "string", "description": "Always empty: these kinds are cluster-scoped."},
      "uid": {"type": "string", "description": "Unique id set by the server at creation. Read-only."},
      "resourceVersion": {"type": "string", "description": "Opaque version of the object, the store revision of its last write. Used for optimistic concurrency and watch."},
      "generation": {"type": "integer", "format": "int64", "description": "Sequence number of changes to the desired state (spec). Read-only."},
      "creationTimestamp": {"type": "string", "format": "date-time", "description": "When the object was created. Read-only."},
      "deletionTimestamp": {"type": "string", "format": "date-time", "description": "When deletion was requested; the object goes once its finalizers are gone. Read-only."},
      "deletionGracePeriodSeconds": {"type": "integer", "format": "int64"},
      "labels": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Map of string keys and values used to organize and select objects."},
      "annotations": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Unstructured key value map stored with the object."},
      "finalizers": {"type": "array", "items": {"type": "string"}, "description": "Must be empty before the object is deleted from the store."},
      "ownerReferences": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
      "managedFields": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}, "description": "Which field manager owns which fields (server-side apply)."},
      "selfLink": {"type": "string"}
    }
  })");
  return schema;
}

void validateObjectMeta(const Json& meta, bool namespaced, bool name_is_label, std::vector<FieldError>& errors) {
  if (!meta.is_object()) {
    errors.push_back({"FieldValueTypeInvalid", "metadata", "Invalid value: metadata must be an object"});
    return;
  }
  static const CompiledSchema kMetaSchema(objectMetaSchema());
  Json copy = meta;
  std::vector<std::string> dropped;
  validateAndDefault(kMetaSchema, copy, "metadata", UnknownFields::Reject, errors, dropped);
  auto name_at = meta.find("name");
  std::string name = name_at != meta.end() && name_at->is_string() ? name_at->get<std::string>() : "";
  if (name.empty()) {
    errors.push_back({"FieldValueRequired", "metadata.name", "Required value: name or generateName is required"});
  } else if (name_is_label && !isDns1123Label(name)) {
    errors.push_back({"FieldValueInvalid", "metadata.name",
                      "Invalid value: " + Json(name).dump() +
                          ": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                          "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
                          "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"});
  } else if (!name_is_label && !isDns1123Subdomain(name)) {
    errors.push_back({"FieldValueInvalid", "metadata.name",
                      "Invalid value: " + Json(name).dump() +
                          ": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                          "'-' or '.', and must start and end with an alphanumeric character"});
  }
  if (auto labels = meta.find("labels"); labels != meta.end() && labels->is_object()) {
    for (auto it = labels->begin(); it != labels->end(); ++it) {
      if (!isQualifiedName(it.key())) {
        errors.push_back({"FieldValueInvalid", "metadata.labels",
                          "Invalid value: " + Json(it.key()).dump() + ": name part must consist of alphanumeric "
                          "characters, '-', '_' or '.', and must start and end with an alphanumeric character"});
      }
      if (it.value().is_string() && !isLabelValue(it.value().get<std::string>())) {
        errors.push_back({"FieldValueInvalid", "metadata.labels",
                          "Invalid value: " + it.value().dump() + ": a valid label must be an empty string or "
                          "consist of alphanumeric characters, '-', '_' or '.', at most 63 characters"});
      }
    }
  }
  if (auto ann = meta.find("annotations"); ann != meta.end() && ann->is_object()) {
    size_t total = 0;
    for (auto it = ann->begin(); it != ann->end(); ++it) {
      if (!isQualifiedName(it.key())) {
        errors.push_back({"FieldValueInvalid", "metadata.annotations",
                          "Invalid value: " + Json(it.key()).dump() + ": name part must consist of alphanumeric "
                          "characters, '-', '_' or '.'"});
      }
      total += it.key().size() + (it.value().is_string() ? it.value().get<std::string>().size() : 0);
    }
    if (total > 256 * 1024) {
      errors.push_back({"FieldValueTooLong", "metadata.annotations", "Too long: must have at most 262144 bytes"});
    }
  }
  if (auto fin = meta.find("finalizers"); fin != meta.end() && fin->is_array()) {
    for (size_t i = 0; i < fin->size(); ++i) {
      const Json& f = (*fin)[i];
      if (f.is_string() && !isQualifiedName(f.get<std::string>())) {
        errors.push_back({"FieldValueInvalid", "metadata.finalizers[" + std::to_string(i) + "]",
                          "Invalid value: " + f.dump() + ": name part must consist of alphanumeric characters, "
                          "'-', '_' or '.'"});
      }
    }
  }
  if (!namespaced && !meta.value("namespace", "").empty()) {
    // Cluster-scoped: kube-apiserver clears it; the caller does the same before validating.
  }
}

Json evalJsonPath(const Json& obj, const std::string& path) {
  // Supports what printer columns use: .a.b.c and .list[?(@.key=='value')].field
  const Json* cur = &obj;
  size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '.') {
      ++i;
      size_t end = path.find_first_of(".[", i);
      std::string key = path.substr(i, end == std::string::npos ? std::string::npos : end - i);
      if (!cur->is_object() || !cur->contains(key)) {
        return nullptr;
      }
      cur = &(*cur)[key];
      i = end == std::string::npos ? path.size() : end;
    } else if (path.compare(i, 4, "[?(@") == 0) {
      size_t close = path.find(")]", i);
      if (close == std::string::npos || !cur->is_array()) {
        return nullptr;
      }
      std::string cond = path.substr(i + 4, close - i - 4);  // .type=='Ready'
      size_t eq = cond.find("==");
      if (eq == std::string::npos || cond.empty() || cond[0] != '.') {
        return nullptr;
      }
      std::string key = cond.substr(1, eq - 1);
      std::string want = cond.substr(eq + 2);
      if (want.size() >= 2 && (want.front() == '\'' || want.front() == '"')) {
        want = want.substr(1, want.size() - 2);
      }
      const Json* found = nullptr;
      for (const auto& item : *cur) {
        if (item.is_object() && item.contains(key) && item[key].is_string() && item[key].get<std::string>() == want) {
          found = &item;
          break;
        }
      }
      if (found == nullptr) {
        return nullptr;
      }
      cur = found;
      i = close + 2;
    } else if (path[i] == '[') {
      size_t close = path.find(']', i);
      if (close == std::string::npos || !cur->is_array()) {
        return nullptr;
      }
      size_t idx = std::stoul(path.substr(i + 1, close - i - 1));
      if (idx >= cur->size()) {
        return nullptr;
      }
      cur = &(*cur)[idx];
      i = close + 1;
    } else {
      return nullptr;
    }
  }
  return *cur;
}

std::optional<int64_t> parseQuantity(const std::string& q, bool millis) {
  if (q.empty()) {
    return std::nullopt;
  }
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(q, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  std::string suffix = q.substr(used);
  static const std::map<std::string, double> kFactors = {
      {"", 1},         {"m", 1e-3},         {"k", 1e3},          {"M", 1e6},          {"G", 1e9},
      {"T", 1e12},     {"Ki", 1024.0},      {"Mi", 1048576.0},   {"Gi", 1073741824.0}, {"Ti", 1099511627776.0}};
  auto f = kFactors.find(suffix);
  if (f == kFactors.end() || v < 0 || !std::isfinite(v)) {
    return std::nullopt;
  }
  double value = v * f->second * (millis ? 1000 : 1);
  return int64_t(std::llround(value));
}

void applyKindRules(const ResourceType& t, const Json& obj, std::vector<FieldError>& errors) {
  if (!t.validate) {
    return;
  }
  try {
    t.validate(obj, errors);
  } catch (const Json::exception&) {
    if (errors.empty()) {
      errors.push_back({"FieldValueInvalid", "", "Invalid value: the object does not have the shape of a " + t.kind});
    }
  }
}

}  // namespace kflex::model
