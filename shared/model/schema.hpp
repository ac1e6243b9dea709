// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
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

/**
 * A schema prepared for validateAndDefault: every keyword it uses is looked up once, here, instead
 * of for every value validated (the registry's kinds keep theirs). Owns copies of what it needs;
 * the source schema may go.
 */
struct CompiledSchema {
  explicit CompiledSchema(const Json& schema);
  /// The schema of a declared property, or nullptr.
  const CompiledSchema* property(const std::string& name) const;

  std::string type;                 ///< "" when not given.
  std::vector<Json> enum_values;    ///< Allowed values (none: any).
  bool has_enum = false;
  std::optional<size_t> max_length;
  bool date_time = false;           ///< format: date-time.
  std::optional<Json> minimum;
  bool preserve_unknown = false;    ///< x-kubernetes-preserve-unknown-fields.
  bool embedded_resource = false;   ///< x-kubernetes-embedded-resource.
  bool has_properties = false;      ///< "properties" given (even empty).
  std::map<std::string, std::unique_ptr<CompiledSchema>> properties;
  bool has_additional = false;      ///< "additionalProperties" given (a schema or a boolean).
  std::unique_ptr<CompiledSchema> additional;  ///< When it is a schema.
  std::unique_ptr<CompiledSchema> items;
  std::vector<std::pair<std::string, Json>> defaults;  ///< Properties with a default, by name.
  std::vector<std::string> required;
};

/// validateAndDefault with a compiled schema (same rules, same errors).
void validateAndDefault(const CompiledSchema& schema, Json& value, const std::string& path, UnknownFields unknown,
                        std::vector<FieldError>& errors, std::vector<std::string>& dropped);

/// Validates value against an OpenAPI v3 structural schema (the subset CRDs use: type, properties,
/// required, enum, items, additionalProperties, default, format, x-kubernetes-preserve-unknown-fields,
/// x-kubernetes-embedded-resource, maxLength, minimum). Applies defaults, drops nulls and, with
/// UnknownFields::Drop, unknown fields (each dropped path goes to `dropped`). Appends errors.
void validateAndDefault(const Json& schema, Json& value, const std::string& path, UnknownFields unknown,
                        std::vector<FieldError>& errors, std::vector<std::string>& dropped);

/// Renders a JSON value for an error message the way Go's %q/%v would show it.
std::string describeValue(const Json& v);

}  // namespace kflex::model
