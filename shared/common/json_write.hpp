// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace kflex {

/**
 * Compact JSON text of `value`, byte for byte what `value.dump()` gives, in a fraction of its
 * time for the documents the hub stores: strings of printable ASCII (nearly all of them) are
 * copied in one piece instead of being decoded character by character. Strings with other bytes,
 * and floating-point numbers, are written by nlohmann itself (so invalid UTF-8 throws as dump()
 * does).
 */
std::string dumpJson(const nlohmann::json& value);
/// Appends dumpJson(value) to `out`.
void appendJson(std::string& out, const nlohmann::json& value);

/**
 * Empties `value` (an object or array) bottom-up, leaving an empty container. The same end as
 * destroying it, at about half the cost for the trees the hub builds: nlohmann's destructor moves
 * every child of a container onto a heap stack before freeing it (so deep nesting cannot overflow
 * the call stack); this recurses instead, to a bounded depth, below which nlohmann's way takes over.
 */
void releaseJson(nlohmann::json& value);

}  // namespace kflex
