// SPDX-License-Identifier: Apache-2.0
// Runs a control plane's PostCreateHooks: renders them, applies their objects to where each hook
// goes, waits for them to complete, and says how they are.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "shared/common/result.hpp"
#include "shared/config/kubeconfig.hpp"
#include "shared/net/asio.hpp"
#include "shared/protocol/messages.hpp"

namespace kflex::kube {

/// Where a control plane's hooks go, and the kubeconfig secret their Jobs mount.
struct HookTargets {
  std::optional<config::ClusterAccess> hosting;  ///< The hosting cluster; none when not configured.
  std::string no_hosting;                        ///< Without one: why, and which setting gives one.
  std::string hosted_kubeconfig;                 ///< The control plane's admin kubeconfig once it serves ("" before).
  /// The control plane's kubeconfig secret as KubeFlex names it (admin-kubeconfig, k3s-config,
  /// vc-vcluster) and its keys; put into `<cp>-system` of the target so that Jobs reach the
  /// control plane through it, as upstream's hooks expect. Empty: none.
  std::string secret_name;
  std::map<std::string, std::string> secret_data;
  bool hosting_has_secret = false;  ///< The hosting cluster holds that secret already (vcluster).
  bool operator==(const HookTargets&) const = default;
};

/**
 * The PostCreateHooks of one control plane, as upstream KubeFlex runs them: each hook the
 * ControlPlane uses (hookUses()) is rendered (renderHook()) and its objects applied with
 * server-side apply (field manager `kflex`) to the hosting cluster, or to the control plane itself
 * when the hook is annotated `kflex.kubestellar.org/target: hosted`. Namespaced objects go into
 * `<cp>-system`, which is made first. Unreachable targets and kinds not served yet are retried
 * until the hook's deadline (annotation kflex.kubestellar.org/timeout, default 10 minutes); a
 * refusal fails the hook at once. A hook is complete when every object is done (hookObjectDone());
 * a failed Job fails it with the Job's reason.
 *
 * A completed hook never runs again, even when the PostCreateHook changes (report() says so),
 * unless the ControlPlane's rerun annotation carries a new token for it; a failed one runs again
 * when its PostCreateHook changes or on rerun. Hooks that do not exist yet wait, and run when
 * they appear. What completed or failed is kept through `persist` (records: hook name ->
 * {state, generation, uid, rerun, message, labels}), so a restart repeats nothing.
 *
 * Work happens in a coroutine on the executor; the runner may be destroyed at any time.
 * Thread safety: the executor's thread.
 */
class HookRunner {
 public:
  HookRunner(net::any_io_executor ex, std::string control_plane, nlohmann::json records,
             std::function<void(const nlohmann::json&)> persist, std::function<void()> on_change);
  ~HookRunner();
  /// The ControlPlane (its hooks and vars), the PostCreateHooks it uses that exist (name ->
  /// object) and where they go; work starts or continues as needed.
  void update(const nlohmann::json& control_plane, const nlohmann::json& hooks, const HookTargets& targets);
  /// {postCreateHooks: name -> done, postCreateHookCompleted, condition (type PostCreateHooks),
  /// failed (a message, "" when none failed), labels (of the completed hooks, to copy onto the
  /// ControlPlane)}.
  nlohmann::json report() const;

  struct State;

 private:
  std::shared_ptr<State> s_;
};

/**
 * Removes what a control plane's hooks left in a cluster when the control plane is deleted, as
 * upstream's garbage collection does: namespace `<cp>-system` and the cluster-scoped objects kflex
 * applied for it (ClusterRoles, ClusterRoleBindings, CRDs), found by the label kflex puts on
 * everything a hook applies (kflex.kubestellar.org/control-plane=<cp>).
 */
net::awaitable<Result<void>> removeHookObjects(config::ClusterAccess access, std::string control_plane);

/**
 * Folds a hook report into a control plane's observed status ({conditions: [Synced, Ready], ...}):
 * adds the PostCreateHooks condition and the fields postCreateHooks / postCreateHookCompleted /
 * hookLabels; a failed or missing hook makes Synced False (ReconcileError), and with
 * spec.waitForPostCreateHooks a Ready control plane stays Ready=False (WaitingForPostCreateHooks)
 * until every hook completed, as upstream says it.
 */
void foldHookReport(protocol::StatusReport& observed, const nlohmann::json& report, const nlohmann::json& control_plane);

}  // namespace kflex::kube
