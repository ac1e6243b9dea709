// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kflex::model {

using Json = nlohmann::json;

/// One invalid field, as Kubernetes reports it in Status.details.causes.
struct FieldError {
  std::string reason;   ///< FieldValueInvalid, FieldValueRequired, FieldValueNotSupported, ...
  std::string field;    ///< Path such as "spec.type" or "spec.postCreateHooks[0].hookName".
  std::string message;  ///< Human text ("Unsupported value: \"x\": supported values: ...").
};

/// What to do with fields a schema does not declare (the fieldValidation query parameter).
enum class UnknownFields { Reject, Drop };

/// Validates value against an OpenAPI v3 structural schema (the subset CRDs use: type, properties,
/// required, enum, items, additionalProperties, default, format, x-kubernetes-preserve-unknown-fields,
/// x-kubernetes-embedded-resource, maxLength, minimum). Applies defaults, drops nulls and, with
/// UnknownFields::Drop, unknown fields (each dropped path goes to `dropped`). Appends errors.
void validateAndDefault(const Json& schema, Json& value, const std::string& path, UnknownFields unknown,
                        std::vector<FieldError>& errors, std::vector<std::string>& dropped);

/// Renders a JSON value for an error message the way Go's %q/%v would show it.
std::string describeValue(const Json& v);

}  // namespace kflex::model
