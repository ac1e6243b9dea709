// SPDX-License-Identifier: Apache-2.0
#include "hub/agents/status_writer.hpp"

#include "hub/agents/release_controller.hpp"
#include "hub/api/hook_labels.hpp"
#include "hub/api/router.hpp"
#include "shared/common/log.hpp"
#include "shared/model/control_plane_status.hpp"
#include "shared/model/control_plane_types.hpp"

namespace kflex::hub {
namespace {

// Reports of this many agents are written at once (each agent's one at a time). Their writes
// meet in the store's group commits.
constexpr size_t kWriters = 64;

std::chrono::milliseconds until(std::chrono::steady_clock::time_point at) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(at - std::chrono::steady_clock::now());
  return std::max(left, std::chrono::milliseconds(1));
}

}  // namespace

StatusWriter::StatusWriter(net::io_context& ioc, ApiClient& api, ObjectStore& store,
                           const model::Registry& registry, const Clock& clock, StatusLimits limits)
    : api_(api),
      store_(store),
      cps_(*registry.find(model::kTenancyGroup, model::kTenancyVersion, "controlplanes")),
      agents_key_(
          resourceKey(*registry.find(model::kTenancyGroup, model::kTenancyVersion, "agents"))),
      clock_(clock),
      limits_(limits),
      controller_(net::make_strand(ioc), store, ControllerOptions{"status", kWriters, {}},
                  [this](std::string key) { return reconcile(std::move(key)); }) {}

void StatusWriter::offer(const std::string& agent, protocol::StatusReport&& report,
                         std::function<void()> ack) {
  std::optional<Pending> replaced;
  {
    std::lock_guard lock(mutex_);
    auto& limiter = reports_[agent];
    if (!limiter) {
      limiter = std::make_unique<StatusLimiter<Pending>>(limits_, std::chrono::steady_clock::now());
    }
    std::string control_plane = report.control_plane;
    replaced = limiter->offer(control_plane, Pending{std::move(report), std::move(ack)});
  }
  if (replaced) {
    // The newer report is the one that will be stored: the agent may forget this one.
    replaced->ack();
  }
  controller_.queue().add(agent);
}

void StatusWriter::forget(const std::string& agent) {
  std::lock_guard lock(mutex_);
  reports_.erase(agent);
  stopWhenFlushed();
}

void StatusWriter::flush() {
  std::vector<std::string> waiting;
  {
    std::lock_guard lock(mutex_);
    flushing_ = true;
    for (const auto& [agent, limiter] : reports_) {
      waiting.push_back(agent);
    }
    stopWhenFlushed();
  }
  for (const auto& agent : waiting) {
    controller_.queue().add(agent);
  }
}

void StatusWriter::stopWhenFlushed() {
  if (flushing_ && reports_.empty()) {
    controller_.stop();
  }
}

net::awaitable<Outcome> StatusWriter::reconcile(std::string agent) {
  std::optional<std::pair<std::string, Pending>> ready;
  std::optional<std::chrono::steady_clock::time_point> at;
  {
    std::lock_guard lock(mutex_);
    auto it = reports_.find(agent);
    if (it == reports_.end()) {
      co_return Outcome::done();  // written and forgotten, or the agent was deleted
    }
    StatusLimiter<Pending>& limiter = *it->second;
    auto now = std::chrono::steady_clock::now();
    if (flushing_) {
      ready = limiter.takeAny();
    } else {
      auto next = limiter.next(now);
      ready = std::move(next.ready);
      at = next.at;
    }
    if (!ready && !at) {
      if (flushing_ || limiter.settledAt() <= now) {
        reports_.erase(it);  // nothing waits and nothing is left to remember
        stopWhenFlushed();
        co_return Outcome::done();
      }
      at = limiter.settledAt();  // then forget the agent, unless a report comes first
    }
  }
  if (!ready) {
    co_return Outcome::requeueAfter(until(*at));
  }
  try {
    co_await write(agent, ready->second.report);
  } catch (const std::exception& e) {
    // (Not expected; its other control planes' reports must still be written.)
    log::error("cannot write an agent's status report",
               {{"agent", agent}, {"controlPlane", ready->first}, {"error", e.what()}});
  }
  ready->second.ack();
  co_return Outcome::requeueAfter(
      std::chrono::milliseconds(0));  // its next report, after other agents' turns
}

