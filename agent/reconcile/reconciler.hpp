// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <nlohmann/json.hpp>

#include "agent/state/agent_state.hpp"
#include "shared/protocol/messages.hpp"

namespace kflex::agent {
namespace runtime {
class ControlPlanes;
}

/// What the agent reports for one desired control plane (seq still 0), cut to the protocol's
/// bounds. Deterministic (no timestamps), so that an unchanged state is not reported again. A
/// type this agent does not run is reported honestly: Ready=False, never Ready=True.
protocol::StatusReport observedStatus(const nlohmann::json& control_plane,
                                      const runtime::ControlPlanes* runtimes = nullptr);

/// Compares every desired control plane's observed status with what was last reported and puts
/// the changes in the outbox. Returns the number of reports queued.
Result<size_t> reconcile(AgentState& state, const runtime::ControlPlanes* runtimes = nullptr);

}  // namespace kflex::agent
