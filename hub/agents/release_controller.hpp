// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <map>
#include <set>
#include <string>

#include "hub/api/api_client.hpp"
#include "hub/api/control_plane_secrets.hpp"
#include "hub/controller/controller.hpp"
#include "hub/store/object_store.hpp"
#include "shared/common/time.hpp"

namespace kflex::hub {

/// The agent a stored control plane is placed on (status.agent), "" when none.
std::string placedOn(const ObjectRecord& rec);

/// Removes kflex's finalizer from a deleting ControlPlane (nothing runs it any more, or its agent
/// removed it): the deletion completes. Logged with `why`.
net::awaitable<void> releaseControlPlane(ApiClient& api, const model::ResourceType& cps, std::string name,
                                         std::string why);

/**
 * The release controller: what happens to control planes that their agent no longer looks after.
 * Keyed by control plane; on the controller kit (watch → queue → reconcile).
 * - A deleting control plane (kflex's finalizer still on it) is released when nothing will run
 *   it: it was never placed, its agent was deleted, or its agent has been unreachable (lease
 *   expired) for longer than `lost_release` (looked at again when that time comes).
 * - A control plane whose agent was deleted: Ready=Unknown, reason AgentDeleted.
 * - A deleted control plane: its kubeconfig secret goes, and the bootstrap secret it named unless
 *   another control plane names it too.
 * The agent's own report that it removed a control plane is the gateway's to act on (it releases
 * with releaseControlPlane()).
 * Thread safety: start/stop from any thread; the rest runs on the controller's strand.
 */
class ReleaseController {
 public:
  ReleaseController(net::io_context& ioc, ApiClient& api, ObjectStore& store, const model::Registry& registry,
                    const Clock& clock, std::chrono::seconds lost_release);
  /// Where kubeconfig and bootstrap secrets are kept (before start()); without it none are removed.
  void setSecrets(ControlPlaneSecrets* secrets) { secrets_ = secrets; }
  void start() { controller_.start(); }
  void stop() { controller_.stop(); }

 private:
  Controller::Keys onControlPlane(const EventPtr& ev);
  Controller::Keys onAgent(const EventPtr& ev);
  Controller::Keys relist();
  net::awaitable<Outcome> reconcile(std::string key);
  /// A control plane that exists: orphaned, released, or looked at again later.
  net::awaitable<Outcome> reconcileControlPlane(std::string name);
  /// A deleted control plane's secrets.
  net::awaitable<Outcome> cleanUpDeleted(ObjectPtr deleted);
  /// How long `agent` has been unreachable (its Ready=False/LeaseExpired), 0 when it is not.
  std::chrono::nanoseconds lostFor(const Json& agent) const;
  /// Records which agent a control plane is on ("" for none); keeps by_agent_ in step.
  void place(const std::string& cp, const std::string& agent);

  ApiClient& api_;
  ObjectStore& store_;
  const model::ResourceType& cps_;
  const model::ResourceType& agents_;
  const Clock& clock_;
  std::chrono::seconds lost_release_;
  ControlPlaneSecrets* secrets_ = nullptr;
  // Strand only: where each control plane is, the other way round, and deleted ones to clean up.
  std::map<std::string, std::string> agent_of_;
  std::map<std::string, std::set<std::string>> by_agent_;
  std::map<std::string, ObjectPtr> deleted_;
  Controller controller_;
};

}  // namespace kflex::hub
