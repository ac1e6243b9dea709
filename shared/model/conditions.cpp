// SPDX-License-Identifier: Apache-2.0
#include "shared/model/conditions.hpp"

namespace kflex::model {

bool setCondition(nlohmann::json& status, const std::string& type, const std::string& value, const std::string& reason,
                  const std::string& message, const std::string& now, bool with_update_time) {
  if (!status.is_object()) {
    status = nlohmann::json::object();
  }
  auto& list = status["conditions"];
  if (!list.is_array()) {
    list = nlohmann::json::array();
  }
  for (auto& c : list) {
    if (c.is_object() && c.value("type", "") == type) {
      bool same = c.value("status", "") == value && c.value("reason", "") == reason && c.value("message", "") == message;
      if (same) {
        return false;
      }
      if (c.value("status", "") != value) {
        c["lastTransitionTime"] = now;
      }
      c["status"] = value;
      c["reason"] = reason;
      c["message"] = message;
      if (with_update_time) {
        c["lastUpdateTime"] = now;
      }
      return true;
    }
  }
  // (Built key by key: nlohmann's initializer lists copy every value once more.)
  nlohmann::json c = nlohmann::json::object();
  c["type"] = type;
  c["status"] = value;
  c["reason"] = reason;
  c["message"] = message;
  c["lastTransitionTime"] = now;
  if (with_update_time) {
    c["lastUpdateTime"] = now;
  }
  list.push_back(std::move(c));
  return true;
}

std::string conditionStatus(const nlohmann::json& obj, const std::string& type) {
  auto st = obj.find("status");
  if (st == obj.end() || !st->is_object()) {
    return "";
  }
  auto list = st->find("conditions");
  if (list == st->end() || !list->is_array()) {
    return "";
  }
  for (const auto& c : *list) {
    if (c.is_object() && c.value("type", "") == type) {
      return c.value("status", "");
    }
  }
  return "";
}

}  // namespace kflex::model
