// SPDX-License-Identifier: Apache-2.0
#include "shared/model/schema.hpp"

namespace kflex::model {
namespace {

std::string join(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

bool typeMatches(const std::string& type, const Json& v) {
  if (type == "object") {
    return v.is_object();
  }
  if (type == "array") {
    return v.is_array();
  }
  if (type == "string") {
    return v.is_string();
  }
  if (type == "integer") {
    return v.is_number_integer() ||
           (v.is_number_float() && v.get<double>() == static_cast<double>(static_cast<int64_t>(v.get<double>())));
  }
  if (type == "number") {
    return v.is_number();
  }
  if (type == "boolean") {
    return v.is_boolean();
  }
  return true;
}

std::string jsonTypeName(const Json& v) {
  switch (v.type()) {
    case Json::value_t::object: return "object";
    case Json::value_t::array: return "array";
    case Json::value_t::string: return "string";
    case Json::value_t::boolean: return "boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return "integer";
    case Json::value_t::number_float: return "number";
    default: return "null";
  }
}

}  // namespace

std::string describeValue(const Json& v) {
  if (v.is_string()) {
    return Json(v.get<std::string>()).dump();
  }
  if (v.is_object()) {
    return "map[...]";
  }
  if (v.is_array()) {
    return "[...]";
  }
  return v.dump();
}

namespace {

// Where a value sits, as a chain up to the root: the text ("spec.hooks[0].name") is only built
// when an error or a dropped field needs it (most objects have neither, and every node has a path).
struct PathRef {
  const PathRef* parent = nullptr;
  const std::string* root = nullptr;  // the caller's path (root only)
  const std::string* key = nullptr;   // an object member's key
  size_t index = 0;                   // an array element's index (when key is null and not root)
  std::string str() const {
    if (root != nullptr) {
      return *root;
    }
    std::string up = parent->str();
    if (key != nullptr) {
      return join(up, *key);
    }
    return up + "[" + std::to_string(index) + "]";
  }
};

void walk(const CompiledSchema& schema, Json& value, const PathRef& at, UnknownFields unknown,
          std::vector<FieldError>& errors, std::vector<std::string>& dropped) {
  const std::string& type = schema.type;
  if (!type.empty() && !typeMatches(type, value)) {
    errors.push_back({"FieldValueTypeInvalid", at.str(),
                      "Invalid value: \"" + jsonTypeName(value) + "\": " + at.str() + " in body must be of type " +
                          type + ": \"" + jsonTypeName(value) + "\""});
    return;
  }
  if (type == "integer" && value.is_number_float()) {
    value = static_cast<int64_t>(value.get<double>());
  }
  if (schema.has_enum) {
    bool found = false;
    for (const auto& allowed : schema.enum_values) {
      if (allowed == value) {
        found = true;
        break;
      }
    }
    if (!found) {
      std::string list;
      for (const auto& allowed : schema.enum_values) {
        list += (list.empty() ? "" : ", ") + allowed.dump();
      }
      errors.push_back({"FieldValueNotSupported", at.str(),
                        "Unsupported value: " + describeValue(value) + ": supported values: " + list});
    }
  }
  if (value.is_string()) {
    if (schema.max_length && value.get_ref<const std::string&>().size() > *schema.max_length) {
      errors.push_back({"FieldValueTooLong", at.str(),
                        "Too long: may not be longer than " + std::to_string(*schema.max_length)});
    }
    if (schema.date_time && value.get_ref<const std::string&>().size() < 20) {
      errors.push_back({"FieldValueInvalid", at.str(),
                        "Invalid value: " + describeValue(value) + ": " + at.str() +
                            " in body must be of type date-time"});
    }
  }
  if (value.is_number() && schema.minimum && value.get<double>() < schema.minimum->get<double>()) {
    errors.push_back({"FieldValueInvalid", at.str(),
                      "Invalid value: " + value.dump() + ": " + at.str() + " in body should be greater than or equal to " +
                          schema.minimum->dump()});
  }
  if (value.is_object()) {
    if (schema.embedded_resource) {
      for (const char* key : {"apiVersion", "kind"}) {
        auto it = value.find(key);
        if (it == value.end() || !it->is_string() || it->get<std::string>().empty()) {
          errors.push_back({"FieldValueRequired", join(at.str(), key), "Required value: must not be empty for embedded resources"});
        }
      }
      if (auto it = value.find("metadata"); it != value.end() && !it->is_object()) {
        errors.push_back({"FieldValueTypeInvalid", join(at.str(), "metadata"), "Invalid value: metadata must be an object"});
      }
    }
    std::vector<std::string> to_drop;
    for (auto it = value.begin(); it != value.end(); ++it) {
      PathRef child{&at, nullptr, &it.key()};
      if (it.value().is_null()) {
        to_drop.push_back(it.key());
        continue;
      }
      if (const CompiledSchema* prop = schema.property(it.key())) {
        walk(*prop, it.value(), child, unknown, errors, dropped);
      } else if (schema.additional) {
        walk(*schema.additional, it.value(), child, unknown, errors, dropped);
      } else if (!schema.preserve_unknown && (schema.has_properties || schema.has_additional || type == "object")) {
        if (unknown == UnknownFields::Reject) {
          errors.push_back({"FieldValueInvalid", child.str(), "Invalid value: " + Json(it.key()).dump() +
                                                                  ": field not declared in schema"});
        } else {
          dropped.push_back(child.str());
          to_drop.push_back(it.key());
        }
      }
    }
    for (const auto& key : to_drop) {
      value.erase(key);
    }
    for (const auto& [key, def] : schema.defaults) {
      if (!value.contains(key)) {
        value[key] = def;
      }
    }
    for (const auto& r : schema.required) {
      if (!value.contains(r)) {
        errors.push_back({"FieldValueRequired", join(at.str(), r), "Required value"});
      }
    }
  } else if (value.is_array() && schema.items) {
    for (size_t i = 0; i < value.size(); ++i) {
      walk(*schema.items, value[i], PathRef{&at, nullptr, nullptr, i}, unknown, errors, dropped);
    }
  }
}

}  // namespace

CompiledSchema::CompiledSchema(const Json& schema) {
  if (!schema.is_object()) {
    return;
  }
  if (auto it = schema.find("type"); it != schema.end() && it->is_string()) {
    type = it->get<std::string>();
  }
  if (auto it = schema.find("enum"); it != schema.end()) {
    has_enum = true;
    for (const auto& v : *it) {
      enum_values.push_back(v);
    }
  }
  if (auto it = schema.find("maxLength"); it != schema.end() && it->is_number()) {
    max_length = it->get<size_t>();
  }
  if (auto it = schema.find("format"); it != schema.end() && it->is_string()) {
    date_time = it->get<std::string>() == "date-time";
  }
  if (auto it = schema.find("minimum"); it != schema.end() && it->is_number()) {
    minimum = *it;
  }
  auto flag = [&schema](const char* key) {
    auto it = schema.find(key);
    return it != schema.end() && it->is_boolean() && it->get<bool>();
  };
  preserve_unknown = flag("x-kubernetes-preserve-unknown-fields");
  embedded_resource = flag("x-kubernetes-embedded-resource");
  if (auto it = schema.find("properties"); it != schema.end()) {
    has_properties = true;
    for (auto p = it->begin(); it->is_object() && p != it->end(); ++p) {
      properties.emplace(p.key(), std::make_unique<CompiledSchema>(p.value()));
      if (p.value().is_object() && p.value().contains("default")) {
        defaults.emplace_back(p.key(), p.value()["default"]);
      }
    }
  }
  if (auto it = schema.find("additionalProperties"); it != schema.end()) {
    has_additional = true;
    if (it->is_object()) {
      additional = std::make_unique<CompiledSchema>(*it);
    }
  }
  if (auto it = schema.find("items"); it != schema.end()) {
    items = std::make_unique<CompiledSchema>(*it);
  }
  if (auto it = schema.find("required"); it != schema.end()) {
    for (const auto& r : *it) {
      required.push_back(r.get<std::string>());
    }
  }
}

const CompiledSchema* CompiledSchema::property(const std::string& name) const {
  auto it = properties.find(name);
  return it == properties.end() ? nullptr : it->second.get();
}

void validateAndDefault(const CompiledSchema& schema, Json& value, const std::string& path, UnknownFields unknown,
                        std::vector<FieldError>& errors, std::vector<std::string>& dropped) {
  walk(schema, value, PathRef{nullptr, &path}, unknown, errors, dropped);
}

void validateAndDefault(const Json& schema, Json& value, const std::string& path, UnknownFields unknown,
                        std::vector<FieldError>& errors, std::vector<std::string>& dropped) {
  validateAndDefault(CompiledSchema(schema), value, path, unknown, errors, dropped);
}

}  // namespace kflex::model
