// SPDX-License-Identifier: Apache-2.0
#include "hub/agents/release_controller.hpp"

#include "hub/api/router.hpp"

#include "shared/common/log.hpp"
#include "shared/model/conditions.hpp"
#include "shared/model/control_plane_types.hpp"
#include "shared/model/resource.hpp"

namespace kflex::hub {
namespace {

// Keys of deleted control planes (their secrets to clean up); others are control plane names.
constexpr std::string_view kDeletedPrefix = "deleted/";


// Whether a stored control plane is being deleted and waits for kflex's finalizer.
bool waitsForRelease(const ObjectRecord& rec) {
  return rec.bytes.find("deletionTimestamp") != std::string::npos &&
         rec.bytes.find(model::kControlPlaneFinalizer) != std::string::npos;
}

std::string seconds(std::chrono::nanoseconds d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(d).count()) + "s";
}

}  // namespace

std::string placedOn(const ObjectRecord& rec) {
  if (rec.bytes.find("\"agent\"") == std::string::npos) {
    return "";  // (a cheap test first: unplaced ones say nothing of an agent)
  }
  Json obj = Json::parse(rec.bytes, nullptr, false);
  auto st = obj.is_object() ? obj.find("status") : obj.end();
  return st != obj.end() && st->is_object() ? st->value("agent", "") : std::string();
}

net::awaitable<void> releaseControlPlane(ApiClient& api, const model::ResourceType& cps, std::string name,
                                         std::string why) {
  bool released = co_await api.removeFinalizer(cps, name, model::kControlPlaneFinalizer);
  if (released) {
    log::info("control plane released", {{"controlPlane", name}, {"why", why}});
  } else {
    log::warn("cannot release a deleting control plane", {{"controlPlane", name}});
  }
}

ReleaseController::ReleaseController(net::io_context& ioc, ApiClient& api, ObjectStore& store,
                                     const model::Registry& registry, const Clock& clock,
                                     std::chrono::seconds lost_release)
    : api_(api), store_(store), cps_(*registry.find(model::kTenancyGroup, model::kTenancyVersion, "controlplanes")),
      agents_(*registry.find(model::kTenancyGroup, model::kTenancyVersion, "agents")), clock_(clock),
      lost_release_(lost_release),
      controller_(net::make_strand(ioc), store, ControllerOptions{"release", 8, {}},
                  [this](std::string key) { return reconcile(std::move(key)); }) {
  controller_.watch(resourceKey(cps_), [this](const EventPtr& ev) { return onControlPlane(ev); });
  controller_.watch(resourceKey(agents_), [this](const EventPtr& ev) { return onAgent(ev); });
  controller_.relist([this](int64_t) { return relist(); });
  controller_.onlyWhileLeading(api_.leadership());
}

void ReleaseController::place(const std::string& cp, const std::string& agent) {
  auto it = agent_of_.find(cp);
  if (it != agent_of_.end() && it->second == agent) {
    return;
  }
  if (it != agent_of_.end()) {
    if (auto b = by_agent_.find(it->second); b != by_agent_.end()) {
      b->second.erase(cp);
      if (b->second.empty()) {
        by_agent_.erase(b);
      }
    }
  }
  if (agent.empty()) {
    if (it != agent_of_.end()) {
      agent_of_.erase(it);
    }
    return;
  }
  agent_of_[cp] = agent;
  by_agent_[agent].insert(cp);
}

Controller::Keys ReleaseController::relist() {
  agent_of_.clear();
  by_agent_.clear();
  Controller::Keys keys;
  for (const auto& rec : store_.list(resourceKey(cps_)).first) {
    place(rec->name, placedOn(*rec));
    keys.push_back(rec->name);  // deletions waiting since before the start, orphans of agents deleted meanwhile
  }
  return keys;
}

Controller::Keys ReleaseController::onControlPlane(const EventPtr& ev) {
  const std::string& name = ev->object->name;
  if (ev->type == EventType::Deleted) {
    place(name, "");
    deleted_[name] = ev->object;
    return {std::string(kDeletedPrefix) + name};
  }
  std::string agent = placedOn(*ev->object);
  place(name, agent);
  // (An orphan is marked when its agent goes, and at start; not again on each write of it.)
  return waitsForRelease(*ev->object) ? Controller::Keys{name} : Controller::Keys{};
}

Controller::Keys ReleaseController::onAgent(const EventPtr& ev) {
  // Deleted, or its lease changed: its control planes may have to be released (or orphaned).
  // (Most Agent writes are heartbeats: only those whose agent has a deleting control plane, or
  // that went away, are looked at.)
  auto it = by_agent_.find(ev->object->name);
  if (it == by_agent_.end()) {
    return {};
  }
  Controller::Keys keys;
  for (const auto& cp : it->second) {
    ObjectPtr rec = store_.get(resourceKey(cps_), cp);
    if (ev->type == EventType::Deleted || (rec && waitsForRelease(*rec))) {
      keys.push_back(cp);
    }
  }
  return keys;
}

std::chrono::nanoseconds ReleaseController::lostFor(const Json& agent) const {
  const Json status = agent.is_object() ? agent.value("status", Json::object()) : Json::object();
  for (const auto& c : status.value("conditions", Json::array())) {
    if (c.is_object() && c.value("type", "") == "Ready" && c.value("status", "") == "False" &&
        c.value("reason", "") == "LeaseExpired") {
      if (auto t = parseTime(c.value("lastTransitionTime", ""))) {
        return clock_.now() - *t;
      }
    }
  }
  return std::chrono::nanoseconds(0);
}

