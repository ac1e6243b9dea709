// SPDX-License-Identifier: Apache-2.0
#include "hub/api/hook_labels.hpp"
#include "hub/api/router.hpp"

#include "shared/common/log.hpp"

namespace kflex::hub {

net::awaitable<void> copyHookLabels(ApiClient& api, const ObjectStore& store, const model::ResourceType& cps,
                                    std::string name, Json labels) {
  if (!labels.is_object() || labels.empty()) {
    co_return;
  }
  auto rec = store.get(resourceKey(cps), name);
  Json cp = rec ? Json::parse(rec->bytes, nullptr, false) : Json();
  if (!cp.is_object()) {
    co_return;
  }
  const Json have = cp["metadata"].value("labels", Json::object());
  Json missing = Json::object();
  for (auto it = labels.begin(); it != labels.end(); ++it) {
    if (have.value(it.key(), Json()) != it.value()) {
      missing[it.key()] = it.value();
    }
  }
  if (missing.empty()) {
    co_return;
  }
  Json patch = {{"metadata", {{"labels", missing}}}};
  Result<Json> res = co_await api.mergePatch(cps, "", name, std::move(patch));
  if (!res) {
    log::warn("cannot copy a PostCreateHook's labels onto its control plane",
              {{"controlPlane", name}, {"error", res.error().message.substr(0, 300)}});
  }
}

}  // namespace kflex::hub
