// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "hub/agents/status_limiter.hpp"
#include "hub/api/api_client.hpp"
#include "hub/api/control_plane_secrets.hpp"
#include "hub/controller/controller.hpp"
#include "hub/store/object_store.hpp"
#include "shared/common/time.hpp"
#include "shared/protocol/messages.hpp"

namespace kflex::hub {

/**
 * The status controller: writes what agents report on their control planes into the
 * ControlPlanes' status, as `limits` allow (per control plane the latest report wins; per agent a
 * token bucket), on the controller kit, keyed by agent. A report is acknowledged (its `ack`
 * called) once it is stored, or once a newer one on the same control plane replaces it.
 * What it writes: the conditions, endpoint, components and hook states
 * (model::applyStatusReport), the kubeconfig (sealed into the store, referenced from
 * status.secretRef; an adopted cluster's bootstrap secret is deleted then), the hooks' labels,
 * and the release of a deleting control plane the agent has removed.
 * Thread safety: offer(), forget() and flush() may be called from any thread.
 */
class StatusWriter {
 public:
  StatusWriter(net::io_context& ioc, ApiClient& api, ObjectStore& store,
               const model::Registry& registry, const Clock& clock, StatusLimits limits);
  /// Where reported kubeconfigs go (before start()); without it they are ignored.
  void setSecrets(ControlPlaneSecrets* secrets) { secrets_ = secrets; }
  void start() { controller_.start(); }
  /// A checked report from `agent`, written when its turn comes.
  void offer(const std::string& agent, protocol::StatusReport&& report, std::function<void()> ack);
  /// `agent` was deleted: what waits from it goes unwritten.
  void forget(const std::string& agent);
  /// The hub stops: what waits is written at once, whatever the limits; then the controller stops.
  void flush();

 private:
  struct Pending {
    protocol::StatusReport report;
    std::function<void()> ack;
  };
  net::awaitable<Outcome> reconcile(std::string agent);
  /// Stores what `agent` reported on a control plane placed on it (nothing when it is not).
  net::awaitable<void> write(std::string agent, const protocol::StatusReport& report);
  /// Stores a reported kubeconfig; where status.secretRef points then (null when not stored).
  net::awaitable<Json> storeKubeconfig(const std::string& agent,
                                       const protocol::StatusReport& report);
  /// Stops the controller once flushing and nothing waits any more (mutex_ held).
  void stopWhenFlushed();

  ApiClient& api_;
  ObjectStore& store_;
  const model::ResourceType& cps_;
  const std::string agents_key_;
  const Clock& clock_;
  const StatusLimits limits_;
  ControlPlaneSecrets* secrets_ = nullptr;
  std::mutex mutex_;  // guards reports_ and flushing_
  // The reports waiting, per agent (an entry stays while its limiter has something to remember).
  std::unordered_map<std::string, std::unique_ptr<StatusLimiter<Pending>>> reports_;
  bool flushing_ = false;
  Controller controller_;
};

}  // namespace kflex::hub
