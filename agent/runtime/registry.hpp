// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "agent/runtime/runtime.hpp"
#include "agent/state/control_plane_state.hpp"

namespace kflex::agent::runtime {

/// Whether this agent runs control planes of `type` (the one table of types says so).
bool runsType(const std::string& type);

/// A runtime for control plane `state.name()` of `type`, or null for a type this agent does not
/// run. It keeps what it picks (ports, ...) in `state`.
std::unique_ptr<Runtime> makeRuntime(const std::string& type, RuntimeEnv& env, ControlPlaneState state);

/// The type of a control plane known only by its folder DIR/cp/NAME (deleted while the agent was
/// away), by what each type leaves there.
std::string typeOfFolder(const std::filesystem::path& dir);

}  // namespace kflex::agent::runtime