net::awaitable<Outcome> ReleaseController::reconcile(std::string key) {
  Outcome out;
  if (key.starts_with(kDeletedPrefix)) {
    auto it = deleted_.find(key.substr(kDeletedPrefix.size()));
    if (it == deleted_.end()) {
      co_return Outcome::done();
    }
    ObjectPtr deleted = it->second;
    deleted_.erase(it);
    out = co_await cleanUpDeleted(std::move(deleted));
  } else {
    out = co_await reconcileControlPlane(std::move(key));
  }
  co_return out;
}

net::awaitable<Outcome> ReleaseController::reconcileControlPlane(std::string name) {
  ObjectPtr rec = store_.get(resourceKey(cps_), name);
  if (!rec) {
    co_return Outcome::done();
  }
  Json cp = Json::parse(rec->bytes, nullptr, false);
  if (!cp.is_object()) {
    co_return Outcome::done();
  }
  const std::string agent = placedOn(*rec);
  // (Host and external ones are the hub's own to release; an external one an agent adopted is
  // still orphaned with its agent.)
  const bool deleting = waitsForRelease(*rec) && model::runsOnAgent(cp.value("spec", Json::object()).value("type", ""));
  ObjectPtr agent_rec = agent.empty() ? nullptr : store_.get(resourceKey(agents_), agent);
  if (!agent.empty() && !agent_rec) {
    // Its agent was deleted: nothing reports it any more (and nothing will stop it).
    if (deleting) {
      log::warn("a deleting control plane's agent was deleted; its processes and data may remain on that host",
                {{"controlPlane", name}, {"agent", agent}});
      co_await releaseControlPlane(api_, cps_, name, "its agent " + agent + " was deleted");
      co_return Outcome::done();
    }
    const std::string stamp = formatTime(clock_.now());
    const std::string agents_key = resourceKey(agents_);
    Result<void> st = co_await api_.changeStatus(cps_, name, [&](Json& obj) {
      Json& status = obj["status"];
      if (!status.is_object() || status.value("agent", "") != agent || store_.get(agents_key, agent)) {
        return false;  // (enrolled again under the same name meanwhile: it reports for itself)
      }
      return model::setCondition(status, "Ready", "Unknown", "AgentDeleted",
                                 "agent " + agent + " was deleted; nothing reports this control plane's state (enroll "
                                 "an agent named " + agent + " again, or delete the control plane)",
                                 stamp, true);
    });
    if (!st && st.error().code != Errc::NotFound) {
      co_return Outcome::retry(st.error().message);
    }
    co_return Outcome::done();
  }
  if (!deleting) {
    co_return Outcome::done();
  }
  if (agent.empty()) {
    co_await releaseControlPlane(api_, cps_, name, "it was never placed on an agent");
    co_return Outcome::done();
  }
  auto lost = lostFor(Json::parse(agent_rec->bytes, nullptr, false));
  if (lost <= std::chrono::nanoseconds(0)) {
    co_return Outcome::done();  // its agent stops it and says so (or its lease runs out first)
  }
  if (lost <= lost_release_) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(lost_release_ - lost) + std::chrono::seconds(1);
    co_return Outcome::requeueAfter(left);
  }
  log::warn("a deleting control plane's agent has been unreachable too long; released without it (the agent "
            "removes what is left on its host when it returns)",
            {{"controlPlane", name}, {"agent", agent}, {"unreachable", seconds(lost)}});
  co_await releaseControlPlane(api_, cps_, name, "its agent " + agent + " has been unreachable for " + seconds(lost));
  co_return Outcome::done();
}

net::awaitable<Outcome> ReleaseController::cleanUpDeleted(ObjectPtr deleted) {
  if (secrets_ == nullptr) {
    co_return Outcome::done();
  }
  co_await secrets_->remove(deleted->name);
  // (A failed adoption keeps its bootstrap secret for the next attempt: another cluster's admin
  // credentials, which must not outlive the control plane.)
  if (deleted->bytes.find("bootstrapSecretRef") == std::string::npos) {
    co_return Outcome::done();
  }
  Json cp = Json::parse(deleted->bytes, nullptr, false);
  const Json ref = cp.is_object() ? cp.value("spec", Json::object()).value("bootstrapSecretRef", Json::object()) : Json();
  const Json name_field = ref.is_object() ? ref.value("name", Json()) : Json();
  if (!name_field.is_string() || name_field.get<std::string>().empty() || !secrets_->bootstrap(name_field.get<std::string>())) {
    co_return Outcome::done();
  }
  const std::string name = name_field.get<std::string>();
  const std::string quoted = "\"" + name + "\"";
  for (const auto& rec : store_.list(resourceKey(cps_)).first) {
    if (rec->bytes.find(quoted) == std::string::npos) {
      continue;
    }
    Json other = Json::parse(rec->bytes, nullptr, false);
    if (other.is_object() &&
        other.value("spec", Json::object()).value("bootstrapSecretRef", Json::object()).value("name", Json()) == name) {
      co_return Outcome::done();  // another control plane still names it
    }
  }
  co_await secrets_->removeBootstrap(name);
  log::info("a deleted control plane's bootstrap secret was deleted with it", {{"controlPlane", deleted->name}, {"secret", name}});
  co_return Outcome::done();
}

}  // namespace kflex::hub
