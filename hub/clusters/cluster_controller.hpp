// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "hub/api/api_client.hpp"
#include "hub/api/control_plane_secrets.hpp"
#include "hub/controller/controller.hpp"
#include "hub/store/object_store.hpp"
#include "shared/config/kubeconfig.hpp"
#include "shared/kube/client.hpp"
#include "shared/kube/hook_runner.hpp"

namespace kflex::hub {

/// How the hub looks after the control planes it serves itself.
struct ClusterOptions {
  std::chrono::milliseconds tick{1000};           ///< How often one being deleted is looked at.
  std::chrono::seconds probe_period{5};           ///< How often a Ready one's /readyz is asked.
  std::chrono::seconds retry{5};                  ///< Pause after a failed step.
  std::chrono::seconds call_timeout{10};          ///< Per request to a cluster.
  /// The cluster the hub runs on (type host), from --hosting-kubeconfig; none when absent.
  std::optional<config::ClusterAccess> hosting;
};


/**
 * The control planes no agent runs, as upstream KubeFlex's host and external reconcilers do:
 * - external: uses the bootstrap kubeconfig (`kflex adopt`) once to make a ServiceAccount, its
 *   cluster-admin binding and a token of spec.tokenExpirationSeconds in the adopted cluster,
 *   stores a kubeconfig holding only that token, and deletes the bootstrap secret;
 * - host: the hub's hosting cluster; a ServiceAccount `<cp>` in `<cp>-system` bound to
 *   cluster-admin and its token (removed again when the control plane is deleted).
 * Both are then probed: Ready means /readyz answered 200 with the stored credentials at the
 * last probe. Their PostCreateHooks run here too (kube::HookRunner): to the hosting cluster, or
 * with the control plane's own credentials when a hook targets it; what completed is read back
 * from status.postCreateHooks after a hub restart, so nothing runs twice.
 * Runs on a Controller (hub/controller) keyed by control plane name: an event of one served here
 * (other than a status change), or of a PostCreateHook, enqueues it; its reconcile asks to be
 * requeued after probe_period (Ready), retry (not Ready, or a step failed) or tick (deleting).
 * Thread safety: start/stop from any thread; work runs on its own strand.
 */
class ClusterController {
 public:
  ClusterController(net::io_context& ioc, ApiClient& api, ObjectStore& store, const model::Registry& registry,
                    ControlPlaneSecrets& secrets, const Clock& clock, ClusterOptions options);
  void start();
  void stop();

 private:
  struct State {
    std::string uid;
    std::string creds_digest;  // of the kubeconfig the client was made from
    std::unique_ptr<kube::Client> client;
    std::unique_ptr<kube::HookRunner> hooks;  // when it uses any
  };
  /// Feeds a control plane's hook runner (made on first use); its report, or null without hooks.
  /// `serving_kubeconfig`: its admin kubeconfig when it serves, else "".
  Json updateHooks(const std::string& name, const Json& cp, State& st,
                   const std::map<std::string, std::string>& creds, const std::string& serving_kubeconfig);
  /// Reconciles one control plane by name (whether served here or gone).
  net::awaitable<Outcome> reconcile(std::string name);
  net::awaitable<Outcome> reconcileServed(std::string name, Json cp);
  /// A control plane's store version -> its key when it concerns this controller.
  Controller::Keys onControlPlaneEvent(const Event& ev);
  Controller::Keys onHookEvent(const Event& ev);
  /// Every control plane served here, and every one with state (gone meanwhile, or no longer
  /// served here).
  Controller::Keys relist();
  /// Makes the credentials of a control plane; the kubeconfig data to store, or why not.
  net::awaitable<Result<std::map<std::string, std::string>>> adopt(const std::string& name, const Json& cp);
  net::awaitable<Result<std::map<std::string, std::string>>> setUpHost(const std::string& name, const Json& cp);
  /// Removes what a host control plane made in the hosting cluster.
  net::awaitable<Result<void>> tearDownHost(const std::string& name);
  net::awaitable<void> report(const std::string& name, const std::string& uid, std::function<bool(Json&)> change);

  ApiClient& api_;
  ObjectStore& store_;
  const model::ResourceType& cps_;
  const model::ResourceType& hooks_;
  ControlPlaneSecrets& secrets_;
  const Clock& clock_;
  ClusterOptions options_;
  std::map<std::string, std::shared_ptr<State>> states_;  // the strand only
  // Per control plane served here: a digest of all but its status, so that the status this
  // controller writes does not bring it back at once (the strand only).
  std::unordered_map<std::string, size_t> seen_;
  Controller controller_;
};

}  // namespace kflex::hub
