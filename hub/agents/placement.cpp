// SPDX-License-Identifier: Apache-2.0
#include "hub/agents/placement.hpp"

#include <cmath>
#include <string_view>

#include "hub/api/router.hpp"
#include "shared/common/json_pluck.hpp"
#include "shared/common/log.hpp"
#include "shared/model/conditions.hpp"
#include "shared/model/selector.hpp"

namespace kflex::hub {
namespace {

std::map<std::string, std::string> labelsOf(const Json& obj) {
  std::map<std::string, std::string> out;
  const Json meta = obj.value("metadata", Json::object());
  const Json labels = meta.value("labels", Json::object());
  for (auto it = labels.begin(); labels.is_object() && it != labels.end(); ++it) {
    if (it.value().is_string()) {
      out[it.key()] = it.value().get<std::string>();
    }
  }
  return out;
}

// Placement's keys: a control plane's name, or this prefix and an agent's name for the agent's
// bookkeeping (object names have no '/').
constexpr std::string_view kBookPrefix = "agents/";

std::string bookKey(const std::string& agent) { return std::string(kBookPrefix) + agent; }

// A failed write is tried again after 100 ms, doubling up to 10 s (the period of the earlier
// passes' resync).
constexpr std::chrono::milliseconds kRetryBase{100};
constexpr std::chrono::milliseconds kRetryCap{10000};
// What an agent change concerns, and bookkeeping, wait this long: a burst is one look each.
constexpr std::chrono::milliseconds kSettle{200};
// Everything pending is looked at again this often, from scratch.
constexpr std::chrono::milliseconds kResync{60000};

}  // namespace

Reservation reservationFor(const std::string& type) {
  const model::ControlPlaneType* t = model::findControlPlaneType(type);
  return t != nullptr ? t->reservation : Reservation{500, int64_t(512) << 20};
}

std::optional<int64_t> parseQuantity(const std::string& q, bool millis) { return model::parseQuantity(q, millis); }

std::string bytesQuantity(int64_t bytes) { return std::to_string(bytes / 1024) + "Ki"; }

PlacementController::PlacementController(net::io_context& ioc, ApiService& service, ApiClient& api,
                                         ObjectStore& store, const model::Registry& registry, const Clock& clock)
    : service_(service),
      api_(api), store_(store), cps_(tenancyType(registry, "controlplanes")), agents_(tenancyType(registry, "agents")),
      clock_(clock),
      controller_(net::make_strand(ioc), store,
                  ControllerOptions{"placement", kPlacementWrites, {kRetryBase, kRetryCap}},
                  [this](std::string key) { return reconcile(std::move(key)); }) {
  controller_.watch(resourceKey(agents_), [this](const EventPtr& ev) { return onAgentEvent(*ev); });
  controller_.watch(resourceKey(cps_), [this](const EventPtr& ev) { return onControlPlaneEvent(*ev); });
  controller_.relist([this](int64_t) { return relist(); });
  controller_.resync(kResync, [this] { return resync(); });
  controller_.onlyWhileLeading(api_.leadership());
}

void PlacementController::start() {
  service_.setCreateAdmission(cps_, this);
  controller_.start();
}

void PlacementController::stop() {
  stopping_ = true;
  {
    std::lock_guard lock(mu_);
    ready_ = false;  // new control planes wait for the next start's reconciles
  }
  controller_.stop();
}

Controller::Keys PlacementController::relist() {
  {
    std::lock_guard lock(mu_);
    agents_view_.clear();
    cps_view_.clear();
    pending_.clear();
    Controller::Keys ignored;  // all pending ones are enqueued below
    for (const auto& rec : store_.list(resourceKey(agents_)).first) {
      observeAgent(*rec, false);
    }
    for (const auto& rec : store_.list(resourceKey(cps_)).first) {
      observeControlPlane(*rec, false, ignored);
    }
    ready_ = !stopping_;
  }
  return resync();
}

Controller::Keys PlacementController::resync() {
  std::lock_guard lock(mu_);
  // Now and then, from scratch: what in flight never arrived (lost with a failed write) goes.
  auto stale = std::chrono::steady_clock::now() - std::chrono::seconds(60);
  std::erase_if(in_flight_, [&](const auto& f) { return f.second.at < stale; });
  recount();
  Controller::Keys keys(pending_.begin(), pending_.end());
  for (const auto& [name, a] : agents_view_) {
    keys.push_back(bookKey(name));
  }
  return keys;
}

Controller::Keys PlacementController::onAgentEvent(const Event& ev) {
  std::lock_guard lock(mu_);
  observeAgent(*ev.object, ev.type == EventType::Deleted);
  return {};  // what it concerns is enqueued after a settling delay
}

Controller::Keys PlacementController::onControlPlaneEvent(const Event& ev) {
  Controller::Keys keys;
  std::lock_guard lock(mu_);
  observeControlPlane(*ev.object, ev.type == EventType::Deleted, keys);
  return keys;
}

void PlacementController::observeAgent(const ObjectRecord& rec, bool deleted) {
  if (deleted) {
    auto it = agents_view_.find(rec.name);
    if (it == agents_view_.end()) {
      return;
    }
    if (it->second.used.control_planes != 0) {
      unviewed_[rec.name] = it->second.used;  // control planes still name it
    }
    std::map<std::string, std::string> labels = std::move(it->second.labels);
    agents_view_.erase(it);
    ++agents_epoch_;
    enqueuePendingFor(rec.name, labels, labels);  // their reason changes
    return;
  }
  Json a = Json::parse(rec.bytes, nullptr, false);
  if (!a.is_object()) {
    return;
  }
  AgentView v;
  v.name = rec.name;
  v.ready = model::conditionStatus(a, "Ready") == "True";
  v.unschedulable = a.value("spec", Json::object()).value("unschedulable", false);
  v.labels = labelsOf(a);
  const Json status = a.value("status", Json::object());
  const Json cap = status.value("capacity", Json::object());
  v.cpu = parseQuantity(cap.value("cpu", ""), true).value_or(0);
  v.memory = parseQuantity(cap.value("memory", ""), false).value_or(0);
  if (auto t = status.find("controlPlaneTypes"); t != status.end() && t->is_array()) {
    v.types = std::set<std::string>();
    for (const auto& x : *t) {
      if (x.is_string()) {
        v.types->insert(x.get<std::string>());
      }
    }
  }
  v.recorded_control_planes = status.value("controlPlanes", int64_t(-1));
  v.recorded_allocated = status.value("allocated", Json());
  auto it = agents_view_.find(rec.name);
  bool known = it != agents_view_.end();
  bool relevant = !known || it->second.ready != v.ready || it->second.unschedulable != v.unschedulable ||
                  it->second.labels != v.labels || it->second.cpu != v.cpu || it->second.memory != v.memory ||
                  it->second.types != v.types;
  std::map<std::string, std::string> labels_before;
  if (known) {
    v.used = it->second.used;  // what is placed on it did not change
    labels_before = it->second.labels;
  } else if (auto u = unviewed_.find(rec.name); u != unviewed_.end()) {
    v.used = u->second;  // control planes name it already (an agent enrolled again)
    unviewed_.erase(u);
  }
  AgentView& now = agents_view_[rec.name] = std::move(v);
  if (relevant) {
    // What fits where may have changed for the pending control planes it can take.
    ++agents_epoch_;
    enqueuePendingFor(rec.name, known ? labels_before : now.labels, now.labels);
  }
  enqueueBookIfStale(now);
}

void PlacementController::observeControlPlane(const ObjectRecord& rec, bool deleted, Controller::Keys& keys) {
  auto old = cps_view_.find(rec.name);
  auto flight = in_flight_.find(rec.name);
  if (deleted) {
    if (flight != in_flight_.end()) {
      forget(flight);
    }
    if (old == cps_view_.end()) {
      return;
    }
    std::string freed = old->second.agent;
    reserve(old->second.agent, reservationFor(old->second.type), -1);
    cps_view_.erase(old);
    pending_.erase(rec.name);
    if (auto a = agents_view_.find(freed); a != agents_view_.end()) {
      enqueuePendingFor(freed, a->second.labels, a->second.labels);  // room freed on its agent
    }
    return;
  }
  // Every control plane event passes here: read the five fields without building the object.
  static const std::vector<std::vector<std::string>> kFields = {
      {"spec", "type"},
      {"status", "agent"},
      {"metadata", "deletionTimestamp"},
      {"metadata", "annotations", model::kAgentAnnotation},
      {"metadata", "annotations", model::kAgentSelectorAnnotation}};
  auto f = pluckJson(rec.bytes, kFields);
  if (!f) {
    return;
  }
  auto text = [&f](size_t i) { return (*f)[i].string.value_or(""); };
  ControlPlaneView v;
  v.type = text(0);
  v.agent = text(1);
  v.deleting = (*f)[2].present;
  v.agent_wanted = text(3);
  v.agent_selector = text(4);
  bool placeable = model::runsOnAgent(v.type) || (model::isAdopted(v.type) && !v.agent_wanted.empty());
  // Only what placement decides on counts: its own status writes (and agents' reports) do not.
  bool relevant = old == cps_view_.end() || old->second.agent != v.agent || old->second.deleting != v.deleting ||
                  old->second.type != v.type || old->second.agent_wanted != v.agent_wanted ||
                  old->second.agent_selector != v.agent_selector;
  if (!relevant) {
    return;
  }
  std::string freed;  // released from its agent (or moved): room freed there
  if (old != cps_view_.end()) {
    if (!old->second.agent.empty() && old->second.agent != v.agent) {
      freed = old->second.agent;
    }
    reserve(old->second.agent, reservationFor(old->second.type), -1);
  }
  if (!placeable) {
    if (flight != in_flight_.end()) {
      forget(flight);
    }
    if (old != cps_view_.end()) {
      cps_view_.erase(old);
      pending_.erase(rec.name);
    }
  } else {
    bool decided_unplaced = false;  // admitted as Unschedulable, with the agents as they are now
    if (flight != in_flight_.end()) {
      if (!v.agent.empty()) {
        if (flight->second.admitted && flight->second.agent == v.agent) {
          log::info("control plane placed", {{"control_plane", rec.name}, {"agent", v.agent}});
        }
        forget(flight);  // arrived: counted through the view from now on
      } else if (flight->second.agent.empty()) {
        decided_unplaced = old == cps_view_.end() && flight->second.epoch == agents_epoch_;
        forget(flight);
      }
    }
    reserve(v.agent, reservationFor(v.type), +1);
    if (v.agent.empty() && !v.deleting) {
      pending_.insert(rec.name);
      if (!decided_unplaced) {
        keys.push_back(rec.name);
      }
    } else {
      pending_.erase(rec.name);
    }
    cps_view_[rec.name] = std::move(v);
  }
  if (auto a = agents_view_.find(freed); !freed.empty() && a != agents_view_.end()) {
    enqueuePendingFor(freed, a->second.labels, a->second.labels);
  }
}

void PlacementController::enqueuePendingFor(const std::string& name, const std::map<std::string, std::string>& labels,
                                            const std::map<std::string, std::string>& labels_now) {
  for (const auto& cp : pending_) {
    const ControlPlaneView& v = cps_view_.at(cp);
    if (!v.agent_wanted.empty() && v.agent_wanted != name) {
      continue;  // named another agent
    }
    if (v.agent_wanted.empty() && !v.agent_selector.empty()) {
      // (An invalid selector matches every agent in decide().)
      auto selector = model::LabelSelector::parse(v.agent_selector);
      if (selector && !selector->matches(labels) && !selector->matches(labels_now)) {
        continue;
      }
    }
    // After a short delay: a burst of agent changes (a fleet coming back) is one look each.
    controller_.queue().addAfter(cp, kSettle);
  }
}

void PlacementController::enqueueBookIfStale(const AgentView& a) {
  Json allocated = {{"cpu", std::to_string(a.used.cpu) + "m"}, {"memory", bytesQuantity(a.used.memory)}};
  if (a.recorded_control_planes != a.used.control_planes || a.recorded_allocated != allocated) {
    // A burst of placements on one agent is one write per delay.
    controller_.queue().addAfter(bookKey(a.name), kSettle);
  }
}

void PlacementController::reserve(const std::string& agent, const Reservation& need, int sign) {
  if (agent.empty()) {
    return;
  }
  auto it = agents_view_.find(agent);
  Usage& u = it != agents_view_.end() ? it->second.used : unviewed_[agent];
  u.cpu += sign * need.cpu_millis;
  u.memory += sign * need.memory_bytes;
  u.control_planes += sign;
  if (it == agents_view_.end() && u.control_planes == 0) {
    unviewed_.erase(agent);
  }
  if (it != agents_view_.end()) {
    // Its bookkeeping follows (a burst of placements on one agent is one write per delay).
    controller_.queue().addAfter(bookKey(agent), kSettle);
  }
}

void PlacementController::forget(std::map<std::string, InFlight>::iterator it) {
  reserve(it->second.agent, it->second.need, -1);
  in_flight_.erase(it);
}

void PlacementController::recount() {
  for (auto& [n, a] : agents_view_) {
    a.used = Usage{};
  }
  unviewed_.clear();
  for (const auto& [n, v] : cps_view_) {
    reserve(v.agent, reservationFor(v.type), +1);
  }
  for (const auto& [n, f] : in_flight_) {
    reserve(f.agent, f.need, +1);
  }
}

PlacementController::Choice PlacementController::decide(const std::string& type, const std::string& wanted,
                                                        const std::string& selector_text) {
  Choice c;
  c.need = reservationFor(type);
  const Reservation& need = c.need;
  auto selector = model::LabelSelector::parse(selector_text);
  AgentView* best = nullptr;
  size_t matching = 0;
  size_t ready = 0;
  size_t able = 0;
  for (auto& [n, a] : agents_view_) {
    if (!wanted.empty() && n != wanted) {
      continue;
    }
    if (selector && !selector->matches(a.labels)) {
      continue;
    }
    ++matching;
    // Chosen by kflex, an agent must say it can run the type; named by the user, it is tried
    // (and says why not in the control plane's conditions).
    if (wanted.empty() && a.types && !a.types->count(type)) {
      continue;
    }
    ++able;
    if (!a.ready || a.unschedulable) {
      continue;
    }
    ++ready;
    if (a.memory - a.used.memory < need.memory_bytes || a.cpu - a.used.cpu < need.cpu_millis) {
      continue;
    }
    auto better = [&](const AgentView& x, const AgentView& y) {
      int64_t fx = x.memory - x.used.memory;
      int64_t fy = y.memory - y.used.memory;
      if (fx != fy) {
        return fx > fy;
      }
      if (x.used.control_planes != y.used.control_planes) {
        return x.used.control_planes < y.used.control_planes;
      }
      return x.name < y.name;
    };
    if (best == nullptr || better(a, *best)) {
      best = &a;
    }
  }
  if (best != nullptr) {
    c.agent = best->name;
    return c;
  }
  std::string what = !wanted.empty() ? "agent \"" + wanted + "\"" : !selector_text.empty() ? "agents matching \"" + selector_text + "\"" : "agents";
  if (!selector) {
    c.why = "the agent selector is not valid: " + selector.error().message;
    c.reason = model::kReasonInvalidSelector;
  } else if (matching == 0) {
    c.why = !wanted.empty()          ? "agent \"" + wanted + "\" is not enrolled"
            : !selector_text.empty() ? "no enrolled agent matches \"" + selector_text + "\""
                                     : "no agent is enrolled; enroll one with `kflex token create` and kflex-agent";
  } else if (able == 0) {
    c.why = "none of the " + what + " can run " + type + " control planes (vcluster needs cluster_kubeconfig, k8s "
            "postgres_dsn on the agent; see kubectl get agents -o yaml, status.controlPlaneTypes)";
    c.reason = model::kReasonNoAgentForType;
  } else if (ready == 0) {
    c.why = "none of the " + what + " is Ready and schedulable";
  } else {
    c.why = "none of the Ready " + what + " has " + std::to_string(need.cpu_millis) + "m CPU and " +
            std::to_string(need.memory_bytes >> 20) + "Mi memory free for a " + type + " control plane";
  }
  return c;
}

namespace {

// The reason of condition `type` in a status, "" when it is absent.
std::string reasonOf(const Json& status, const char* type) {
  for (const auto& c : status.value("conditions", Json::array())) {
    if (c.is_object() && c.value("type", "") == type) {
      return c.value("reason", "-");
    }
  }
  return "";
}

// Synced and Ready while placement decides (the agent's reports take over from there): absent,
// Pending or Unschedulable before, and only then, are they placement's to set.
bool placementConditions(Json& status, const std::string& value, const std::string& reason, const std::string& message,
                         const std::string& now) {
  bool changed = false;
  for (const char* type : {"Synced", "Ready"}) {
    std::string was = reasonOf(status, type);
    if (was.empty() || was == "Pending" || was == "Unschedulable") {
      changed |= model::setCondition(status, type, value, reason, message, now, true);
    }
  }
  return changed;
}

// Writes a decision into a control plane's status (`reason`: Scheduled's when nothing fits); false
// when it says so already.
// (observedGeneration and conditions are required by the upstream status schema.) Synced and
// Ready are there from the first write, so that `kubectl get cp` never shows them blank.
bool recordChoice(Json& status, const std::string& agent, const std::string& why, const std::string& reason,
                  const std::string& now) {
  if (!status.is_object()) {
    status = Json::object();
  }
  if (!status.contains("observedGeneration")) {
    status["observedGeneration"] = 0;  // required by the schema; the agent reports what it observed
  }
  if (!agent.empty()) {
    status["agent"] = agent;
    model::setCondition(status, "Scheduled", "True", "Scheduled", "placed on agent " + agent, now, true);
    placementConditions(status, "Unknown", "Pending", "placed on agent " + agent + "; waiting for its first report", now);
    return true;
  }
  bool changed = model::setCondition(status, "Scheduled", "False", reason, why, now, true);
  return placementConditions(status, "False", "Unschedulable", why, now) || changed;
}

// A new control plane's Synced and Ready, Unknown until something is known.
void initialConditions(Json& object, const std::string& now) {
  Json& status = object["status"];
  if (!status.is_object()) {
    status = Json::object();
  }
  if (!status.contains("observedGeneration")) {
    status["observedGeneration"] = 0;
  }
  placementConditions(status, "Unknown", "Pending", "not reconciled yet", now);
}

}  // namespace

uint64_t PlacementController::admit(Json& object, bool dry_run) {
  auto meta = object.find("metadata");
  auto spec = object.find("spec");
  if (meta == object.end() || !meta->is_object() || spec == object.end() || !spec->is_object()) {
    return 0;
  }
  std::string name = meta->value("name", "");
  std::string type = spec->value("type", "");
  std::string wanted;
  std::string selector;
  if (auto a = meta->find("annotations"); a != meta->end() && a->is_object()) {
    wanted = a->value(model::kAgentAnnotation, "");
    selector = a->value(model::kAgentSelectorAnnotation, "");
  }
  if (!model::runsOnAgent(type) && !(model::isAdopted(type) && !wanted.empty())) {
    initialConditions(object, formatTime(clock_.now()));  // the hub's own controller takes it from here
    return 0;
  }
  Choice c;
  uint64_t ticket = 0;
  {
    std::lock_guard lock(mu_);
    // Not before the views are built; and a name placement still knows is either taken (the
    // create fails) or being replaced: its reconcile decides then.
    if (!ready_ || cps_view_.count(name) > 0 || in_flight_.count(name) > 0) {
      initialConditions(object, formatTime(clock_.now()));  // its reconcile decides
      return 0;
    }
    c = decide(type, wanted, selector);
    if (!dry_run) {
      ticket = next_ticket_++;
      reserve(c.agent, c.need, +1);
      in_flight_[name] = InFlight{c.agent, c.need, ticket, agents_epoch_, std::chrono::steady_clock::now(), true};
    }
  }
  recordChoice(object["status"], c.agent, c.why, c.reason, formatTime(clock_.now()));
  return ticket;
}

void PlacementController::settled(const std::string& name, uint64_t ticket, bool stored) {
  if (stored) {
    return;  // its event comes through the watch
  }
  std::lock_guard lock(mu_);
  if (auto it = in_flight_.find(name); it != in_flight_.end() && it->second.ticket == ticket) {
    forget(it);
  }
}

net::awaitable<Outcome> PlacementController::reconcile(std::string key) {
  Outcome out;
  if (key.starts_with(kBookPrefix)) {
    out = co_await book(key.substr(kBookPrefix.size()));
  } else {
    out = co_await place(std::move(key));
  }
  co_return out;
}

net::awaitable<Outcome> PlacementController::place(std::string name) {
  Choice choice;
  uint64_t ticket = 0;
  bool pending = false;
  {
    std::lock_guard lock(mu_);
    auto v = cps_view_.find(name);
    // (Not placed, not deleting, and no decision on its way; a reconcile of a stopped
    // controller leaves it to the next start.)
    pending = ready_ && v != cps_view_.end() && v->second.agent.empty() && !v->second.deleting &&
              in_flight_.count(name) == 0;
    if (pending) {
      // Decided and counted against its agent at once; written with other reconciles' writes
      // in flight (one at a time, 10,000 new control planes would take 10,000 commits).
      choice = decide(v->second.type, v->second.agent_wanted, v->second.agent_selector);
      if (!choice.agent.empty()) {
        ticket = next_ticket_++;
        reserve(choice.agent, choice.need, +1);
        in_flight_[name] = InFlight{choice.agent, choice.need, ticket, agents_epoch_, std::chrono::steady_clock::now()};
      }
    }
  }
  if (!pending) {
    co_return Outcome::done();
  }
  const std::string& chosen = choice.agent;
  const std::string& why = choice.why;
  const std::string now = formatTime(clock_.now());
  Result<void> st = fail("the placement decision was not recorded");
  try {
    st = co_await api_.changeStatus(cps_, name, [&](Json& obj) {
      const Json& status = obj["status"];
      if (status.is_object() && !status.value("agent", "").empty()) {
        return false;  // placed meanwhile
      }
      return recordChoice(obj["status"], chosen, why, choice.reason, now);
    });
  } catch (const std::exception& e) {
    log::warn("cannot record a placement decision", {{"control_plane", name}, {"error", e.what()}});
  }
  if (st) {
    if (!chosen.empty()) {
      log::info("control plane placed", {{"control_plane", name}, {"agent", chosen}});
    }
    co_return Outcome::done();
  }
  bool gone = !st && st.error().code == Errc::NotFound;
  if (!gone) {
    log::warn("cannot record a placement decision", {{"control_plane", name}, {"error", st.error().message}});
  }
  {
    std::lock_guard lock(mu_);
    if (auto it = in_flight_.find(name); it != in_flight_.end() && it->second.ticket == ticket) {
      forget(it);  // counted when decided
    }
  }
  if (gone) {
    co_return Outcome::done();  // gone
  }
  co_return Outcome::retry(st.error().message);
}

net::awaitable<Outcome> PlacementController::book(std::string agent) {
  int64_t count = 0;
  Json allocated;
  bool stale = false;
  {
    std::lock_guard lock(mu_);
    if (auto it = agents_view_.find(agent); it != agents_view_.end()) {
      const AgentView& a = it->second;
      count = a.used.control_planes;
      allocated = {{"cpu", std::to_string(a.used.cpu) + "m"}, {"memory", bytesQuantity(a.used.memory)}};
      stale = a.recorded_control_planes != count || a.recorded_allocated != allocated;
    }
  }
  if (!stale) {
    co_return Outcome::done();
  }
  Result<void> st = co_await api_.changeStatus(agents_, agent, [&count, &allocated](Json& obj) {
    obj["status"]["controlPlanes"] = count;
    obj["status"]["allocated"] = allocated;
    return true;
  });
  if (st) {
    std::lock_guard lock(mu_);
    if (auto it = agents_view_.find(agent); it != agents_view_.end()) {
      it->second.recorded_control_planes = count;
      it->second.recorded_allocated = allocated;
    }
  }
  if (st || st.error().code == Errc::NotFound) {
    co_return Outcome::done();
  }
  co_return Outcome::retry(st.error().message);
}

}  // namespace kflex::hub
