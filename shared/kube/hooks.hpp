// SPDX-License-Identifier: Apache-2.0
// Which PostCreateHooks a ControlPlane uses and with which variables, as upstream KubeFlex decides.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kflex::kube {

/// One use of a hook by a control plane.
struct HookUse {
  std::string hook;                          ///< PostCreateHook name.
  std::map<std::string, std::string> vars;   ///< Its per-use vars.
};

/// The hooks of a ControlPlane in upstream's order: the deprecated spec.postCreateHook (with
/// spec.postCreateHookVars) first, then spec.postCreateHooks as listed; a hook named twice is used
/// once (its first use).
std::vector<HookUse> hookUses(const nlohmann::json& control_plane);

/// The variables a hook's templates see, lowest precedence first: the hook's spec.defaultVars, the
/// control plane's spec.globalVars, the use's vars, then the system ones that always win:
/// Namespace (`<cp>-system`), ControlPlaneName and HookName.
std::map<std::string, std::string> hookVars(const nlohmann::json& control_plane, const nlohmann::json& hook,
                                            const HookUse& use);

}  // namespace kflex::kube
