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
  if (type == "external") {
    return {0, 0};  // probed from the agent, run elsewhere
  }
  if (type == "k8s") {
    return {1000, int64_t(1) << 30};
  }
  return {500, int64_t(512) << 20};
}

std::optional<int64_t> parseQuantity(const std::string& q, bool millis) { return model::parseQuantity(q, millis); }

std::string bytesQuantity(int64_t bytes) { return std::to_string(bytes / 1024) + "Ki"; }

PlacementController::PlacementController(net::io_context& ioc, ApiService& api, ObjectStore& store,
                                         const model::Registry& registry, const Clock& clock)
    : api_(api), store_(store), cps_(kind(registry, "controlplanes")), agents_(kind(registry, "agents")),
      clock_(clock), strand_(net::make_strand(ioc)) {}

void PlacementController::start() {
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
  agents_view_.clear();
  cps_view_.clear();
  for (const auto& rec : store_.list(resourceKey(agents_)).first) {
    observeAgent(*rec, false);
  }
  for (const auto& rec : store_.list(resourceKey(cps_)).first) {
    observeControlPlane(*rec, false);
  }
}

bool PlacementController::observeAgent(const ObjectRecord& rec, bool deleted) {
  if (deleted) {
    bool known = agents_view_.erase(rec.name) > 0;
    retry_all_ |= known;
    return known;
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
  bool relevant = it == agents_view_.end() || it->second.ready != v.ready ||
                  it->second.unschedulable != v.unschedulable || it->second.labels != v.labels ||
                  it->second.cpu != v.cpu || it->second.memory != v.memory || it->second.types != v.types;
  agents_view_[rec.name] = std::move(v);
  retry_all_ |= relevant;  // what fits where may have changed for every pending control plane
  return relevant;
}

bool PlacementController::observeControlPlane(const ObjectRecord& rec, bool deleted) {
  if (deleted) {
    return cps_view_.erase(rec.name) > 0;
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
  if (!model::runsOnAgent(v.type) && !(v.type == "external" && !v.agent_wanted.empty())) {
    return cps_view_.erase(rec.name) > 0;
  }
  v.agent_selector = text(4);
  auto it = cps_view_.find(rec.name);
  // Only what placement decides on counts: its own status writes (and agents' reports) do not.
  bool relevant = it == cps_view_.end() || it->second.agent != v.agent || it->second.deleting != v.deleting ||
                  it->second.type != v.type || it->second.agent_wanted != v.agent_wanted ||
                  it->second.agent_selector != v.agent_selector;
  if (relevant && v.agent.empty() && !v.deleting) {
    retry_.insert(rec.name);
  }
  cps_view_[rec.name] = std::move(v);
  return relevant;
}

net::awaitable<void> PlacementController::recordDecisions(std::shared_ptr<PlacementPass> pass) {
  while (pass->next < pass->decisions.size()) {
    const PlacementPass::Decision& d = pass->decisions[pass->next++];
    const std::string& chosen = d.agent;
    const std::string& why = d.why;
    const std::string& now = pass->now;
    unsigned st = 500;
    try {
      st = co_await api_.changeStatus(cps_, d.control_plane, [&](Json& obj) {
        // (observedGeneration and conditions are required by the upstream status schema.)
        Json& status = obj["status"];
        if (!status.is_object()) {
          status = Json::object();
        }
        if (!status.value("agent", "").empty()) {
          return false;  // placed meanwhile
        }
        if (!status.contains("observedGeneration")) {
          status["observedGeneration"] = 0;  // required by the schema; the agent reports what it observed
        }
        if (!chosen.empty()) {
          status["agent"] = chosen;
          model::setCondition(status, "Scheduled", "True", "Scheduled", "placed on agent " + chosen, now, true);
          return true;
        }
        return model::setCondition(status, "Scheduled", "False", "Unschedulable", why, now, true);
      });
    } catch (const std::exception& e) {
      log::warn("cannot record a placement decision", {{"control_plane", d.control_plane}, {"error", e.what()}});
    }
    if (st == 200) {
      if (!chosen.empty()) {
        log::info("control plane placed", {{"control_plane", d.control_plane}, {"agent", chosen}});
      }
    } else if (st != 404) {
      log::warn("cannot record a placement decision", {{"control_plane", d.control_plane}, {"status", std::to_string(st)}});
      retry_.insert(d.control_plane);
      if (auto it = agents_view_.find(chosen); !chosen.empty() && it != agents_view_.end()) {
        it->second.used_cpu -= d.need.cpu_millis;  // counted when decided
        it->second.used_memory -= d.need.memory_bytes;
        --it->second.control_planes;
      }
    }
  }
  if (--pass->workers == 0) {
    pass->done.cancel();
  }
}

net::awaitable<void> PlacementController::reconcile(bool everything) {
  std::string now = formatTime(clock_.now());
  for (auto& [n, a] : agents_view_) {
    a.used_cpu = 0;
    a.used_memory = 0;
    a.control_planes = 0;
  }
  everything |= retry_all_;
  std::vector<const std::pair<const std::string, ControlPlaneView>*> pending;
  for (const auto& entry : cps_view_) {
    const auto& [name, v] = entry;
    if (!v.agent.empty()) {
      if (auto it = agents_view_.find(v.agent); it != agents_view_.end()) {
        auto res = reservationFor(v.type);
        it->second.used_cpu += res.cpu_millis;
        it->second.used_memory += res.memory_bytes;
        ++it->second.control_planes;
      }
      continue;
    }
    if (v.deleting || (!everything && retry_.count(name) == 0)) {
      continue;
    }
    pending.push_back(&entry);  // the view holds all a decision needs: nothing is parsed
  }
  retry_.clear();
  retry_all_ = false;
  // Decide every one first, counting each choice against its agent at once, then record the
  // decisions with many writes in flight (one at a time, 10,000 new control planes would take
  // 10,000 commits).
  auto pass = std::make_shared<PlacementPass>(strand_);
  pass->now = now;
  for (const auto* entry : pending) {
    const std::string& name = entry->first;
    const std::string& type = entry->second.type;
    const std::string& wanted = entry->second.agent_wanted;
    const std::string& selector_text = entry->second.agent_selector;
    auto need = reservationFor(type);
    auto selector = model::LabelSelector::parse(selector_text);
    AgentView* best = nullptr;
    std::string why;
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
      if (a.memory - a.used_memory < need.memory_bytes || a.cpu - a.used_cpu < need.cpu_millis) {
        continue;
      }
      auto better = [&](const AgentView& x, const AgentView& y) {
        int64_t fx = x.memory - x.used_memory;
        int64_t fy = y.memory - y.used_memory;
        if (fx != fy) {
          return fx > fy;
        }
        if (x.control_planes != y.control_planes) {
          return x.control_planes < y.control_planes;
        }
        return x.name < y.name;
      };
      if (best == nullptr || better(a, *best)) {
        best = &a;
      }
    }
    if (best == nullptr) {
      std::string what = !wanted.empty() ? "agent \"" + wanted + "\"" : !selector_text.empty() ? "agents matching \"" + selector_text + "\"" : "agents";
      if (!selector) {
        why = "the agent selector is not valid: " + selector.error().message;
      } else if (matching == 0) {
        why = !wanted.empty()          ? "agent \"" + wanted + "\" is not enrolled"
              : !selector_text.empty() ? "no enrolled agent matches \"" + selector_text + "\""
                                       : "no agent is enrolled; enroll one with `kflex token create` and kflex-agent";
      } else if (able == 0) {
        why = "none of the " + what + " can run " + type + " control planes (vcluster needs cluster_kubeconfig, k8s "
              "postgres_dsn on the agent; see kubectl get agents -o yaml, status.controlPlaneTypes)";
      } else if (ready == 0) {
        why = "none of the " + what + " is Ready and schedulable";
      } else {
        why = "none of the Ready " + what + " has " + std::to_string(need.cpu_millis) + "m CPU and " +
              std::to_string(need.memory_bytes >> 20) + "Mi memory free for a " + type + " control plane";
      }
    }
    PlacementPass::Decision d{name, best != nullptr ? best->name : "", why, need};
    if (best != nullptr) {
      best->used_cpu += need.cpu_millis;
      best->used_memory += need.memory_bytes;
      ++best->control_planes;
    }
    pass->decisions.push_back(std::move(d));
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
  for (auto& [n, a] : agents_view_) {
    Json allocated = {{"cpu", std::to_string(a.used_cpu) + "m"}, {"memory", bytesQuantity(a.used_memory)}};
    if (a.recorded_control_planes == a.control_planes && a.recorded_allocated == allocated) {
      continue;
    }
    int64_t count = a.control_planes;
    std::string name = n;
    unsigned st = co_await api_.changeStatus(agents_, name, [&](Json& obj) {
      obj["status"]["controlPlanes"] = count;
      obj["status"]["allocated"] = allocated;
      return true;
    });
    if (st == 200) {
      a.recorded_control_planes = count;
      a.recorded_allocated = allocated;
    }
  }
}

}  // namespace kflex::hub
