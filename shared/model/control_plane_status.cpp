// SPDX-License-Identifier: Apache-2.0
#include "shared/model/control_plane_status.hpp"

#include <utility>

#include "shared/model/conditions.hpp"

namespace kflex::model {

using Json = nlohmann::json;

bool applyStatusReport(Json& status, const protocol::StatusReport& report, const Json& secret_ref,
                       const std::string& stamp, UnusedHooks unused) {
  if (!status.is_object()) {
    status = Json::object();
  }
  bool changed = false;
  for (const auto& c : report.conditions) {
    changed |= setCondition(status, c.type, c.status, c.reason, c.message, stamp, true);
  }
  const Json endpoint = protocol::orNull(report.endpoint);
  const Json components = report.componentsJson();
  const Json hook_states = protocol::orNull(report.hook_states);
  const Json hooks_done = protocol::orNull(report.hooks_done);
  for (const auto& [key, value] : {std::pair<const char*, const Json*>{"endpoint", &endpoint},
                                   {"components", &components},
                                   {"secretRef", &secret_ref},
                                   {"postCreateHooks", &hook_states},
                                   {"postCreateHookCompleted", &hooks_done}}) {
    if (!value->is_null() && status.value(key, Json()) != *value) {
      status[key] = *value;
      changed = true;
    }
  }
  if (unused == UnusedHooks::Forget && !report.hook_states && status.contains("postCreateHooks")) {
    // It uses no hooks (any more).
    status.erase("postCreateHooks");
    status.erase("postCreateHookCompleted");
    if (status.contains("conditions") && status["conditions"].is_array()) {
      Json kept = Json::array();
      for (const auto& c : status["conditions"]) {
        if (c.value("type", "") != "PostCreateHooks") {
          kept.push_back(c);
        }
      }
      status["conditions"] = std::move(kept);
    }
    changed = true;
  }
  return changed;
}

}  // namespace kflex::model
