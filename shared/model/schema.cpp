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

void validateAndDefault(const Json& schema, Json& value, const std::string& path, UnknownFields unknown,
                        std::vector<FieldError>& errors, std::vector<std::string>& dropped) {
  std::string type = schema.value("type", "");
  if (!type.empty() && !typeMatches(type, value)) {
    errors.push_back({"FieldValueTypeInvalid", path,
                      "Invalid value: \"" + jsonTypeName(value) + "\": " + path + " in body must be of type " +
                          type + ": \"" + jsonTypeName(value) + "\""});
    return;
  }
  if (type == "integer" && value.is_number_float()) {
    value = static_cast<int64_t>(value.get<double>());
  }
  if (auto e = schema.find("enum"); e != schema.end()) {
    bool found = false;
    for (const auto& allowed : *e) {
      if (allowed == value) {
        found = true;
        break;
      }
    }
    if (!found) {
      std::string list;
      for (const auto& allowed : *e) {
        list += (list.empty() ? "" : ", ") + allowed.dump();
      }
      errors.push_back({"FieldValueNotSupported", path,
                        "Unsupported value: " + describeValue(value) + ": supported values: " + list});
    }
  }
  if (value.is_string()) {
    if (auto m = schema.find("maxLength"); m != schema.end() &&
                                           value.get<std::string>().size() > m->get<size_t>()) {
      errors.push_back({"FieldValueTooLong", path,
                        "Too long: may not be longer than " + std::to_string(m->get<size_t>())});
    }
    if (schema.value("format", "") == "date-time" && value.get<std::string>().size() < 20) {
      errors.push_back({"FieldValueInvalid", path,
                        "Invalid value: " + describeValue(value) + ": " + path +
                            " in body must be of type date-time"});
    }
  }
  if (value.is_number()) {
    if (auto m = schema.find("minimum"); m != schema.end() && value.get<double>() < m->get<double>()) {
      errors.push_back({"FieldValueInvalid", path,
                        "Invalid value: " + value.dump() + ": " + path + " in body should be greater than or equal to " +
                            m->dump()});
    }
  }
  bool preserve = schema.value("x-kubernetes-preserve-unknown-fields", false);
  if (value.is_object()) {
    if (schema.value("x-kubernetes-embedded-resource", false)) {
      for (const char* key : {"apiVersion", "kind"}) {
        auto it = value.find(key);
        if (it == value.end() || !it->is_string() || it->get<std::string>().empty()) {
          errors.push_back({"FieldValueRequired", join(path, key), "Required value: must not be empty for embedded resources"});
        }
      }
      if (auto it = value.find("metadata"); it != value.end() && !it->is_object()) {
        errors.push_back({"FieldValueTypeInvalid", join(path, "metadata"), "Invalid value: metadata must be an object"});
      }
    }
    const Json* props = schema.contains("properties") ? &schema["properties"] : nullptr;
    const Json* additional = schema.contains("additionalProperties") ? &schema["additionalProperties"] : nullptr;
    std::vector<std::string> to_drop;
    for (auto it = value.begin(); it != value.end(); ++it) {
      std::string child = join(path, it.key());
      if (it.value().is_null()) {
        to_drop.push_back(it.key());
        continue;
      }
      if (props != nullptr && props->contains(it.key())) {
        validateAndDefault((*props)[it.key()], it.value(), child, unknown, errors, dropped);
      } else if (additional != nullptr && additional->is_object()) {
        validateAndDefault(*additional, it.value(), child, unknown, errors, dropped);
      } else if (!preserve && (props != nullptr || additional != nullptr || type == "object")) {
        if (unknown == UnknownFields::Reject) {
          errors.push_back({"FieldValueInvalid", child, "Invalid value: " + Json(it.key()).dump() +
                                                            ": field not declared in schema"});
        } else {
          dropped.push_back(child);
          to_drop.push_back(it.key());
        }
      }
    }
    for (const auto& key : to_drop) {
      value.erase(key);
    }
    if (props != nullptr) {
      for (auto it = props->begin(); it != props->end(); ++it) {
        if (!value.contains(it.key()) && it.value().contains("default")) {
          value[it.key()] = it.value()["default"];
        }
      }
    }
    if (auto req = schema.find("required"); req != schema.end()) {
      for (const auto& r : *req) {
        if (!value.contains(r.get<std::string>())) {
          errors.push_back({"FieldValueRequired", join(path, r.get<std::string>()), "Required value"});
        }
      }
    }
  } else if (value.is_array()) {
    if (auto items = schema.find("items"); items != schema.end()) {
      for (size_t i = 0; i < value.size(); ++i) {
        validateAndDefault(*items, value[i], path + "[" + std::to_string(i) + "]", unknown, errors, dropped);
      }
    }
  }
}

}  // namespace kflex::model
