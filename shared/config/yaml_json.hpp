// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "shared/common/result.hpp"

namespace kflex::config {

/// Parses one YAML document (YAML 1.2 core schema for plain scalars) into JSON. Errors carry the
/// line and column. JSON text is YAML, so this also reads JSON.
Result<nlohmann::json> yamlToJson(std::string_view text);
/// Writes JSON as block-style YAML, keys in the JSON's order, strings quoted where YAML needs it.
std::string jsonToYaml(const nlohmann::json& value);

}  // namespace kflex::config
