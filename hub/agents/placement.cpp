// SPDX-License-Identifier: Apache-2.0
#include "hub/agents/placement.hpp"

#include <cmath>

#include "shared/common/json_pluck.hpp"
#include "shared/common/log.hpp"
#include "shared/model/conditions.hpp"
#include "shared/model/selector.hpp"

namespace kflex::hub {
namespace {

const model::ResourceType& kind(const model::Registry& r, const char* plural) {
  return *r.find(model::kTenancyGroup, model::kTenancyVersion, plural);
}

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


}  // namespace

Reservation reservationFor(const std::string& type) {
  const model::ControlPlaneType* t = model::findControlPlaneType(type);
  return t != nullptr ? t->reservation : Reservation{500, int64_t(512) << 20};
}

std::optional<int64_t> parseQuantity(const std::string& q, bool millis) { return model::parseQuantity(q, millis); }

std::string bytesQuantity(int64_t bytes) { return std::to_string(bytes / 1024) + "Ki"; }

PlacementController::PlacementController(net::io_context& ioc, ApiService& api, ObjectStore& store,
                                         const model::Registry& registry, const Clock& clock)
    : api_(api), store_(store), cps_(kind(registry, "controlplanes")), agents_(kind(registry, "agents")),
      clock_(clock), strand_(net::make_strand(ioc)) {}

void PlacementController::start() {
  api_.setCreateAdmission(cps_, this);
  net::co_spawn(strand_, run(), [](std::exception_ptr e) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        log::error("placement controller failed", {{"error", ex.what()}});
      }
    }
  });
}

void PlacementController::stop() {
  stopping_ = true;
  {
    std::lock_guard lock(mu_);
    ready_ = false;  // new control planes wait for the next start's passes
  }
  net::post(strand_, [this] {
    if (watch_id_ != 0) {
      store_.unwatch(watch_id_);
    }
  });
}

net::awaitable<void> PlacementController::run() {
  const std::string cp_key = resourceKey(cps_);
  const std::string agent_key = resourceKey(agents_);
  net::steady_timer timer(strand_);
  while (!stopping_) {
    auto sub = store_.watch(store_.revision(), strand_, size_t(1) << 17);  // rides out a fleet's burst
    if (!sub) {
      log::error("placement cannot watch the store", {{"error", sub.error().message}});
      co_return;
    }
    watch_id_ = sub->id;
    rebuild();
    co_await reconcile(true);
    // Reconcile when something that placement depends on changed (checked every 200 ms), and
    // every 10 s. Heartbeats and status reports change nothing here and cost one parse each.
    // A change looks again at the control planes it concerns (a new agent: every pending one);
    // every minute all pending ones are looked at again, whatever happened.
    auto next_resync = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    auto next_full = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    bool dirty = false;
    while (!stopping_) {
      timer.expires_after(std::chrono::milliseconds(200));
      co_await timer.async_wait(net::as_tuple(net::use_awaitable));
      bool closed = !sub->channel->is_open();
      {
        std::lock_guard lock(mu_);
        while (!closed && sub->channel->try_receive([&](boost::system::error_code ec, EventPtr ev) {
          if (ec || !ev) {
            closed = true;  // a closed channel keeps answering with an error: stop asking
          } else if (ev->object->resource == cp_key) {
            dirty |= observeControlPlane(*ev->object, ev->type == EventType::Deleted);
          } else if (ev->object->resource == agent_key) {
            dirty |= observeAgent(*ev->object, ev->type == EventType::Deleted);
          }
        })) {
        }
      }
      if (closed) {
        break;  // closed: subscribe again (after a full rebuild)
      }
      auto now = std::chrono::steady_clock::now();
      if (dirty || now >= next_resync) {
        dirty = false;
        next_resync = now + std::chrono::seconds(10);
        bool full = now >= next_full;
        if (full) {
          next_full = now + std::chrono::seconds(60);
        }
        co_await reconcile(full);
      }
    }
    store_.unwatch(sub->id);
    watch_id_ = 0;
  }
}

