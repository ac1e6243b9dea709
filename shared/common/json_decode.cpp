// SPDX-License-Identifier: Apache-2.0
#include "shared/common/json_decode.hpp"

#include <set>

#include <simdjson.h>

#include "shared/common/json_pluck.hpp"

namespace kflex {
namespace {

using Json = nlohmann::json;

// nlohmann's messages quote the text they stopped at; keep only valid UTF-8 of that, so the
// message itself can be sent back.
std::string cleaned(const std::string& message) {
  return isValidUtf8(message) ? message : Json(message).dump(-1, ' ', false, Json::error_handler_t::replace);
}

// Tracks the keys of every open object during nlohmann's callback parse, to find duplicates in
// the documents the fast path leaves to nlohmann.
class DuplicateFinder {
 public:
  explicit DuplicateFinder(std::vector<std::string>& out) : out_(out) {}

  bool operator()(int /*depth*/, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
        enterValue();
        open_.push_back({false, {}, {}, 0});
        break;
      case Json::parse_event_t::array_start:
        enterValue();
        open_.push_back({true, {}, {}, 0});
        break;
      case Json::parse_event_t::object_end:
      case Json::parse_event_t::array_end:
        open_.pop_back();
        break;
      case Json::parse_event_t::key: {
        auto& top = open_.back();
        top.key = parsed.get<std::string>();
        if (!top.keys.insert(top.key).second) {
          out_.push_back(path());
        }
        break;
      }
      case Json::parse_event_t::value:
        enterValue();
        break;
    }
    return true;
  }

 private:
  struct Open {
    bool array;
    std::set<std::string> keys;
    std::string key;    // objects: the key whose value comes next
    size_t next_index;  // arrays: the index of the next element
  };

  void enterValue() {
    if (!open_.empty() && open_.back().array) {
      open_.back().key = "[" + std::to_string(open_.back().next_index++) + "]";
    }
  }

  std::string path() const {
    std::string out;
    for (const auto& o : open_) {
      if (o.array) {
        out += o.key;
      } else {
        out += (out.empty() ? "" : ".") + o.key;
      }
    }
    return out;
  }

  std::vector<std::string>& out_;
  std::vector<Open> open_;
};

}  // namespace

size_t jsonDepth(std::string_view text, size_t stop) {
  size_t depth = 0;
  size_t deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > stop) {
        return deepest;
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

bool isValidUtf8(std::string_view text) { return simdjson::validate_utf8(text.data(), text.size()); }

std::string dumpSafe(const Json& value) { return value.dump(-1, ' ', false, Json::error_handler_t::replace); }

Result<Json> decodeJson(std::string_view text, JsonDecodeOptions options) {
  // simdjson refuses documents deeper than its own limit (1,024) and over its size limit; those
  // and other texts it leaves take nlohmann's parser, after the depth check.
  if (auto fast = parseJsonFast(text, 256 * 1024, options.duplicates)) {
    if (options.max_depth >= 1024 || jsonDepth(text, options.max_depth) <= options.max_depth) {
      return std::move(*fast);
    }
  }
  if (options.duplicates != nullptr) {
    options.duplicates->clear();
  }
  if (size_t depth = jsonDepth(text, options.max_depth); depth > options.max_depth) {
    return fail("the document is nested more than " + std::to_string(options.max_depth) +
                " levels deep (exceeded max depth)");
  }
  try {
    if (options.duplicates != nullptr) {
      DuplicateFinder finder(*options.duplicates);
      return Json::parse(text, std::ref(finder));
    }
    return Json::parse(text);
  } catch (const Json::parse_error& e) {
    return fail(cleaned(e.what()));
  } catch (const Json::out_of_range& e) {
    // A number beyond a double's range (1e400): nlohmann refuses it as Go does.
    return fail(cleaned(e.what()));
  } catch (const std::exception& e) {
    return fail(cleaned(e.what()));
  }
}

}  // namespace kflex
