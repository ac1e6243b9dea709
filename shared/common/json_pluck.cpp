// SPDX-License-Identifier: Apache-2.0
#include "shared/common/json_pluck.hpp"

#include <cctype>
#include <cmath>

#include <simdjson.h>

namespace kflex {

std::optional<std::vector<Plucked>> pluckJson(std::string_view json, const std::vector<std::vector<std::string>>& paths) {
  // simdjson parses a watch event's object an order of magnitude faster than building it as an
  // nlohmann tree (or walking it with nlohmann's event interface), which is what this is for.
  // A parser keeps its buffers between documents; one per thread.
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(json.data(), json.size(), true).get(doc) != simdjson::SUCCESS) {
    return std::nullopt;
  }
  std::vector<Plucked> out(paths.size());
  for (size_t i = 0; i < paths.size(); ++i) {
    simdjson::dom::element at = doc;
    bool found = true;
    for (const auto& key : paths[i]) {
      simdjson::dom::object obj;
      if (at.get_object().get(obj) != simdjson::SUCCESS || obj.at_key(key).get(at) != simdjson::SUCCESS) {
        found = false;
        break;
      }
    }
    if (!found) {
      continue;
    }
    out[i].present = true;
    std::string_view text;
    if (at.get_string().get(text) == simdjson::SUCCESS) {
      out[i].string = std::string(text);
    }
  }
  return out;
}

namespace {
// Where convert() is in the document, kept on the stack: a key, or an index in an array.
struct PathFrame {
  const PathFrame* parent;
  std::string_view key;
  size_t index;
  bool is_index;
};

std::string pathText(const PathFrame* f) {
  std::vector<const PathFrame*> frames;
  for (; f != nullptr; f = f->parent) {
    frames.push_back(f);
  }
  std::string out;
  for (auto it = frames.rbegin(); it != frames.rend(); ++it) {
    if ((*it)->is_index) {
      out += "[" + std::to_string((*it)->index) + "]";
    } else {
      out += (out.empty() ? "" : ".") + std::string((*it)->key);
    }
  }
  return out;
}

// False when `element` holds what nlohmann would read differently.
bool convert(simdjson::dom::element element, nlohmann::json& out, std::vector<std::string>* duplicates,
             const PathFrame* at) {
  using Type = simdjson::dom::element_type;
  switch (element.type()) {
    case Type::OBJECT: {
      out = nlohmann::json::object();
      auto& members = out.get_ref<nlohmann::json::object_t&>();
      for (auto field : simdjson::dom::object(element)) {
        nlohmann::json value;
        PathFrame here{at, field.key, 0, false};
        if (!convert(field.value, value, duplicates, &here)) {
          return false;
        }
        auto [it, inserted] = members.insert_or_assign(std::string(field.key), std::move(value));
        if (!inserted && duplicates != nullptr) {
          duplicates->push_back(pathText(&here));
        }
      }
      return true;
    }
    case Type::ARRAY: {
      out = nlohmann::json::array();
      auto& items = out.get_ref<nlohmann::json::array_t&>();
      simdjson::dom::array array(element);
      items.reserve(array.size());
      for (auto item : array) {
        items.emplace_back();
        PathFrame here{at, {}, items.size() - 1, true};
        if (!convert(item, items.back(), duplicates, &here)) {
          return false;
        }
      }
      return true;
    }
    case Type::STRING:
      out = std::string(std::string_view(element));
      return true;
    case Type::INT64: {
      // nlohmann reads an integer without a sign as unsigned.
      int64_t v = int64_t(element);
      out = v >= 0 ? nlohmann::json(uint64_t(v)) : nlohmann::json(v);
      return true;
    }
    case Type::UINT64:
      out = uint64_t(element);
      return true;
    case Type::DOUBLE: {
      double v = double(element);
      if (v == 0 && std::signbit(v)) {
        return false;  // "-0" is an integer 0 to nlohmann, "-0.0" a float: the tree cannot tell
      }
      out = v;
      return true;
    }
    case Type::BOOL:
      out = bool(element);
      return true;
    case Type::NULL_VALUE:
      out = nullptr;
      return true;
  }
  return false;
}

// An integer written "-0" (a number, not inside a word such as "cp-0"): nlohmann keeps it as a
// signed integer, simdjson's tree as 0 without a sign. A string that merely holds ":-0" costs
// only the slower parse.
bool hasNegativeZeroInteger(std::string_view s) {
  for (size_t at = s.find("-0"); at != std::string_view::npos; at = s.find("-0", at + 1)) {
    size_t next = at + 2;
    if (next < s.size() && (std::isdigit(static_cast<unsigned char>(s[next])) != 0 || s[next] == '.' ||
                            s[next] == 'e' || s[next] == 'E')) {
      continue;
    }
    size_t prev = at;
    while (prev > 0 && std::isspace(static_cast<unsigned char>(s[prev - 1])) != 0) {
      --prev;
    }
    if (prev == 0 || s[prev - 1] == ':' || s[prev - 1] == ',' || s[prev - 1] == '[') {
      return true;
    }
  }
  return false;
}
}  // namespace

std::optional<nlohmann::json> parseJsonFast(std::string_view json, size_t limit, std::vector<std::string>* duplicates) {
  if (json.size() > limit || hasNegativeZeroInteger(json)) {
    return std::nullopt;  // limit: the parser would keep buffers this large for good
  }
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(json.data(), json.size(), true).get(doc) != simdjson::SUCCESS) {
    return std::nullopt;
  }
  nlohmann::json out;
  if (!convert(doc, out, duplicates, nullptr)) {
    return std::nullopt;
  }
  return out;
}

}  // namespace kflex
