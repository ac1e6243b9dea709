// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace kflex::model {

/// Sets condition `type` in status.conditions (creating the list), keeping lastTransitionTime
/// when the status value does not change (Kubernetes' meta.SetStatusCondition). Sets
/// lastUpdateTime too when `with_update_time` (upstream ControlPlane conditions require it).
/// Returns true when anything changed.
bool setCondition(nlohmann::json& status, const std::string& type, const std::string& value, const std::string& reason,
                  const std::string& message, const std::string& now, bool with_update_time = false);
/// The status value of condition `type` ("True", "False", "Unknown"), or "" when absent.
std::string conditionStatus(const nlohmann::json& obj, const std::string& type);

}  // namespace kflex::model
