// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "shared/model/resource.hpp"

namespace kflex::hub {

/// Discovery and OpenAPI documents, built once from the registry at start.
struct DiscoveryDocs {
  std::string api;              ///< /api (APIVersions)
  std::string apis;             ///< /apis (APIGroupList)
  std::string aggregated_api;   ///< /api as apidiscovery.k8s.io/v2 APIGroupDiscoveryList
  std::string aggregated_apis;  ///< /apis as apidiscovery.k8s.io/v2 APIGroupDiscoveryList
  std::string aggregated_api_v2beta1;   ///< /api as apidiscovery.k8s.io/v2beta1 (kubectl 1.27-1.29)
  std::string aggregated_apis_v2beta1;  ///< /apis as apidiscovery.k8s.io/v2beta1
  std::map<std::string, std::string> groups;    ///< "/apis/G" -> APIGroup, "/api/v1" -> APIResourceList
  std::map<std::string, std::string> versions;  ///< "/apis/G/V" -> APIResourceList
  std::string openapi_v2;                        ///< Swagger 2.0 JSON
  std::string openapi_v2_protobuf;               ///< The same as openapi.v2.Document protobuf (kubectl's)
  std::string openapi_v3_root;                   ///< /openapi/v3 index
  std::map<std::string, std::string> openapi_v3;  ///< "apis/G/V" -> OpenAPI 3.0 document
};

/// The form of /api and /apis a client asked for in its Accept header.
enum class DiscoveryForm { Unaggregated, AggregatedV2Beta1, AggregatedV2 };

/**
 * Negotiates the form of /api and /apis as kube-apiserver does. Accept clauses are ranked by
 * q-value, highest first; equal ones keep their order, a concrete media type before a wildcard
 * one. The first clause that JSON satisfies and that asks for g=apidiscovery.k8s.io,
 * as=APIGroupDiscoveryList with v=v2 or v=v2beta1 decides. Clauses without that conversion do not
 * compete, so a plain application/json listed before an aggregated clause does not beat it; with
 * no aggregated clause at all the answer is the unaggregated APIVersions/APIGroupList.
 */
DiscoveryForm negotiateDiscovery(std::string_view accept);
/// The Content-Type of an answer in that form: the aggregated ones echo g=, v= and as= (in that
/// order, as kube-apiserver writes them), which is how clients tell the forms apart.
const char* discoveryContentType(DiscoveryForm form);

/// Builds every document for the registry's kinds.
DiscoveryDocs buildDiscovery(const model::Registry& registry, const std::string& server_version);
/// The OpenAPI definition name of a kind ("org.kubestellar.kflex.tenancy.v1alpha1.ControlPlane").
std::string definitionName(const model::ResourceType& type);

}  // namespace kflex::hub
