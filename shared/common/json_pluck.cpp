// SPDX-License-Identifier: Apache-2.0
#include "shared/common/json_pluck.hpp"

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

}  // namespace kflex
