// SPDX-License-Identifier: Apache-2.0
#include "shared/kube/hooks.hpp"

#include <set>

namespace kflex::kube {
namespace {

using Json = nlohmann::json;

std::map<std::string, std::string> stringMap(const Json& j) {
  std::map<std::string, std::string> out;
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (it.value().is_string()) {
        out[it.key()] = it.value().get<std::string>();
      }
    }
  }
  return out;
}

}  // namespace

std::vector<HookUse> hookUses(const Json& cp) {
  std::vector<HookUse> out;
  std::set<std::string> seen;
  const Json spec = cp.is_object() ? cp.value("spec", Json::object()) : Json::object();
  auto add = [&](const std::string& name, const Json& vars) {
    if (!name.empty() && seen.insert(name).second) {
      out.push_back({name, stringMap(vars)});
    }
  };
  if (auto legacy = spec.find("postCreateHook"); legacy != spec.end() && legacy->is_string()) {
    add(legacy->get<std::string>(), spec.value("postCreateHookVars", Json::object()));
  }
  for (const auto& use : spec.value("postCreateHooks", Json::array())) {
    if (use.is_object() && use.contains("hookName") && use["hookName"].is_string()) {
      add(use["hookName"].get<std::string>(), use.value("vars", Json::object()));
    }
  }
  return out;
}

std::map<std::string, std::string> hookVars(const Json& cp, const Json& hook, const HookUse& use) {
  std::map<std::string, std::string> vars;
  const Json hook_spec = hook.is_object() ? hook.value("spec", Json::object()) : Json::object();
  for (const auto& v : hook_spec.value("defaultVars", Json::array())) {
    if (v.is_object() && v.contains("name") && v["name"].is_string() && v.contains("value") && v["value"].is_string()) {
      vars[v["name"].get<std::string>()] = v["value"].get<std::string>();
    }
  }
  const Json cp_spec = cp.is_object() ? cp.value("spec", Json::object()) : Json::object();
  for (const auto& [k, v] : stringMap(cp_spec.value("globalVars", Json::object()))) {
    vars[k] = v;
  }
  for (const auto& [k, v] : use.vars) {
    vars[k] = v;
  }
  std::string name = cp.is_object() ? cp.value("metadata", Json::object()).value("name", "") : "";
  vars["Namespace"] = name + "-system";
  vars["ControlPlaneName"] = name;
  vars["HookName"] = use.hook;
  return vars;
}

}  // namespace kflex::kube
