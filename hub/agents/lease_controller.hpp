// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <unordered_map>

#include "hub/api/api_client.hpp"
#include "hub/controller/controller.hpp"
#include "hub/store/object_store.hpp"
#include "shared/common/time.hpp"

namespace kflex::hub {

/// How agents' leases are kept.
struct LeaseOptions {
  std::chrono::seconds duration{50};  ///< No renewal for this long: Ready=False, LeaseExpired.
  std::chrono::seconds heartbeat_persist{
      40};  ///< status.lastHeartbeatTime is written at most this often.
};

/**
 * The lease controller: an agent renews its lease over its link (renew()); one that has not for
 * `duration` is marked Ready=False (reason LeaseExpired), and its control planes Ready=Unknown
 * (AgentUnreachable). On the controller kit, keyed by agent: the Agents' watch keeps what it
 * knows of each lease, and a resync every fraction of a lease enqueues the Ready agents whose
 * lease has run out on the hub's clock. A hub that just started gives every agent a full lease, plus the longest
 * reconnect backoff, from its start: the whole fleet is coming back at once.
 * Thread safety: renew() and renewed() may be called from any thread; the rest runs on the
 * controller's strand.
 */
class LeaseController {
 public:
  /// `api` stores renewals (on the replica holding the link); expiries are the leader's, written
  /// through `leader` (the controllers' client: only while this replica leads, fenced).
  LeaseController(net::io_context& ioc, ApiClient& api, ApiClient& leader, ObjectStore& store,
                  const model::Registry& registry, const Clock& clock, LeaseOptions options);
  ~LeaseController();
  void start() { controller_.start(); }
  void stop() { controller_.stop(); }
  /// `agent` renewed its lease at `at` (a hello stores its heartbeat itself).
  void renewed(const std::string& agent, TimePoint at);
  /// `agent` renewed its lease: recorded, and its heartbeat stored (with the revision it
  /// acknowledged) when `persisted_at`, the one this link last stored or saw, is older than
  /// heartbeat_persist or the agent is not Ready. Returns true when it was not Ready: back from
  /// an expiry, its control planes were marked Unknown.
  net::awaitable<bool> renew(const std::string& agent, int64_t acknowledged,
                             TimePoint& persisted_at);

 private:
  struct Lease {
    bool ready = false;
    TimePoint last_heartbeat{};
  };
  /// Records what an Agent object says of its lease.
  void observe(const std::string& name, const std::string& bytes);
  Controller::Keys onAgent(const EventPtr& ev);
  Controller::Keys relist();
  /// The Ready agents whose lease has run out on the hub's clock.
  Controller::Keys expiredAgents();
  /// When `agent` last renewed, as far as this hub knows (mutex_ held).
  TimePoint lastRenewal(const std::string& agent, const Lease& lease);
  net::awaitable<Outcome> reconcile(std::string agent);
  /// Ready=Unknown on every control plane placed on `agent`.
  net::awaitable<void> markControlPlanesUnknown(const std::string& agent, const std::string& stamp);

  ApiClient& api_;
  ApiClient& leader_;
  ObjectStore& store_;
  const model::ResourceType& agents_;
  const model::ResourceType& cps_;
  const Clock& clock_;
  const LeaseOptions options_;
  TimePoint leading_since_;                             // mutex_: since when this replica leads
  uint64_t lead_observer_ = 0;
  std::mutex mutex_;                                    // guards renewed_, leading_since_
  std::unordered_map<std::string, TimePoint> renewed_;  // the last renewal this hub saw, per agent
  std::unordered_map<std::string, Lease> leases_;  // strand: every Agent's lease, from the watch
  Controller controller_;
};

}  // namespace kflex::hub
