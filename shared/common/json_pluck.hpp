// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace kflex {

/// What pluckJson found at one path.
struct Plucked {
  bool present = false;               ///< Some value (of any type) is there.
  std::optional<std::string> string;  ///< Its text, when it is a string.
};

/**
 * Reads the values at a few object-key paths (e.g. {"spec", "type"}) out of a JSON document
 * without building it as an nlohmann tree (simdjson). For controllers that look at a handful of
 * fields of every object a watch delivers. Returns one entry per path, in order; nullopt when
 * the document is not valid JSON. Paths do not descend into arrays.
 */
std::optional<std::vector<Plucked>> pluckJson(std::string_view json, const std::vector<std::vector<std::string>>& paths);

/**
 * Parses a JSON document into an nlohmann tree the way nlohmann::json::parse does (the same
 * values, number types and duplicate-key rule: the last one wins), reading the text with
 * simdjson, which halves the cost. nullopt when simdjson refuses the text or it holds something
 * only nlohmann reads its own way (a negative zero, an integer beyond 64 bits) or it is larger
 * than `limit` bytes: call nlohmann::json::parse then, which also words the error.
 * `duplicates`, when given, receives the path (e.g. "spec.items[2].name") of every key that
 * appeared more than once in its object.
 */
std::optional<nlohmann::json> parseJsonFast(std::string_view json, size_t limit = 256 * 1024,
                                            std::vector<std::string>* duplicates = nullptr);

}  // namespace kflex
