// SPDX-License-Identifier: Apache-2.0
// Which PostCreateHooks a ControlPlane uses and with which variables, as upstream KubeFlex decides.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "shared/common/result.hpp"

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

/// Annotation of a PostCreateHook saying where its templates go: `hosted` (the control plane
/// itself, with its admin credentials) or `hosting` (the default: the hosting cluster).
inline constexpr const char* kHookTargetAnnotation = "kflex.kubestellar.org/target";
/// Annotation of a PostCreateHook: how long it may take to complete (`90s`, `10m`); default 10m.
inline constexpr const char* kHookTimeoutAnnotation = "kflex.kubestellar.org/timeout";
/// Annotation of a ControlPlane asking hooks to run again: a JSON object hook name -> token
/// (`kflex hook rerun` sets the token to the time); a new token runs that hook again.
inline constexpr const char* kHookRerunAnnotation = "kflex.kubestellar.org/rerun-hooks";
/// The field of a desired ControlPlane delivered to an agent that carries the PostCreateHooks it
/// uses (name -> {metadata, spec}); the hub adds it, it is never stored.
inline constexpr const char* kDeliveredHooksField = "kflexHooks";
/// The field manager hook objects are applied with.
inline constexpr const char* kHookFieldManager = "kflex";

/// The rerun token a ControlPlane's kHookRerunAnnotation holds for `hook` ("" when none).
std::string hookRerunToken(const nlohmann::json& control_plane, const std::string& hook);

/// Whether a hook targets the hosted control plane (annotation kHookTargetAnnotation: hosted).
bool hookTargetsHosted(const nlohmann::json& hook);

/**
 * The objects one use of a hook creates, rendered with hookVars() and in the order they are
 * applied: namespaces, then CRDs, then accounts, secrets and config, roles, bindings, services,
 * the rest, and workloads (Jobs, Deployments, ...) last; templates keep their order within a
 * rank. spec.jobs entries are Jobs (batch/v1). Each template is rendered from its indented JSON,
 * so an error names the template (`HOOK.templates[I]`), the line and the column; a template that
 * does not render to an object with apiVersion, kind and metadata.name fails the whole hook.
 */
Result<std::vector<nlohmann::json>> renderHook(const nlohmann::json& control_plane, const nlohmann::json& hook,
                                               const HookUse& use);

/// Whether an object a hook created is done, as upstream KubeFlex checks it (Deployments and
/// StatefulSets all replicas ready, Jobs succeeded, DaemonSets ready, CRDs Established, Pods
/// running or succeeded, anything else exists). A failed Job sets `failure` (reason: message).
bool hookObjectDone(const nlohmann::json& object, std::string& failure);

}  // namespace kflex::kube
