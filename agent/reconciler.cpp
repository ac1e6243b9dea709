// SPDX-License-Identifier: Apache-2.0
#include "agent/reconciler.hpp"

#include "agent/runtime/control_planes.hpp"
#include "shared/common/log.hpp"
#include "shared/common/version.hpp"

namespace kflex::agent {

using Json = nlohmann::json;

Json observedStatus(const Json& cp, const runtime::ControlPlanes* runtimes) {
  const Json meta = cp.value("metadata", Json::object());
  std::string type = cp.value("spec", Json::object()).value("type", "");
  if (runtimes != nullptr) {
    if (auto seen = runtimes->observe(meta.value("name", "")); seen) {
      Json out = {{"controlPlane", meta.value("name", "")}, {"observedGeneration", meta.value("generation", int64_t(0))}};
      out.update(*seen);
      return out;
    }
  }
  std::string msg = std::string("kflex-agent ") + kVersion + " cannot run control planes of type \"" + type +
                    "\" yet; it keeps the desired state and reports here once it can";
  Json conditions = Json::array({
      {{"type", "Synced"}, {"status", "False"}, {"reason", "NotSupported"}, {"message", msg}},
      {{"type", "Ready"}, {"status", "False"}, {"reason", "NotSupported"}, {"message", msg}},
  });
  return {{"controlPlane", meta.value("name", "")},
          {"observedGeneration", meta.value("generation", int64_t(0))},
          {"conditions", conditions}};
}

Result<size_t> reconcile(AgentState& state, const runtime::ControlPlanes* runtimes) {
  size_t queued = 0;
  for (const auto& d : state.desired()) {
    Json cp = Json::parse(d.body, nullptr, false);
    if (!cp.is_object()) {
      log::warn("ignoring an unreadable desired control plane", {{"name", d.name}});
      continue;
    }
    std::string body = observedStatus(cp, runtimes).dump();
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
