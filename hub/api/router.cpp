// SPDX-License-Identifier: Apache-2.0
#include "hub/api/router.hpp"

#include <stdexcept>

#include "shared/common/util.hpp"

namespace kflex::hub {

using model::ResourceType;

const ResourceType& tenancyType(const model::Registry& registry, const char* plural) {
  const ResourceType* t = registry.find(model::kTenancyGroup, model::kTenancyVersion, plural);
  if (t == nullptr) {
    throw std::logic_error(std::string("registry lacks ") + plural);
  }
  return *t;
}

std::string resourceKey(const ResourceType& t, const std::string& ns) {
  // Objects of a namespaced kind are kept per namespace: "group/plural/namespace".
  return t.namespaced ? t.group + "/" + t.plural + "/" + ns : t.group + "/" + t.plural;
}

std::string objectPath(const ResourceType& t, const std::string& name, bool status, const std::string& ns) {
  std::string base = t.group.empty() ? "/api/" + t.version : "/apis/" + t.apiVersion();
  if (t.namespaced) {
    base += "/namespaces/" + ns;
  }
  return base + "/" + t.plural + "/" + name + (status ? "/status" : "");
}

std::optional<ResourceRoute> routeResource(const model::Registry& registry, http::verb method, const std::string& path) {
  // /apis/GROUP/VERSION/[namespaces/NS/]PLURAL[/NAME[/SUBRESOURCE]], or /api/VERSION/... for core.
  auto parts = split(path, '/');
  ResourceRoute route;
  size_t at = 0;
  std::string group;
  std::string version;
  if (parts.size() >= 4 && parts[0].empty() && parts[1] == "api") {
    version = parts[2];
    at = 3;
  } else if (parts.size() >= 5 && parts[0].empty() && parts[1] == "apis") {
    group = parts[2];
    version = parts[3];
    at = 4;
  }
  if (at != 0) {
    if (parts.size() > at + 2 && parts[at] == "namespaces") {
      if (const ResourceType* nt = registry.find(group, version, parts[at + 2]); nt != nullptr && nt->namespaced) {
        route.ns = parts[at + 1];
        at += 2;
      }
    }
    const ResourceType* t = registry.find(group, version, parts[at]);
    if (t != nullptr && parts.size() <= at + 3) {
      std::string name = parts.size() > at + 1 ? parts[at + 1] : "";
      std::string sub = parts.size() > at + 2 ? parts[at + 2] : "";
      bool bad_ns = t->namespaced && route.ns.empty() && (!name.empty() || method != http::verb::get);
      if ((parts.size() > at + 1 && name.empty()) || (parts.size() > at + 2 && (sub != "status" || !t->has_status)) ||
          bad_ns || (t->namespaced && !route.ns.empty() && !isDns1123Label(route.ns))) {
        return std::nullopt;
      }
      route.type = t;
      route.name = std::move(name);
      route.subresource = std::move(sub);
      return route;
    }
  }
  return std::nullopt;
}

}  // namespace kflex::hub
