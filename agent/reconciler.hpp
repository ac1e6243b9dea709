// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <nlohmann/json.hpp>

#include "agent/agent_state.hpp"

namespace kflex::agent {

/// What the agent reports for one desired control plane: {"controlPlane", "observedGeneration",
/// "conditions": [{type, status, reason, message}]}. Deterministic (no timestamps), so that an
/// unchanged state is not reported again. Until the control-plane runtimes land, every type is
/// reported honestly as not supported by this agent: Ready=False, never Ready=True.
nlohmann::json observedStatus(const nlohmann::json& control_plane);

/// Compares every desired control plane's observed status with what was last reported and puts
/// the changes in the outbox. Returns the number of reports queued.
Result<size_t> reconcile(AgentState& state);

}  // namespace kflex::agent
