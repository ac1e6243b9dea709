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

const std::string& stringOr(const Json& schema, const char* key) {
  static const std::string kEmpty;
  auto it = schema.find(key);
  return it != schema.end() && it->is_string() ? it->get_ref<const std::string&>() : kEmpty;
}

bool flag(const Json& schema, const char* key) {
  auto it = schema.find(key);
  return it != schema.end() && it->is_boolean() && it->get<bool>();
}

void walk(const Json& schema, Json& value, const PathRef& at, UnknownFields unknown, std::vector<FieldError>& errors,
          std::vector<std::string>& dropped) {
  const std::string& type = stringOr(schema, "type");
  if (!type.empty() && !typeMatches(type, value)) {
    errors.push_back({"FieldValueTypeInvalid", at.str(),
                      "Invalid value: \"" + jsonTypeName(value) + "\": " + at.str() + " in body must be of type " +
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
      errors.push_back({"FieldValueNotSupported", at.str(),
                        "Unsupported value: " + describeValue(value) + ": supported values: " + list});
    }
  }
  if (value.is_string()) {
    if (auto m = schema.find("maxLength"); m != schema.end() &&
                                           value.get<std::string>().size() > m->get<size_t>()) {
      errors.push_back({"FieldValueTooLong", at.str(),
                        "Too long: may not be longer than " + std::to_string(m->get<size_t>())});
    }
    if (stringOr(schema, "format") == "date-time" && value.get<std::string>().size() < 20) {
      errors.push_back({"FieldValueInvalid", at.str(),
                        "Invalid value: " + describeValue(value) + ": " + at.str() +
                            " in body must be of type date-time"});
    }
  }
  if (value.is_number()) {
    if (auto m = schema.find("minimum"); m != schema.end() && value.get<double>() < m->get<double>()) {
      errors.push_back({"FieldValueInvalid", at.str(),
                        "Invalid value: " + value.dump() + ": " + at.str() + " in body should be greater than or equal to " +
                            m->dump()});
    }
  }
  bool preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
  if (value.is_object()) {
    if (flag(schema, "x-kubernetes-embedded-resource")) {
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
    auto props_it = schema.find("properties");
    auto additional_it = schema.find("additionalProperties");
    const Json* props = props_it != schema.end() ? &*props_it : nullptr;
    const Json* additional = additional_it != schema.end() ? &*additional_it : nullptr;
    std::vector<std::string> to_drop;
    for (auto it = value.begin(); it != value.end(); ++it) {
      PathRef child{&at, nullptr, &it.key()};
      if (it.value().is_null()) {
        to_drop.push_back(it.key());
        continue;
      }
      auto prop = props != nullptr ? props->find(it.key()) : Json::const_iterator{};
      if (props != nullptr && prop != props->end()) {
        walk(*prop, it.value(), child, unknown, errors, dropped);
      } else if (additional != nullptr && additional->is_object()) {
        walk(*additional, it.value(), child, unknown, errors, dropped);
      } else if (!preserve && (props != nullptr || additional != nullptr || type == "object")) {
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
          errors.push_back({"FieldValueRequired", join(at.str(), r.get<std::string>()), "Required value"});
        }
      }
    }
  } else if (value.is_array()) {
    if (auto items = schema.find("items"); items != schema.end()) {
      for (size_t i = 0; i < value.size(); ++i) {
        walk(*items, value[i], PathRef{&at, nullptr, nullptr, i}, unknown, errors, dropped);
      }
    }
  }
}

}  // namespace

void validateAndDefault(const Json& schema, Json& value, const std::string& path, UnknownFields unknown,
                        std::vector<FieldError>& errors, std::vector<std::string>& dropped) {
  walk(schema, value, PathRef{nullptr, &path}, unknown, errors, dropped);
}

}  // namespace kflex::model
