// SPDX-License-Identifier: Apache-2.0
#include "agent/reconcile/reconciler.hpp"

#include "agent/host/netns.hpp"
#include "agent/runtime/registry.hpp"
#include "shared/common/log.hpp"
#include "shared/common/util.hpp"
#include "shared/common/version.hpp"
#include "shared/kube/hooks.hpp"

namespace kflex::agent {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using runtime::Runtime;

protocol::StatusReport observedStatus(const Json& cp, std::optional<protocol::StatusReport> seen) {
  const Json meta = cp.value("metadata", Json::object());
  std::string type = cp.value("spec", Json::object()).value("type", "");
  if (!seen) {
    std::string msg = std::string("kflex-agent ") + kVersion + " cannot run control planes of type \"" + type +
                      "\" yet; it keeps the desired state and reports here once it can";
    seen.emplace();
    seen->conditions = {{"Synced", "False", "NotSupported", msg}, {"Ready", "False", "NotSupported", msg}};
  }
  seen->control_plane = meta.value("name", "");
  seen->observed_generation = meta.value("generation", int64_t(0));
  seen->clampToBounds();
  return std::move(*seen);
}

Reconciler::Reconciler(net::any_io_executor ex, const runtime::RuntimeConfig& config, AgentState& state,
                       const fs::path& data_dir, const Clock& clock)
    : state_(state),
      supervisor_(clock, config.supervisor),
      config_(config),
      env_{ex, supervisor_, clock, config_, data_dir / "cp", false},
      wake_(ex) {
  env_.isolate = config_.isolate && runtime::NetNamespace::available();
  cgroups_ = std::make_unique<runtime::Cgroups>(runtime::Cgroups::detect());
  env_.cgroups = cgroups_.get();
  if (!cgroups_->available()) {
    log::warn("control planes run without memory and CPU limits", {{"why", cgroups_->problem()}});
  }
  if (config_.isolate && !env_.isolate) {
    log::warn("control planes share the host's network: network namespaces cannot be made here (the agent needs "
              "root); only one k3s control plane fits on this host");
  }
  std::error_code ec;
  fs::create_directories(env_.cp_root, ec);
  state_.setOnChange([this](AgentState::Change change) { onStateChanged(change); });
}

Reconciler::~Reconciler() { state_.setOnChange(nullptr); }

std::unique_ptr<Runtime> Reconciler::make(const std::string& type, const std::string& name) {
  return runtime::makeRuntime(type, env_, state_.controlPlane(name));
}

void Reconciler::onStateChanged(AgentState::Change change) {
  if (change == AgentState::Change::Reported) {
    report();  // (at once: the link sends what is in the outbox next)
    return;
  }
  // Desired state: posted, so that the link finishes first (its acknowledgement goes out before
  // the reports), and once however often it is told before then.
  if (woken_ || stopping_) {
    return;
  }
  woken_ = true;
  net::post(env_.executor, [this] {
    woken_ = false;
    if (stopping_) {
      return;
    }
    sync();
    report();
  });
}

void Reconciler::report() {
  std::vector<std::pair<std::string, std::string>> changed;
  for (const auto& d : state_.desired()) {
    Json cp = Json::parse(d.body, nullptr, false);
    if (!cp.is_object()) {
      log::warn("ignoring an unreadable desired control plane", {{"name", d.name}});
      continue;
    }
    std::string body = observedStatus(cp, observe(d.name)).toJson().dump();
    if (body != d.reported) {
      changed.emplace_back(d.name, std::move(body));
    }
  }
  if (auto r = state_.outbox().enqueue(changed); !r) {
    log::warn("cannot reconcile", {{"error", r.error().message}});
  }
}

void Reconciler::updateHooks(const std::string& name) {
  auto d = desired_.find(name);
  auto rt = runtimes_.find(name);
  if (d == desired_.end() || rt == runtimes_.end() || deleting_.count(name) || kube::hookUses(d->second).empty()) {
    hooks_.erase(name);
    return;
  }
  auto& runner = hooks_[name];
  if (!runner) {
    std::string kept = state_.controlPlane(name).hookRecords();
    Json records = Json::parse(kept.empty() ? "{}" : kept, nullptr, false);
    runner = std::make_unique<kube::HookRunner>(
        env_.executor, name, records,
        [this, name](const Json& r) {
          if (auto saved = state_.controlPlane(name).setHookRecords(r.dump()); !saved) {
            log::error("cannot record PostCreateHook results", {{"controlPlane", name}, {"error", saved.error().message}});
          }
        },
        [this] { report(); });
  }
  kube::HookTargets targets;
  targets.hosting = config_.cluster;
  targets.no_hosting = "this agent has no cluster near it (set cluster_kubeconfig in agent.yaml or --cluster-kubeconfig)";
  const protocol::StatusReport observed = rt->second->observe();
  std::string admin;
  if (observed.kubeconfig) {
    targets.secret_name = observed.kubeconfig->secret_name;
    targets.secret_data = observed.kubeconfig->data;
    for (const auto& [key, value] : observed.kubeconfig->data) {
      if (admin.empty() || key == "config" || key == "kubeconfig") {
        admin = value;
      }
    }
  }
  targets.hosting_has_secret = types_[name] == "vcluster";  // (the vCluster's own secret, beside it)
  if (rt->second->ready()) {
    targets.hosted_kubeconfig = admin;
  }
  runner->update(d->second, d->second.value(kube::kDeliveredHooksField, Json::object()), targets);
}

void Reconciler::sync() {
  std::map<std::string, Json> desired;
  for (const auto& d : state_.desired()) {
    Json cp = Json::parse(d.body, nullptr, false);
    if (cp.is_object()) {
      desired[d.name] = std::move(cp);
    }
  }
  // Being deleted on the hub: stop and remove it, then say so (the hub's finalizer waits for that).
  std::set<std::string> deleting;
  for (const auto& [name, cp] : desired) {
    if (cp.value("metadata", Json::object()).contains("deletionTimestamp")) {
      deleting.insert(name);
    }
  }
  // Gone from the desired state, being deleted, or now of another type: remove.
  for (auto it = runtimes_.begin(); it != runtimes_.end();) {
    auto d = desired.find(it->first);
    std::string type = d == desired.end() || deleting.count(it->first)
                           ? ""
                           : d->second.value("spec", Json::object()).value("type", "");
    if (type != types_[it->first]) {
      log::info("removing a control plane", {{"controlPlane", it->first}});
      removing_[it->first] = std::move(it->second);
      types_.erase(it->first);
      it = runtimes_.erase(it);
    } else {
      ++it;
    }
  }
  // Left over from before an agent restart: folders nothing desires any more.
  if (!scanned_) {
    scanned_ = true;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(env_.cp_root, ec)) {
      std::string name = entry.path().filename().string();
      if (entry.is_directory() && !desired.count(name) && !removing_.count(name) && isDns1123Label(name)) {
        log::info("removing a control plane deleted while the agent was away", {{"controlPlane", name}});
        removing_[name] = make(runtime::typeOfFolder(entry.path()), name);
      }
    }
  }
  for (const auto& name : deleting) {
    if (removing_.count(name) || removed_.count(name)) {
      continue;
    }
    std::error_code ec;
    if (fs::exists(env_.cp_root / name, ec)) {
      removing_[name] = make(runtime::typeOfFolder(env_.cp_root / name), name);  // (left over from an agent that stopped meanwhile)
    } else {
      removed_.insert(name);  // nothing of it runs here
    }
  }
  std::erase_if(removed_, [&](const std::string& n) { return !deleting.count(n); });
  deleting_ = std::move(deleting);
  desired_ = desired;
  for (const auto& [name, cp] : desired_) {
    std::string type = cp.value("spec", Json::object()).value("type", "");
    if (!runtime::runsType(type) || removing_.count(name) || deleting_.count(name)) {
      continue;  // (a removal of the same name finishes first)
    }
    auto& rt = runtimes_[name];
    if (!rt) {
      rt = make(type, name);
      types_[name] = type;
      log::info("starting a control plane", {{"controlPlane", name}, {"type", type}});
    }
    rt->ensure(cp);
  }
  for (auto it = hooks_.begin(); it != hooks_.end();) {
    if (!runtimes_.count(it->first) || deleting_.count(it->first)) {
      it = hooks_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [name, rt] : runtimes_) {
    updateHooks(name);
  }
  wake_.cancel();
}

std::optional<protocol::StatusReport> Reconciler::observe(const std::string& name) const {
  if (deleting_.count(name)) {
    bool done = removed_.count(name) > 0;
    protocol::StatusReport out;
    out.conditions = {
        {"Synced", "True", "ReconcileSuccess", done ? "deleted on this host" : "being deleted on this host"},
        {"Ready", "False", "Deleting", done ? "stopped; its data is removed from this host" : "stopping it and removing its data"}};
    out.removed = done;
    return out;
  }
  auto it = runtimes_.find(name);
  if (it == runtimes_.end()) {
    return std::nullopt;
  }
  protocol::StatusReport observed = it->second->observe();
  auto hooks = hooks_.find(name);
  auto d = desired_.find(name);
  if (hooks != hooks_.end() && hooks->second && d != desired_.end()) {
    kube::foldHookReport(observed, hooks->second->report(), d->second);
  }
  return observed;
}

net::awaitable<void> Reconciler::run() {
  // The control planes start (or are adopted) from agent.db whether or not the hub answers.
  sync();
  auto next_full_probe = std::chrono::steady_clock::now();
  while (!stopping_) {
    supervisor_.tick();
    bool removed_one = false;
    for (auto it = removing_.begin(); it != removing_.end();) {
      if (it->second->remove()) {
        // What its hooks left in the cluster near this agent goes too; a control plane made
        // again runs its hooks again.
        auto kept = state_.controlPlane(it->first);
        std::string records = kept.hookRecords();
        if (config_.cluster && records != "{}" && !records.empty()) {
          net::co_spawn(env_.executor, kube::removeHookObjects(*config_.cluster, it->first),
                        [name = it->first](std::exception_ptr e, Result<void> r) {
                          if (e || !r) {
                            log::warn("cannot remove what a control plane's hooks made in the cluster",
                                      {{"controlPlane", name}, {"error", e ? "internal error" : r.error().message}});
                          }
                        });
        }
        (void)kept.setHookRecords("{}");
        if (deleting_.count(it->first)) {
          removed_.insert(it->first);
        }
        it = removing_.erase(it);
        removed_one = true;
      } else {
        ++it;
      }
    }
    if (removed_one) {
      sync();  // a control plane of the same name may be waiting for this removal
      report();
    }
    // Probe the ones not yet Ready every round (fast create-to-Ready), the rest every interval.
    bool full = std::chrono::steady_clock::now() >= next_full_probe;
    if (full) {
      next_full_probe = std::chrono::steady_clock::now() + config_.probe_interval;
    }
    bool changed = false;
    std::vector<std::string> names;
    for (const auto& [name, rt] : runtimes_) {
      names.push_back(name);
    }
    // All probes at once, each with its own deadline: a control plane that is slow to answer
    // does not hold back the others. (Runtimes stay alive meanwhile: only this loop deletes them.)
    size_t pending = 0;
    net::steady_timer all_done(wake_.get_executor());
    all_done.expires_at(net::steady_timer::time_point::max());
    for (const auto& name : names) {
      auto it = runtimes_.find(name);
      if (it == runtimes_.end()) {
        continue;
      }
      if (auto d = desired_.find(name); d != desired_.end()) {
        it->second->ensure(d->second);  // retries what could not be prepared (a port in use, ...)
      }
      if (full || !it->second->ready()) {
        ++pending;
        net::co_spawn(wake_.get_executor(), it->second->probe(), [&pending, &all_done](std::exception_ptr) {
          if (--pending == 0) {
            // (Not cancel(): this may run before the wait below begins.)
            all_done.expires_at(net::steady_timer::time_point::min());
          }
        });
      }
    }
    if (pending > 0) {
      co_await all_done.async_wait(net::as_tuple(net::use_awaitable));
    }
    while (pending > 0) {  // (woken early by an expiry change: wait for the rest)
      all_done.expires_after(std::chrono::milliseconds(10));
      co_await all_done.async_wait(net::as_tuple(net::use_awaitable));
    }
    for (const auto& name : names) {
      auto it = runtimes_.find(name);
      if (it == runtimes_.end()) {
        continue;
      }
      updateHooks(name);  // (the control plane may serve now: hooks that target it can run)
      auto seen = observe(name);
      std::string now = seen ? seen->toJson().dump() : std::string();
      if (reported_[name] != now) {
        reported_[name] = now;
        changed = true;
      }
    }
    if (changed) {
      report();
    }
    wake_.expires_after(std::chrono::milliseconds(500));
    co_await wake_.async_wait(net::as_tuple(net::use_awaitable));
  }
}

void Reconciler::stop() {
  stopping_ = true;
  hooks_.clear();
  wake_.cancel();
  for (auto* group : {&runtimes_, &removing_}) {
    for (auto& [name, rt] : *group) {
      rt->detach();
    }
  }
  supervisor_.detachAll();
}

}  // namespace kflex::agent
