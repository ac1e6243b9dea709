// SPDX-License-Identifier: Apache-2.0
#include "shared/kube/hooks.hpp"

#include <algorithm>
#include <set>

#include "shared/kube/template.hpp"

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

std::string hookRerunToken(const Json& cp, const std::string& hook) {
  const Json ann = cp.value("metadata", Json::object()).value("annotations", Json::object());
  if (!ann.is_object() || !ann.contains(kHookRerunAnnotation) || !ann[kHookRerunAnnotation].is_string()) {
    return "";
  }
  Json tokens = Json::parse(ann[kHookRerunAnnotation].get<std::string>(), nullptr, false);
  if (!tokens.is_object() || !tokens.contains(hook)) {
    return "";
  }
  return tokens[hook].is_string() ? tokens[hook].get<std::string>() : tokens[hook].dump();
}

bool hookTargetsHosted(const Json& hook) {
  const Json ann = hook.is_object() ? hook.value("metadata", Json::object()).value("annotations", Json::object())
                                    : Json::object();
  return ann.is_object() && ann.value(kHookTargetAnnotation, "") == "hosted";
}

namespace {

int rankOf(const std::string& kind) {
  static const std::map<std::string, int> kRanks = {
      {"Namespace", 0},          {"CustomResourceDefinition", 1}, {"PriorityClass", 2},
      {"ServiceAccount", 3},     {"Secret", 3},                   {"ConfigMap", 3},
      {"PersistentVolumeClaim", 3}, {"StorageClass", 2},          {"ClusterRole", 4},
      {"Role", 4},               {"ClusterRoleBinding", 5},       {"RoleBinding", 5},
      {"Service", 6},            {"Deployment", 8},               {"StatefulSet", 8},
      {"DaemonSet", 8},          {"ReplicaSet", 8},               {"Pod", 8},
      {"Job", 9},                {"CronJob", 9}};
  auto it = kRanks.find(kind);
  return it == kRanks.end() ? 7 : it->second;
}

bool hasCondition(const Json& obj, const std::string& type) {
  for (const auto& c : obj.value("status", Json::object()).value("conditions", Json::array())) {
    if (c.is_object() && c.value("type", "") == type && c.value("status", "") == "True") {
      return true;
    }
  }
  return false;
}

}  // namespace

Result<std::vector<Json>> renderHook(const Json& cp, const Json& hook, const HookUse& use) {
  const Json spec = hook.is_object() ? hook.value("spec", Json::object()) : Json::object();
  std::vector<std::pair<std::string, Json>> templates;
  const Json tpl = spec.value("templates", Json::array());
  for (size_t i = 0; tpl.is_array() && i < tpl.size(); ++i) {
    templates.emplace_back(use.hook + ".templates[" + std::to_string(i) + "]", tpl[i]);
  }
  const Json jobs = spec.value("jobs", Json::array());
  for (size_t i = 0; jobs.is_array() && i < jobs.size(); ++i) {
    Json job = jobs[i].is_object() ? jobs[i] : Json::object();
    job["apiVersion"] = "batch/v1";
    job["kind"] = "Job";
    templates.emplace_back(use.hook + ".jobs[" + std::to_string(i) + "]", std::move(job));
  }
  auto vars = hookVars(cp, hook, use);
  std::vector<Json> out;
  for (const auto& [name, t] : templates) {
    auto text = renderTemplate(t.dump(2), vars, name);
    if (!text) {
      return text.error();
    }
    Json obj;
    try {
      obj = Json::parse(text.value());
    } catch (const Json::parse_error& e) {
      // Where in the rendered text: line and column, and that line.
      size_t at = std::min(e.byte > 0 ? e.byte - 1 : 0, text.value().size());
      size_t line_start = text.value().rfind('\n', at == 0 ? 0 : at - 1);
      line_start = line_start == std::string::npos ? 0 : line_start + 1;
      size_t line_end = text.value().find('\n', at);
      size_t line = 1 + std::count(text.value().begin(), text.value().begin() + static_cast<long>(line_start), '\n');
      std::string shown = text.value().substr(line_start, line_end == std::string::npos ? std::string::npos
                                                                                       : line_end - line_start);
      return fail("template: " + name + ":" + std::to_string(line) + ":" + std::to_string(at - line_start + 1) +
                  ": does not render to valid JSON (a variable's value may hold a quote or a backslash): " +
                  shown.substr(shown.find_first_not_of(' ') == std::string::npos ? 0 : shown.find_first_not_of(' '), 200));
    }
    bool named = obj.is_object() && obj.value("metadata", Json::object()).is_object() &&
                 obj["metadata"].contains("name") && obj["metadata"]["name"].is_string() &&
                 !obj["metadata"]["name"].get<std::string>().empty();
    if (!obj.is_object() || !obj.contains("apiVersion") || !obj["apiVersion"].is_string() || !obj.contains("kind") ||
        !obj["kind"].is_string() || !named) {
      return fail("template " + name + " does not render to a Kubernetes object: it needs apiVersion, kind and "
                   "metadata.name");
    }
    out.push_back(std::move(obj));
  }
  std::stable_sort(out.begin(), out.end(), [](const Json& a, const Json& b) {
    return rankOf(a.value("kind", "")) < rankOf(b.value("kind", ""));
  });
  return out;
}

bool hookObjectDone(const Json& obj, std::string& failure) {
  if (!obj.is_object()) {
    return false;
  }
  const std::string kind = obj.value("kind", "");
  const Json status = obj.value("status", Json::object());
  const Json spec = obj.value("spec", Json::object());
  if (kind == "Job") {
    for (const auto& c : status.value("conditions", Json::array())) {
      if (c.is_object() && c.value("type", "") == "Failed" && c.value("status", "") == "True") {
        failure = c.value("reason", "Failed") + ": " + c.value("message", "");
      }
    }
    return status.value("succeeded", int64_t(0)) > 0;
  }
  if (kind == "Deployment" || kind == "StatefulSet") {
    int64_t want = spec.contains("replicas") && spec["replicas"].is_number_integer() ? spec["replicas"].get<int64_t>() : 1;
    return status.value("readyReplicas", int64_t(0)) == want;
  }
  if (kind == "DaemonSet") {
    return status.contains("desiredNumberScheduled") &&
           status.value("numberReady", int64_t(0)) == status.value("desiredNumberScheduled", int64_t(-1));
  }
  if (kind == "CustomResourceDefinition") {
    return hasCondition(obj, "Established");
  }
  if (kind == "Pod") {
    std::string phase = status.value("phase", "");
    if (phase == "Failed") {
      failure = "the pod failed: " + status.value("message", status.value("reason", ""));
    }
    return phase == "Running" || phase == "Succeeded";
  }
  return true;
}

}  // namespace kflex::kube
