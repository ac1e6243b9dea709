// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <map>
#include <string>

#include "shared/model/resource.hpp"

namespace kflex::hub {

/// Discovery and OpenAPI documents, built once from the registry at start.
struct DiscoveryDocs {
  std::string api;              ///< /api (APIVersions)
  std::string apis;             ///< /apis (APIGroupList)
  std::string aggregated_api;   ///< /api as apidiscovery.k8s.io/v2 APIGroupDiscoveryList
  std::string aggregated_apis;  ///< /apis as apidiscovery.k8s.io/v2 APIGroupDiscoveryList
  std::map<std::string, std::string> groups;    ///< "/apis/G" -> APIGroup, "/api/v1" -> APIResourceList
  std::map<std::string, std::string> versions;  ///< "/apis/G/V" -> APIResourceList
  std::string openapi_v2;                        ///< Swagger 2.0 JSON
  std::string openapi_v2_protobuf;               ///< The same as openapi.v2.Document protobuf (kubectl's)
  std::string openapi_v3_root;                   ///< /openapi/v3 index
  std::map<std::string, std::string> openapi_v3;  ///< "apis/G/V" -> OpenAPI 3.0 document
};

/// Builds every document for the registry's kinds.
DiscoveryDocs buildDiscovery(const model::Registry& registry, const std::string& server_version);
/// The OpenAPI definition name of a kind ("org.kubestellar.kflex.tenancy.v1alpha1.ControlPlane").
std::string definitionName(const model::ResourceType& type);

}  // namespace kflex::hub
