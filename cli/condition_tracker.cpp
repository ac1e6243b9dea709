// SPDX-License-Identifier: Apache-2.0
#include "cli/condition_tracker.hpp"

#include <algorithm>

#include "shared/model/resource.hpp"

namespace kflex::cli {
namespace {

using Json = nlohmann::json;

std::string describe(const std::string& type, const std::string& status, const std::string& reason,
                     const std::string& message) {
  std::string line = type + "=" + (status.empty() ? "Unknown" : status);
  if (!reason.empty()) {
    line += " (" + reason + ")";
  }
  if (!message.empty()) {
    line += ": " + message;
  }
  return line;
}

}  // namespace

std::vector<std::string> ConditionTracker::update(const Json& cp) {
  std::vector<std::string> lines;
  if (!cp.is_object() || !cp.contains("status") || !cp["status"].is_object()) {
    return lines;
  }
  const Json& status = cp["status"];
  if (status.contains("agent") && status["agent"].is_string()) {
    agent_ = status["agent"].get<std::string>();
  }
  if (!status.contains("conditions") || !status["conditions"].is_array()) {
    return lines;
  }
  for (const auto& c : status["conditions"]) {
    if (!c.is_object() || !c.contains("type") || !c["type"].is_string()) {
      continue;
    }
    std::string type = c["type"].get<std::string>();
    State now{c.value("status", ""), c.value("reason", ""), c.value("message", "")};
    auto it = last_.find(type);
    if (it != last_.end() && it->second.status == now.status && it->second.reason == now.reason &&
        it->second.message == now.message) {
      continue;
    }
    if (it == last_.end()) {
      order_.push_back(type);
    }
    last_[type] = now;
    if (type == "Scheduled" && now.status == "True" && !agent_.empty()) {
      lines.push_back("Scheduled on " + agent_);
    } else if (type == "Ready" && now.status == "True") {
      continue;  // (the caller says so itself)
    } else {
      lines.push_back(describe(type, now.status, now.reason, now.message));
    }
  }
  return lines;
}

const ConditionTracker::State* ConditionTracker::find(const std::string& type) const {
  auto it = last_.find(type);
  return it == last_.end() ? nullptr : &it->second;
}

bool ConditionTracker::ready() const {
  const State* r = find("Ready");
  return r != nullptr && r->status == "True";
}

std::string ConditionTracker::hopeless() const {
  // (Placement's reasons: hub/agents/placement.cpp, PlacementController::decide. Unschedulable,
  // no agent or no room yet, can change by itself.)
  if (const State* s = find("Scheduled"); s != nullptr && s->status == "False") {
    if (s->reason == model::kReasonNoAgentForType || s->reason == model::kReasonInvalidSelector) {
      return describe("Scheduled", s->status, s->reason, s->message);
    }
  }
  if (const State* s = find("Synced"); s != nullptr && s->status == "False" && s->reason == "NotSupported") {
    return describe("Synced", s->status, s->reason, s->message);
  }
  // A missing or failed hook: its Synced=False (ReconcileError, "postcreatehook: ...", as upstream
  // words it) always comes with this condition (kube::foldHookReport).
  if (const State* s = find("PostCreateHooks"); s != nullptr && s->status == "False") {
    if (s->reason == "HookNotFound" || s->reason == "Failed") {
      return describe("PostCreateHooks", s->status, s->reason, s->message);
    }
  }
  return "";
}

std::string ConditionTracker::summary() const {
  if (order_.empty()) {
    return "no condition was reported";
  }
  std::string out;
  for (const auto& type : order_) {
    const State& s = last_.at(type);
    out += (out.empty() ? "" : "; ") + describe(type, s.status, s.reason, s.message);
  }
  return out;
}

}  // namespace kflex::cli
