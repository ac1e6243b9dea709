// SPDX-License-Identifier: Apache-2.0
#include "hub/agents/lease_controller.hpp"

#include <algorithm>

#include "hub/agents/release_controller.hpp"
#include "hub/api/router.hpp"
#include "shared/common/log.hpp"
#include "shared/model/conditions.hpp"
#include "shared/model/resource.hpp"

namespace kflex::hub {
namespace {

// The agents' reconnect backoff cap (agent's hub link): after a hub start, nobody's lease runs
// out before every agent has had the chance to come back (at most one more lease duration).
constexpr std::chrono::seconds kBackoffCap{60};

std::string seconds(std::chrono::seconds s) { return std::to_string(s.count()) + "s"; }

}  // namespace

LeaseController::LeaseController(net::io_context& ioc, ApiClient& api, ApiClient& leader, ObjectStore& store,
                                 const model::Registry& registry, const Clock& clock,
                                 LeaseOptions options)
    : api_(api),
      leader_(leader),
      store_(store),
      agents_(*registry.find(model::kTenancyGroup, model::kTenancyVersion, "agents")),
      cps_(*registry.find(model::kTenancyGroup, model::kTenancyVersion, "controlplanes")),
      clock_(clock),
      options_(options),
      leading_since_(clock.now()),
      controller_(net::make_strand(ioc), store, ControllerOptions{"leases", 4, {}},
                  [this](std::string key) { return reconcile(std::move(key)); }) {
  controller_.watch(resourceKey(agents_), [this](const EventPtr& ev) { return onAgent(ev); });
  controller_.relist([this](int64_t) { return relist(); });
  // The hub's clock decides, so the leases are looked at often (a fraction of a lease).
  auto tick = std::clamp<std::chrono::milliseconds>(
      std::chrono::milliseconds(options_.duration) / 5, std::chrono::milliseconds(100),
      std::chrono::seconds(1));
  controller_.resync(tick, [this] { return expiredAgents(); });
  controller_.onlyWhileLeading(leader_.leadership());
  if (const Leadership* lead = leader_.leadership()) {
    // A new leader gives every agent the grace a restarted hub gives: its renewals went to other
    // replicas, which store them only every heartbeat_persist.
    lead_observer_ = lead->observe([this](int64_t term) {
      if (term != 0) {
        std::lock_guard lock(mutex_);
        leading_since_ = clock_.now();
      }
    });
  }
}

LeaseController::~LeaseController() {
  if (lead_observer_ != 0) {
    leader_.leadership()->unobserve(lead_observer_);
  }
}

void LeaseController::renewed(const std::string& agent, TimePoint at) {
  std::lock_guard lock(mutex_);
  renewed_[agent] = at;
}

net::awaitable<bool> LeaseController::renew(const std::string& agent, int64_t acknowledged,
                                            TimePoint& persisted_at) {
  auto now = clock_.now();
  renewed(agent, now);
  if (persisted_at != TimePoint{} && now - persisted_at < options_.heartbeat_persist) {
    // Nothing to store yet: a lease that ran out would be older than the persist interval.
    co_return false;
  }
  std::string stamp = formatTime(now);
  auto persist = options_.heartbeat_persist;
  bool was_not_ready = false;
  TimePoint recorded{};  // the heartbeat time stored after this
  co_await api_.changeStatus(agents_, agent, [&](Json& obj) {
    Json& status = obj["status"];
    auto last = parseTime(status.value("lastHeartbeatTime", ""));
    bool stale = !last || now - *last >= persist;
    bool not_ready = model::conditionStatus(obj, "Ready") != "True";
    was_not_ready = not_ready;
    if (!stale && !not_ready) {
      recorded = *last;
      return false;
    }
    recorded = now;
    status["lastHeartbeatTime"] = stamp;
    status["acknowledgedRevision"] = acknowledged;
    model::setCondition(status, "Ready", "True", "AgentReady", "the agent's lease is current",
                        stamp);
    return true;
  });
  persisted_at = recorded;
  co_return was_not_ready;
}

void LeaseController::observe(const std::string& name, const std::string& bytes) {
  Json agent = Json::parse(bytes, nullptr, false);
  if (!agent.is_object()) {
    return;
  }
  Lease lease;
  lease.ready = model::conditionStatus(agent, "Ready") == "True";
  if (auto t = parseTime(agent.value("status", Json::object()).value("lastHeartbeatTime", ""))) {
    lease.last_heartbeat = *t;
  }
  leases_[name] = lease;
}

Controller::Keys LeaseController::onAgent(const EventPtr& ev) {
  const std::string& name = ev->object->name;
  if (ev->type == EventType::Deleted) {
    leases_.erase(name);
    std::lock_guard lock(mutex_);
    renewed_.erase(name);
    return {};
  }
  observe(name, ev->object->bytes);
  return {name};
}

Controller::Keys LeaseController::relist() {
  leases_.clear();
  Controller::Keys keys;
  for (const auto& rec : store_.list(resourceKey(agents_)).first) {
    observe(rec->name, rec->bytes);
    keys.push_back(rec->name);
  }
  return keys;
}

TimePoint LeaseController::lastRenewal(const std::string& agent, const Lease& lease) {
  TimePoint last = std::max(leading_since_ + std::min(kBackoffCap, options_.duration), lease.last_heartbeat);
  if (auto r = renewed_.find(agent); r != renewed_.end() && r->second > last) {
    last = r->second;
  }
  return last;
}

Controller::Keys LeaseController::expiredAgents() {
  // (A scan, not a reconcile per agent: at 10,000 agents this runs every second.)
  auto now = clock_.now();
  Controller::Keys keys;
  std::lock_guard lock(mutex_);
  for (const auto& [name, lease] : leases_) {
    if (lease.ready && now - lastRenewal(name, lease) > options_.duration) {
      keys.push_back(name);
    }
  }
  return keys;
}

net::awaitable<Outcome> LeaseController::reconcile(std::string agent) {
  auto it = leases_.find(agent);
  if (it == leases_.end() || !it->second.ready) {
    co_return Outcome::done();
  }
  auto now = clock_.now();
  TimePoint last;
  {
    std::lock_guard lock(mutex_);
    last = lastRenewal(agent, it->second);
  }
  if (now - last <= options_.duration) {
    co_return Outcome::done();  // renewed meanwhile
  }
  auto silent = std::chrono::duration_cast<std::chrono::seconds>(now - last);
  std::string stamp = formatTime(now);
  std::string msg = "the agent has not renewed its lease for " + seconds(silent) +
                    " (lease duration " + seconds(options_.duration) + ")";
  log::warn("agent lease expired", {{"agent", agent}, {"silent", seconds(silent)}});
  Result<void> marked = co_await leader_.changeStatus(agents_, agent, [&](Json& o) {
    if (model::conditionStatus(o, "Ready") != "True") {
      return false;
    }
    model::setCondition(o["status"], "Ready", "False", "LeaseExpired", msg, stamp);
    return true;
  });
  if (!marked && marked.error().code != Errc::NotFound) {
    co_return Outcome::retry(marked.error().message);
  }
  if (auto again = leases_.find(agent); again != leases_.end()) {
    again->second.ready = false;  // (the watch confirms it)
  }
  co_await markControlPlanesUnknown(agent, stamp);
  co_return Outcome::done();
}

net::awaitable<void> LeaseController::markControlPlanesUnknown(const std::string& agent,
                                                               const std::string& stamp) {
  const std::string quoted = "\"" + agent + "\"";
  for (const auto& rec : store_.list(resourceKey(cps_)).first) {
    // (A cheap test first: most control planes are not this agent's, and parsing them all for
    // every agent whose lease ran out would be quadratic.)
    if (rec->bytes.find(quoted) == std::string::npos || placedOn(*rec) != agent) {
      continue;
    }
    co_await leader_.changeStatus(cps_, rec->name, [&](Json& obj) {
      return model::setCondition(
          obj["status"], "Ready", "Unknown", "AgentUnreachable",
          "agent " + agent + " has not renewed its lease; the control plane's state is unknown",
          stamp, true);
    });
  }
}

}  // namespace kflex::hub
