// SPDX-License-Identifier: Apache-2.0
// What `kflex create` and `kflex adopt` see while they wait: each condition change, whether the
// control plane can still become ready without the user changing something, and the last word of
// every condition when the time is up.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kflex::cli {

/// Follows the status.conditions of one ControlPlane through successive versions of the object.
class ConditionTracker {
 public:
  /// Reads a version of the object; returns one line per condition that appeared or changed
  /// (status, reason or message) since the last call, in the order the object lists them:
  /// "Scheduled on edge-1", "Synced=False (ReconcileError): ...".
  std::vector<std::string> update(const nlohmann::json& control_plane);
  /// True when the Ready condition is True.
  bool ready() const;
  /// Why the control plane cannot become ready (or cannot be what was asked for) until the user
  /// changes something, or "" while it still can:
  /// - Scheduled=False/NoAgentForType (no agent that matches can run the type) or
  ///   Scheduled=False/InvalidSelector;
  /// - Synced=False/NotSupported (its agent cannot run the type);
  /// - a PostCreateHook that does not exist or failed (PostCreateHooks=False, reason HookNotFound or
  ///   Failed).
  /// It reads reasons only, never a condition's message.
  /// A missing agent, a busy one or a cluster that cannot be reached yet are not hopeless: an
  /// agent may enroll, capacity may free up, a cluster may come back.
  std::string hopeless() const;
  /// Each condition as "Type=Status (Reason): message", joined with "; "; a note when there are none.
  std::string summary() const;

 private:
  struct State {
    std::string status;
    std::string reason;
    std::string message;
  };
  const State* find(const std::string& type) const;
  std::vector<std::string> order_;
  std::map<std::string, State> last_;
  std::string agent_;
};

}  // namespace kflex::cli
