// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "shared/common/result.hpp"

namespace kflex {

/// The deepest nesting of arrays and objects a decoded document may have: Go's encoding/json
/// limit, which kube-apiserver's decoder inherits. Deeper text is refused before it is parsed, so
/// no recursive walk over a decoded tree can run out of stack.
inline constexpr size_t kMaxJsonDepth = 10000;

/// How decodeJson reads a document from outside the process.
struct JsonDecodeOptions {
  size_t max_depth = kMaxJsonDepth;
  /// When given, receives the path ("metadata.labels.app", "items[2].name") of every key that
  /// appears more than once in its object. The last one wins, as in nlohmann and Go.
  std::vector<std::string>* duplicates = nullptr;
};

/**
 * Parses untrusted JSON text. Never throws: text that is not JSON, not UTF-8, nested deeper than
 * the limit, or holds a number beyond a double's range gives an error saying what and where.
 */
Result<nlohmann::json> decodeJson(std::string_view text, JsonDecodeOptions options = {});

/// The nesting depth of JSON text (brackets outside strings), counting no further than `stop`.
size_t jsonDepth(std::string_view text, size_t stop);

/// True when `text` is well-formed UTF-8 (no overlong forms, surrogates or values past U+10FFFF).
bool isValidUtf8(std::string_view text);

/**
 * value.dump(), except that bytes which are not UTF-8 become U+FFFD instead of throwing. For
 * answers that may quote what a client sent (an error message naming a bad label, say).
 */
std::string dumpSafe(const nlohmann::json& value);

}  // namespace kflex
