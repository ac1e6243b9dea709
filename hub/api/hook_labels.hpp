// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>

#include "hub/api/api_client.hpp"
#include "hub/store/object_store.hpp"

namespace kflex::hub {

/// Copies the labels of PostCreateHooks that ran (label -> value) onto ControlPlane `name`, as
/// upstream KubeFlex does; labels it already has with that value are left alone.
net::awaitable<void> copyHookLabels(ApiClient& api, const ObjectStore& store, const model::ResourceType& cps,
                                    std::string name, Json labels);

}  // namespace kflex::hub
