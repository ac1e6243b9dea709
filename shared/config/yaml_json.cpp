// SPDX-License-Identifier: Apache-2.0
#include "shared/config/yaml_json.hpp"

#include <cctype>
#include <cmath>
#include <cerrno>
#include <cstdlib>
#include <regex>

#include <yaml-cpp/yaml.h>

#include "shared/common/json_decode.hpp"

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

// What one document may expand to. yaml-cpp keeps an alias as a second reference to its anchor's
// node, so the tree it loads stays small; written out as JSON every reference becomes a copy, and
// a few hundred bytes of nested aliases ("billion laughs") would expand to gigabytes. A document
// without aliases never has more values, or more bytes in its strings, than it has bytes of text.
struct Budget {
  size_t values_left;
  size_t bytes_left;
};

Result<Json> tooMuchAliasing() {
  return fail("the document expands to far more than its own size through aliases (*name): excessive aliasing; "
              "write it without anchors and aliases");
}

std::string lineOf(const YAML::Node& node) { return "line " + std::to_string(node.Mark().line + 1); }

Result<Json> convert(const YAML::Node& node, int depth, Budget& budget) {
  if (depth > 100) {
    return fail("document nested too deeply");
  }
  if (budget.values_left == 0) {
    return tooMuchAliasing();
  }
  --budget.values_left;
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return Json(nullptr);
    case YAML::NodeType::Scalar: {
      const std::string& text = node.Scalar();
      if (text.size() > budget.bytes_left) {
        return tooMuchAliasing();
      }
      budget.bytes_left -= text.size();
      if (!isValidUtf8(text)) {
        return fail(lineOf(node) + ": the value is not valid UTF-8");
      }
      Json v = scalar(node);
      if (v.is_number_float() && !std::isfinite(v.get<double>())) {
        return fail(lineOf(node) + ": the number " + text + " is out of range");
      }
      return v;
    }
    case YAML::NodeType::Sequence: {
      Json arr = Json::array();
      for (const auto& item : node) {
        auto v = convert(item, depth + 1, budget);
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
          return fail(lineOf(kv.first) + ": mapping keys must be strings");
        }
        const std::string& key = kv.first.Scalar();
        if (key.size() > budget.bytes_left) {
          return tooMuchAliasing();
        }
        budget.bytes_left -= key.size();
        if (!isValidUtf8(key)) {
          return fail(lineOf(kv.first) + ": a key is not valid UTF-8");
        }
        if (obj.contains(key)) {
          return fail(lineOf(kv.first) + ": key " + Json(key).dump() + " already set in map");
        }
        auto v = convert(kv.second, depth + 1, budget);
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
    // Room for what aliases legitimately add (a shared block of defaults), never for an explosion.
    Budget budget{2 * text.size() + 10000, 2 * text.size() + 64 * 1024};
    return convert(node, 0, budget);
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
