// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "hub/api/api_service.hpp"
#include "hub/store/object_store.hpp"
#include "shared/common/time.hpp"

namespace kflex::hub {

/// What a control plane of each type reserves on its agent, for placement by free capacity.
struct Reservation {
  int64_t cpu_millis = 0;
  int64_t memory_bytes = 0;
};
/// k8s: 1 CPU and 1 GiB; k3s and vcluster: 500m and 512 MiB.
Reservation reservationFor(const std::string& type);
/// Parses a Kubernetes quantity ("2", "500m", "16Gi", "1024Ki", "1e3"); nullopt when malformed.
std::optional<int64_t> parseQuantity(const std::string& q, bool millis);
/// Formats bytes as a quantity in Ki (as kubelet reports memory).
std::string bytesQuantity(int64_t bytes);

/**
 * The placement controller: puts each ControlPlane of type k8s, k3s or vcluster on one Ready
 * agent, once: the one named by the kflex.kubestellar.org/agent annotation, else the best fit among
 * those matching kflex.kubestellar.org/agent-selector (most free memory, then fewest control
 * planes, then name). The choice goes to status.agent with a Scheduled condition; when nothing
 * fits, Scheduled=False says why and the control plane is placed as soon as something fits.
 * Keeps each Agent's status.controlPlanes and status.allocated. Watch-driven, with a resync.
 */
class PlacementController {
 public:
  PlacementController(net::io_context& ioc, ApiService& api, ObjectStore& store, const model::Registry& registry,
                      const Clock& clock);
  void start();
  void stop();

 private:
  net::awaitable<void> run();
  net::awaitable<void> reconcile();

  ApiService& api_;
  ObjectStore& store_;
  const model::ResourceType& cps_;
  const model::ResourceType& agents_;
  const Clock& clock_;
  net::strand<net::io_context::executor_type> strand_;
  std::atomic<bool> stopping_{false};
  uint64_t watch_id_ = 0;
};

}  // namespace kflex::hub
