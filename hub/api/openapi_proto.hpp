// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace kflex::hub {

/// The protobuf media type of /openapi/v2, as the response's Content-Type. (Clients ask for it
/// with "@v1.0" in place of ".v1.0", which Go's MIME parser refuses in a response.)
inline constexpr const char* kOpenApiV2Protobuf = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
/// True when an Accept header asks for the protobuf form, in either spelling.
inline bool acceptsOpenApiV2Protobuf(std::string_view accept) {
  return accept.find("com.github.proto-openapi.spec.v2") != std::string_view::npos;
}

/**
 * Encodes a Swagger 2.0 document as the protobuf message openapi.v2.Document (gnostic's
 * OpenAPIv2.proto), the form kube-apiserver serves /openapi/v2 in and the only one kubectl reads
 * there (it validates a `kind: List` against it). Covers what the hub's documents use: info,
 * paths with operations, parameters and responses, and definitions with every JSON Schema keyword
 * of the message; vendor extensions (x-...) and enum/default/example values are carried as YAML
 * (JSON is YAML), as gnostic does. Keys the message has no field for are left out.
 */
std::string openApiV2Protobuf(const nlohmann::json& swagger);

}  // namespace kflex::hub
