// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <vector>
#include <optional>
#include <string>

#include "hub/api/api_service.hpp"
#include "hub/controller/controller.hpp"
#include "hub/store/object_store.hpp"
#include "shared/common/time.hpp"
#include "shared/model/control_plane_types.hpp"

namespace kflex::hub {

/// What a control plane of each type reserves on its agent, for placement by free capacity.
using Reservation = model::Resources;
/// The type table's reservation (k8s: 1 CPU and 1 GiB; k3s and vcluster: 500m and 512 MiB;
/// external: none, it runs elsewhere); 500m and 512 MiB for a type kflex does not know.
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
 *
 * Runs on a Controller (hub/controller): its keys are control plane names, reconciled by
 * kPlacementWrites workers (each decision made under the lock, then written), and "agents/NAME"
 * for an agent's bookkeeping. A control plane event enqueues the control plane when it waits
 * for a place; an agent change enqueues the pending control planes it can affect; a failed write
 * is retried with backoff; every minute everything pending is looked at again.
 *
 * A new control plane is decided as it is created (the API asks admit()), so the create's own
 * write carries status.agent and the Scheduled condition and the agent hears of it at once; what
 * cannot be decided then (the view is not built yet, the create came by server-side apply) is
 * decided by its reconcile. Admission and reconciles reserve capacity under one lock, so neither
 * can place beyond what an agent holds.
 */
class PlacementController : public CreateAdmission {
 public:
  /// `service` takes its create admission (any replica admits); `api` is the controllers' client
  /// its own writes go through (only while this replica leads).
  PlacementController(net::io_context& ioc, ApiService& service, ApiClient& api, ObjectStore& store,
                      const model::Registry& registry,
                      const Clock& clock);
  /// Starts the controller and makes it the API's create admission for ControlPlanes (call before
  /// the server serves).
  void start();
  void stop();

  uint64_t admit(Json& object, bool dry_run) override;
  void settled(const std::string& name, uint64_t ticket, bool stored) override;

 private:
  // What the control planes placed on an agent and the decisions in flight to it reserve.
  struct Usage {
    int64_t cpu = 0;     // millis
    int64_t memory = 0;  // bytes
    int64_t control_planes = 0;
  };
  // What placement needs of each object, kept from the watch, so that a reconcile parses nothing.
  struct AgentView {
    std::string name;
    bool ready = false;
    bool unschedulable = false;
    std::map<std::string, std::string> labels;
    int64_t cpu = 0;     // millis
    int64_t memory = 0;  // bytes
    std::optional<std::set<std::string>> types;  // control plane types it runs (none told: any)
    int64_t recorded_control_planes = -1;  // status.controlPlanes as stored
    Json recorded_allocated;               // status.allocated as stored
    Usage used;  // kept as views and decisions change (recount() computes it afresh)
  };
  struct ControlPlaneView {
    std::string type;
    std::string agent;  // "" until placed
    bool deleting = false;
    std::string agent_wanted;    // the kflex.kubestellar.org/agent annotation
    std::string agent_selector;  // the kflex.kubestellar.org/agent-selector annotation
  };
  // Where a control plane goes, or why nowhere.
  struct Choice {
    std::string agent;  // "" when nothing fits
    std::string why;    // why nothing fits
    std::string reason = model::kReasonUnschedulable;  // ... as the Scheduled condition's reason
    Reservation need;
  };
  // A decision not yet seen in the watch: the create or status write carrying it is on its way.
  struct InFlight {
    std::string agent;  // "" for a create admitted as Unschedulable
    Reservation need;
    uint64_t ticket = 0;
    uint64_t epoch = 0;  // agents_epoch_ when decided
    std::chrono::steady_clock::time_point at;
    bool admitted = false;  // decided by admit() (else by a reconcile)
  };
  static constexpr size_t kPlacementWrites = 32;  // reconciles (status writes) in flight at once

  /// Reconciles one key of the queue: a control plane's name (place it), or bookKey(agent).
  net::awaitable<Outcome> reconcile(std::string key);
  /// Decides where a pending control plane goes and records it in its status.
  net::awaitable<Outcome> place(std::string name);
  /// Writes an agent's status.controlPlanes and status.allocated when they are not current.
  net::awaitable<Outcome> book(std::string agent);
  /// The views afresh from the store (after each subscription); then as resync().
  Controller::Keys relist();
  /// From scratch: drops what in flight never arrived and counts again; every pending control
  /// plane and every agent's bookkeeping.
  Controller::Keys resync();
  Controller::Keys onAgentEvent(const Event& ev);
  Controller::Keys onControlPlaneEvent(const Event& ev);
  // The rest need mu_ held.
  /// Updates the views; enqueues what the change concerns. A control plane to place now is
  /// added to `keys`.
  void observeAgent(const ObjectRecord& rec, bool deleted);
  void observeControlPlane(const ObjectRecord& rec, bool deleted, Controller::Keys& keys);
  Choice decide(const std::string& type, const std::string& wanted, const std::string& selector_text);
  /// Counts (sign +1) or uncounts (-1) a reservation on an agent.
  void reserve(const std::string& agent, const Reservation& need, int sign);
  /// Drops an in-flight decision (and its reservation).
  void forget(std::map<std::string, InFlight>::iterator it);
  /// Every agent's usage afresh from the views and the decisions in flight.
  void recount();
  /// Enqueues, after a short settling delay, the pending control planes that agent `name` (with
  /// `labels` before and `labels_now` after a change) can take or make change their reason.
  void enqueuePendingFor(const std::string& name, const std::map<std::string, std::string>& labels,
                         const std::map<std::string, std::string>& labels_now);
  /// Enqueues (soon) an agent's bookkeeping when the view's usage differs from what it records.
  void enqueueBookIfStale(const AgentView& agent);

  ApiService& service_;
  ApiClient& api_;
  ObjectStore& store_;
  const model::ResourceType& cps_;
  const model::ResourceType& agents_;
  const Clock& clock_;
  std::atomic<bool> stopping_{false};
  Controller controller_;
  // Guards what follows: the controller (its strand) and admit() (request threads) share it.
  std::mutex mu_;
  bool ready_ = false;  // the views are built: admit() may decide
  std::map<std::string, AgentView> agents_view_;
  std::map<std::string, ControlPlaneView> cps_view_;
  std::map<std::string, InFlight> in_flight_;  // by control plane
  std::map<std::string, Usage> unviewed_;       // usage of agents not in the view (gone, or not yet seen)
  uint64_t next_ticket_ = 1;
  uint64_t agents_epoch_ = 0;    // bumped by every agent change that can alter a placement
  std::set<std::string> pending_;  // control planes in the view not placed and not deleting
};

}  // namespace kflex::hub
