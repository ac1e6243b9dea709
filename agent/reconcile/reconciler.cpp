// SPDX-License-Identifier: Apache-2.0
#include "agent/reconcile/reconciler.hpp"

#include "agent/runtime/control_planes.hpp"
#include "shared/common/log.hpp"
#include "shared/common/version.hpp"

namespace kflex::agent {

using Json = nlohmann::json;

protocol::StatusReport observedStatus(const Json& cp, const runtime::ControlPlanes* runtimes) {
  const Json meta = cp.value("metadata", Json::object());
  std::string type = cp.value("spec", Json::object()).value("type", "");
  std::optional<protocol::StatusReport> seen;
  if (runtimes != nullptr) {
    seen = runtimes->observe(meta.value("name", ""));
  }
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

Result<size_t> reconcile(AgentState& state, const runtime::ControlPlanes* runtimes) {
  size_t queued = 0;
  for (const auto& d : state.desired()) {
    Json cp = Json::parse(d.body, nullptr, false);
    if (!cp.is_object()) {
      log::warn("ignoring an unreadable desired control plane", {{"name", d.name}});
      continue;
    }
    std::string body = observedStatus(cp, runtimes).toJson().dump();
    if (body == d.reported) {
      continue;
    }
    if (auto r = state.enqueueStatus(d.name, body); !r) {
      return r.error();
    }
    ++queued;
  }
  return queued;
}

}  // namespace kflex::agent
