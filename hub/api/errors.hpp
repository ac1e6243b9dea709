// SPDX-License-Identifier: Apache-2.0
#pragma once

// The API's errors in one place: the Kubernetes Status reasons it answers with, the project
// error code each one is to a caller in the hub (ApiClient), and the HTTP status each one is on
// the wire. A write's failure travels as a store Decision (code, reason, message, details) and
// becomes an HTTP status only here.

#include <string>
#include <string_view>
#include <vector>

#include "hub/api/api_types.hpp"
#include "hub/store/object_store.hpp"
#include "shared/common/result.hpp"
#include "shared/model/resource.hpp"

namespace kflex::hub {

/// The HTTP status of a failure: by its Status reason, or by its code for a reason not listed.
unsigned httpStatus(Errc code, std::string_view reason);
/// The HTTP status of a Fail decision.
unsigned httpStatus(const Decision& d);

/// A Kubernetes Status failure response.
ApiResponse statusResponse(unsigned code, const std::string& reason, const std::string& message,
                           const nlohmann::json& details = nullptr);
/// The Status response of a Fail decision.
ApiResponse fromDecision(const Decision& d);
/// The error a Fail decision is to a caller in the hub.
Error toError(const Decision& d);

/// A Fail decision with the Status reason `reason` (its code follows from the reason).
Decision failure(std::string reason, std::string message, Json details = nullptr);
/// "<plural>.<group> "name" not found".
Decision notFound(const model::ResourceType& t, const std::string& name);
/// The object changed since the version the write was computed from.
Decision conflict(const model::ResourceType& t, const std::string& name);
/// The object breaks the schema or the kind's rules (422 with one cause per error).
Decision invalid(const model::ResourceType& t, const std::string& name, const std::vector<model::FieldError>& errors);

/// "plural" for the core group, "plural.group" otherwise (as Status messages name a resource).
std::string qualifiedResource(const model::ResourceType& t);
/// Adds a Warning header (RFC 9111 §5.5, as kube-apiserver writes them) per message.
void addWarnings(ApiResponse& r, const std::vector<std::string>& warnings);

}  // namespace kflex::hub
