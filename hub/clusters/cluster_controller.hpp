// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "hub/api/api_service.hpp"
#include "hub/api/control_plane_secrets.hpp"
#include "hub/store/object_store.hpp"
#include "shared/config/kubeconfig.hpp"
#include "shared/kube/client.hpp"
#include "shared/kube/hook_runner.hpp"

namespace kflex::hub {

/// How the hub looks after the control planes it serves itself.
struct ClusterOptions {
  std::chrono::milliseconds tick{1000};           ///< How often control planes are looked at.
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
 * Thread safety: start/stop from any thread; work runs on its own strand.
 */
class ClusterController {
 public:
  ClusterController(net::io_context& ioc, ApiService& api, ObjectStore& store, const model::Registry& registry,
                    ControlPlaneSecrets& secrets, const Clock& clock, ClusterOptions options);
  void start();
  void stop();

 private:
  struct State {
    std::string uid;
    bool busy = false;
    std::chrono::steady_clock::time_point next{};
    std::string creds_digest;  // of the kubeconfig the client was made from
    std::unique_ptr<kube::Client> client;
    std::unique_ptr<kube::HookRunner> hooks;  // when it uses any
  };
  /// Feeds a control plane's hook runner (made on first use); its report, or null without hooks.
  /// `serving_kubeconfig`: its admin kubeconfig when it serves, else "".
  Json updateHooks(const std::string& name, const Json& cp, State& st,
                   const std::map<std::string, std::string>& creds, const std::string& serving_kubeconfig);
  net::awaitable<void> loop();
  net::awaitable<void> reconcile(std::string name, Json cp);
  /// Makes the credentials of a control plane; the kubeconfig data to store, or why not.
  net::awaitable<Result<std::map<std::string, std::string>>> adopt(const std::string& name, const Json& cp);
  net::awaitable<Result<std::map<std::string, std::string>>> setUpHost(const std::string& name, const Json& cp);
  /// Removes what a host control plane made in the hosting cluster.
  net::awaitable<Result<void>> tearDownHost(const std::string& name);
  net::awaitable<void> report(const std::string& name, const std::string& uid, std::function<bool(Json&)> change);

  net::io_context& ioc_;
  net::strand<net::io_context::executor_type> strand_;
  ApiService& api_;
  ObjectStore& store_;
  const model::ResourceType& cps_;
  const model::ResourceType& hooks_;
  ControlPlaneSecrets& secrets_;
  const Clock& clock_;
  ClusterOptions options_;
  std::map<std::string, std::shared_ptr<State>> states_;  // strand_ only
  // Per control plane: the revision last looked at and whether it may be one served here.
  std::unordered_map<std::string, std::pair<int64_t, bool>> candidates_;  // strand_ only
  std::atomic<bool> stopping_{false};
  std::shared_ptr<net::steady_timer> timer_;
};

}  // namespace kflex::hub
