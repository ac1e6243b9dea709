// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "shared/protocol/messages.hpp"

namespace kflex::model {

/// What becomes of status.postCreateHooks when a report says the control plane uses no hooks.
enum class UnusedHooks {
  Forget,  ///< Removed, with the PostCreateHooks condition (an agent: it keeps its own record).
  Keep,    ///< Kept: it records what the hooks made, to remove on deletion (the hub ran them).
};

/**
 * Folds what a controller observed of a control plane into the ControlPlane's `status`: the
 * conditions (a transition time of `stamp` when one changes), the endpoint, the components, the
 * PostCreateHook states, and `secret_ref` (where its kubeconfig is; null = unchanged). The one
 * place that says how a StatusReport lands in a ControlPlane, for every controller that makes
 * one (the agents' reports, the hub's cluster controller). observedGeneration and the hook
 * labels are the caller's. Returns whether anything changed.
 */
bool applyStatusReport(nlohmann::json& status, const protocol::StatusReport& report,
                       const nlohmann::json& secret_ref, const std::string& stamp,
                       UnusedHooks unused);

}  // namespace kflex::model
