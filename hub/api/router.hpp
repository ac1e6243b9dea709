// SPDX-License-Identifier: Apache-2.0
#pragma once

// Where things are: the store key of a kind's objects, the API path of an object, and the
// resource a request path names (/apis/GROUP/VERSION/[namespaces/NS/]PLURAL[/NAME[/SUBRESOURCE]],
// or /api/VERSION/... for the core group).

#include <optional>
#include <string>

#include "shared/model/resource.hpp"
#include "shared/net/asio.hpp"

namespace kflex::hub {

/// The tenancy group's kind `plural` (controlplanes, agents, bootstraptokens, ...); throws when
/// the registry lacks it (a programming error).
const model::ResourceType& tenancyType(const model::Registry& registry, const char* plural);
/// The store key of a kind ("group/plural", and "/namespace" for a namespaced kind's objects).
std::string resourceKey(const model::ResourceType& t, const std::string& ns = "");
/// The API path of an object (with "/status" when status is true; ns for a namespaced kind).
std::string objectPath(const model::ResourceType& t, const std::string& name, bool status = false,
                       const std::string& ns = "");

/// The resource a request path names.
struct ResourceRoute {
  const model::ResourceType* type = nullptr;
  std::string ns;  ///< The namespace the path names (namespaced kinds).
  std::string name;
  std::string subresource;
};
/// The resource `path` names for a request of `method`; nothing when it names none the registry
/// serves (the API answers 404).
std::optional<ResourceRoute> routeResource(const model::Registry& registry, http::verb method, const std::string& path);

}  // namespace kflex::hub