void PlacementController::rebuild() {
  std::lock_guard lock(mu_);
  agents_view_.clear();
  cps_view_.clear();
  for (const auto& rec : store_.list(resourceKey(agents_)).first) {
    observeAgent(*rec, false);
  }
  for (const auto& rec : store_.list(resourceKey(cps_)).first) {
    observeControlPlane(*rec, false);
  }
  recount();
  retry_all_ = true;
  ready_ = !stopping_;
}

bool PlacementController::observeAgent(const ObjectRecord& rec, bool deleted) {
  if (deleted) {
    auto it = agents_view_.find(rec.name);
    if (it == agents_view_.end()) {
      return false;
    }
    if (it->second.used.control_planes != 0) {
      unviewed_[rec.name] = it->second.used;  // control planes still name it
    }
    agents_view_.erase(it);
    retry_all_ = true;
    ++agents_epoch_;
    return true;
  }
  Json a = Json::parse(rec.bytes, nullptr, false);
  if (!a.is_object()) {
    return false;
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
  if (known) {
    v.used = it->second.used;  // what is placed on it did not change
  } else if (auto u = unviewed_.find(rec.name); u != unviewed_.end()) {
    v.used = u->second;  // control planes name it already (an agent enrolled again)
    unviewed_.erase(u);
  }
  agents_view_[rec.name] = std::move(v);
  if (relevant) {
    retry_all_ = true;  // what fits where may have changed for every pending control plane
    ++agents_epoch_;
  }
  return relevant;
}

bool PlacementController::observeControlPlane(const ObjectRecord& rec, bool deleted) {
  auto old = cps_view_.find(rec.name);
  auto flight = in_flight_.find(rec.name);
  if (deleted) {
    if (flight != in_flight_.end()) {
      forget(flight);
    }
    if (old == cps_view_.end()) {
      return false;
    }
    if (!old->second.agent.empty()) {
      retry_all_ = true;  // room freed on its agent: what waits for room is looked at again now
    }
    reserve(old->second.agent, reservationFor(old->second.type), -1);
    cps_view_.erase(old);
    return true;
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
    return false;
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
    return false;
  }
  if (old != cps_view_.end()) {
    if (!old->second.agent.empty() && old->second.agent != v.agent) {
      retry_all_ = true;  // released from its agent (or moved): room freed there
    }
    reserve(old->second.agent, reservationFor(old->second.type), -1);
  }
  if (!placeable) {
    if (flight != in_flight_.end()) {
      forget(flight);
    }
    return old != cps_view_.end() && (cps_view_.erase(old), true);
  }
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
  if (v.agent.empty() && !v.deleting && !decided_unplaced) {
    retry_.insert(rec.name);
  }
  cps_view_[rec.name] = std::move(v);
  return true;
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
    // create fails) or being replaced: its next pass decides then.
    if (!ready_ || cps_view_.count(name) > 0 || in_flight_.count(name) > 0) {
      initialConditions(object, formatTime(clock_.now()));  // the next pass decides
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

net::awaitable<void> PlacementController::recordDecisions(std::shared_ptr<PlacementPass> pass) {
  while (pass->next < pass->decisions.size()) {
    const PlacementPass::Decision& d = pass->decisions[pass->next++];
    const std::string& chosen = d.choice.agent;
    const std::string& why = d.choice.why;
    const std::string& now = pass->now;
    unsigned st = 500;
    try {
      st = co_await api_.changeStatus(cps_, d.control_plane, [&](Json& obj) {
        const Json& status = obj["status"];
        if (status.is_object() && !status.value("agent", "").empty()) {
          return false;  // placed meanwhile
        }
        return recordChoice(obj["status"], chosen, why, d.choice.reason, now);
      });
    } catch (const std::exception& e) {
      log::warn("cannot record a placement decision", {{"control_plane", d.control_plane}, {"error", e.what()}});
    }
    if (st == 200) {
      if (!chosen.empty()) {
        log::info("control plane placed", {{"control_plane", d.control_plane}, {"agent", chosen}});
      }
      continue;
    }
    if (st != 404) {
      log::warn("cannot record a placement decision", {{"control_plane", d.control_plane}, {"status", std::to_string(st)}});
    }
    std::lock_guard lock(mu_);
    if (st != 404) {
      retry_.insert(d.control_plane);
    }
    if (auto it = in_flight_.find(d.control_plane); it != in_flight_.end() && it->second.ticket == d.ticket) {
      forget(it);  // counted when decided
    }
  }
  if (--pass->workers == 0) {
    pass->done.cancel();
  }
}

net::awaitable<void> PlacementController::reconcile(bool everything) {
  auto pass = std::make_shared<PlacementPass>(strand_);
  pass->now = formatTime(clock_.now());
  {
    std::lock_guard lock(mu_);
    if (everything) {
      // Now and then, from scratch: what in flight never arrived (lost with a failed write) goes.
      auto stale = std::chrono::steady_clock::now() - std::chrono::seconds(60);
      std::erase_if(in_flight_, [&](const auto& f) { return f.second.at < stale; });
      recount();
    }
    everything |= retry_all_;
    std::vector<std::string> pending;
    if (everything) {
      for (const auto& [name, v] : cps_view_) {
        if (v.agent.empty() && !v.deleting) {
          pending.push_back(name);
        }
      }
    } else {
      pending.assign(retry_.begin(), retry_.end());
    }
    retry_.clear();
    retry_all_ = false;
    // Decide every one first, counting each choice against its agent at once, then record the
    // decisions with many writes in flight (one at a time, 10,000 new control planes would take
    // 10,000 commits).
    for (const auto& name : pending) {
      auto v = cps_view_.find(name);
      if (v == cps_view_.end() || !v->second.agent.empty() || v->second.deleting || in_flight_.count(name) > 0) {
        continue;  // gone, placed, or a decision is on its way
      }
      PlacementPass::Decision d{name, decide(v->second.type, v->second.agent_wanted, v->second.agent_selector), 0};
      if (!d.choice.agent.empty()) {
        d.ticket = next_ticket_++;
        reserve(d.choice.agent, d.choice.need, +1);
        in_flight_[name] = InFlight{d.choice.agent, d.choice.need, d.ticket, agents_epoch_, std::chrono::steady_clock::now()};
      }
      pass->decisions.push_back(std::move(d));
    }
  }
  if (!pass->decisions.empty()) {
    pass->workers = std::min<size_t>(pass->decisions.size(), kPlacementWrites);
    size_t workers = pass->workers;
    for (size_t i = 0; i < workers; ++i) {
      net::co_spawn(strand_, recordDecisions(pass), net::detached);
    }
    // A worker may have finished already (run inline, with nothing to wait for): wait only
    // while one is running, or the last one's cancel could come before the wait and be lost.
    if (pass->workers > 0) {
      co_await pass->done.async_wait(net::as_tuple(net::use_awaitable));
    }
  }
  // Keep each agent's bookkeeping current.
  struct Book {
    std::string agent;
    int64_t count;
    Json allocated;
  };
  std::vector<Book> books;
  {
    std::lock_guard lock(mu_);
    for (auto& [n, a] : agents_view_) {
      Json allocated = {{"cpu", std::to_string(a.used.cpu) + "m"}, {"memory", bytesQuantity(a.used.memory)}};
      if (a.recorded_control_planes != a.used.control_planes || a.recorded_allocated != allocated) {
        books.push_back({n, a.used.control_planes, std::move(allocated)});
      }
    }
  }
  for (const auto& b : books) {
    const Book& book = b;
    unsigned st = co_await api_.changeStatus(agents_, book.agent, [&book](Json& obj) {
      obj["status"]["controlPlanes"] = book.count;
      obj["status"]["allocated"] = book.allocated;
      return true;
    });
    if (st == 200) {
      std::lock_guard lock(mu_);
      if (auto it = agents_view_.find(book.agent); it != agents_view_.end()) {
        it->second.recorded_control_planes = book.count;
        it->second.recorded_allocated = book.allocated;
      }
    }
  }
}

}  // namespace kflex::hub
