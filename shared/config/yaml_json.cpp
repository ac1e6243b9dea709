// SPDX-License-Identifier: Apache-2.0
#include "shared/config/yaml_json.hpp"

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <regex>

#include <yaml-cpp/yaml.h>

namespace kflex::config {
namespace {

using Json = nlohmann::json;

Json scalar(const YAML::Node& node) {
  const std::string& s = node.Scalar();
  if (node.Tag() == "!" || node.Tag() == "tag:yaml.org,2002:str") {
    return s;
  }
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") {
    return nullptr;
  }
  if (s == "true" || s == "True" || s == "TRUE") {
    return true;
  }
  if (s == "false" || s == "False" || s == "FALSE") {
    return false;
  }
  static const std::regex kInt("[-+]?[0-9]+");
  static const std::regex kFloat("[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?");
  if (std::regex_match(s, kInt)) {
    errno = 0;
    char* end = nullptr;
    long long v = std::strtoll(s.c_str(), &end, 10);
    if (errno == 0) {
      return v;
    }
    return s;
  }
  if (std::regex_match(s, kFloat)) {
    return std::strtod(s.c_str(), nullptr);
  }
  return s;
}

Result<Json> convert(const YAML::Node& node, int depth) {
  if (depth > 100) {
    return fail("document nested too deeply");
  }
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return Json(nullptr);
    case YAML::NodeType::Scalar:
      return scalar(node);
    case YAML::NodeType::Sequence: {
      Json arr = Json::array();
      for (const auto& item : node) {
        auto v = convert(item, depth + 1);
        if (!v) {
          return v;
        }
        arr.push_back(std::move(v.value()));
      }
      return arr;
    }
    case YAML::NodeType::Map: {
      Json obj = Json::object();
      for (const auto& kv : node) {
        if (!kv.first.IsScalar()) {
          return fail("line " + std::to_string(kv.first.Mark().line + 1) + ": mapping keys must be strings");
        }
        const std::string& key = kv.first.Scalar();
        if (obj.contains(key)) {
          return fail("line " + std::to_string(kv.first.Mark().line + 1) + ": key " + Json(key).dump() +
                      " already set in map");
        }
        auto v = convert(kv.second, depth + 1);
        if (!v) {
          return v;
        }
        obj[key] = std::move(v.value());
      }
      return obj;
    }
  }
  return Json(nullptr);
}

bool needsQuotes(const std::string& s) {
  if (s.empty()) {
    return true;
  }
  Json as_yaml = scalar(YAML::Node(s));
  if (!as_yaml.is_string()) {
    return true;  // would read back as a number, bool or null
  }
  // Timestamps, versions and the like start with a digit; YAML 1.1 readers may retype them.
  if (std::isdigit(static_cast<unsigned char>(s.front())) || s == "y" || s == "n" || s == "yes" || s == "no" ||
      s == "on" || s == "off" || s == "Yes" || s == "No" || s == "On" || s == "Off") {
    return true;
  }
  static const std::string kSpecialFirst = "!&*-?{}[],#|>@`\"'%: ";
  if (kSpecialFirst.find(s.front()) != std::string::npos || s.back() == ' ' || s.back() == ':') {
    return true;
  }
  return s.find(": ") != std::string::npos || s.find(" #") != std::string::npos ||
         s.find('\n') != std::string::npos || s.find('\t') != std::string::npos;
}

std::string quote(const std::string& s) { return Json(s).dump(); }

void emit(const Json& v, int indent, std::string& out, bool in_seq);

void emitScalar(const Json& v, std::string& out) {
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    out += needsQuotes(s) ? quote(s) : s;
  } else if (v.is_null()) {
    out += "null";
  } else {
    out += v.dump();
  }
}

bool isEmptyContainer(const Json& v) { return (v.is_object() || v.is_array()) && v.empty(); }

void emit(const Json& v, int indent, std::string& out, bool in_seq) {
  std::string pad(size_t(indent), ' ');
  if (v.is_object()) {
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (!(first && in_seq)) {
        out += pad;
      }
      first = false;
      out += needsQuotes(it.key()) ? quote(it.key()) : it.key();
      out += ":";
      const Json& child = it.value();
      if (isEmptyContainer(child)) {
        out += child.is_object() ? " {}\n" : " []\n";
      } else if (child.is_object()) {
        out += "\n";
        emit(child, indent + 2, out, false);
      } else if (child.is_array()) {
        out += "\n";
        emit(child, indent, out, false);
      } else {
        out += " ";
        emitScalar(child, out);
        out += "\n";
      }
    }
  } else if (v.is_array()) {
    for (const auto& item : v) {
      out += pad + "- ";
      if (isEmptyContainer(item)) {
        out += item.is_object() ? "{}\n" : "[]\n";
      } else if (item.is_object()) {
        emit(item, indent + 2, out, true);
      } else if (item.is_array()) {
        out += "\n";
        emit(item, indent + 2, out, false);
      } else {
        emitScalar(item, out);
        out += "\n";
      }
    }
  } else {
    out += pad;
    emitScalar(v, out);
    out += "\n";
  }
}

}  // namespace

Result<Json> yamlToJson(std::string_view text) {
  try {
    YAML::Node node = YAML::Load(std::string(text));
    return convert(node, 0);
  } catch (const YAML::Exception& e) {
    return fail("line " + std::to_string(e.mark.line + 1) + ", column " + std::to_string(e.mark.column + 1) +
                ": " + e.msg);
  }
}

std::string jsonToYaml(const Json& value) {
  std::string out;
  if (isEmptyContainer(value)) {
    return value.is_object() ? "{}\n" : "[]\n";
  }
  emit(value, 0, out, false);
  return out;
}

}  // namespace kflex::config