net::awaitable<Json> StatusWriter::storeKubeconfig(const std::string& agent,
                                                   const protocol::StatusReport& report) {
  const std::string& name = report.control_plane;
  if (!report.kubeconfig || secrets_ == nullptr) {
    co_return Json();
  }
  const std::string& secret_name = report.kubeconfig->secret_name;
  const auto& data = report.kubeconfig->data;
  auto rec = store_.get(resourceKey(cps_), name);
  Json cp = rec ? Json::parse(rec->bytes, nullptr, false) : Json();
  if (!cp.is_object() || cp.value("status", Json::object()).value("agent", "") != agent) {
    co_return Json();
  }
  auto stored = co_await secrets_->put(name, cp["metadata"].value("uid", ""), secret_name, data);
  if (!stored) {
    log::error("cannot store a control plane's kubeconfig",
               {{"controlPlane", name}, {"error", stored.error().message}});
    co_return Json();
  }
  if (model::isAdopted(cp["spec"].value("type", ""))) {
    // Adopted by the agent: the bootstrap credential has served its purpose.
    std::string bootstrap =
        cp["spec"].value("bootstrapSecretRef", Json::object()).value("name", "");
    if (!bootstrap.empty() && secrets_->bootstrap(bootstrap)) {
      co_await secrets_->removeBootstrap(bootstrap);
      log::info("an agent adopted a cluster; its bootstrap secret was deleted",
                {{"controlPlane", name}, {"agent", agent}, {"secret", bootstrap}});
    }
  }
  bool admin = secret_name == "admin-kubeconfig";
  Json secret_ref = {{"namespace", name + "-system"},
                     {"name", secret_name},
                     {"inClusterKey", admin ? "kubeconfig-incluster" : "config-incluster"}};
  if (data.count(admin ? "kubeconfig" : "config")) {
    secret_ref["key"] = admin ? "kubeconfig" : "config";
  }
  co_return secret_ref;
}

net::awaitable<void> StatusWriter::write(std::string agent, const protocol::StatusReport& report) {
  const std::string& name = report.control_plane;
  std::string stamp = formatTime(clock_.now());
  Json secret_ref = co_await storeKubeconfig(agent, report);
  co_await api_.changeStatus(cps_, name, [&](Json& obj) {
    Json& status = obj["status"];
    if (!status.is_object() || status.value("agent", "") != agent ||
        !store_.get(agents_key_, agent)) {
      return false;  // not (or no longer) this agent's, or the agent was deleted
    }
    bool changed = false;
    if (status.value("observedGeneration", int64_t(-1)) != report.observed_generation) {
      status["observedGeneration"] = report.observed_generation;
      changed = true;
    }
    changed |=
        model::applyStatusReport(status, report, secret_ref, stamp, model::UnusedHooks::Forget);
    return changed;
  });
  // As upstream, a hook's labels go onto the control plane once it ran.
  // (A named value, not a temporary in the co_await's arguments: GCC 12 miscompiles those.)
  Json hook_labels = protocol::orNull(report.hook_labels);
  co_await copyHookLabels(api_, store_, cps_, name, std::move(hook_labels));
  // The agent has stopped it and removed its data: the deletion can finish.
  if (report.removed) {
    auto rec = store_.get(resourceKey(cps_), name);
    Json cp = rec ? Json::parse(rec->bytes, nullptr, false) : Json();
    if (cp.is_object() && cp["metadata"].contains("deletionTimestamp") &&
        cp.value("status", Json::object()).value("agent", "") == agent) {
      co_await releaseControlPlane(api_, cps_, name,
                                   "agent " + agent + " stopped it and removed its data");
    }
  }
}

}  // namespace kflex::hub
