// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kflex::hub {

using Json = nlohmann::json;

/// A field path such as {"spec", "type"}; lists are atomic, so paths never go into list items.
using FieldPath = std::vector<std::string>;
using FieldSet = std::set<FieldPath>;

/// The leaf fields an object sets, without the identity fields (apiVersion, kind, metadata.name,
/// server-set metadata) and, unless with_status, without status.
FieldSet leafFields(const Json& obj, bool with_status);
/// The value at a path, or nullptr.
const Json* valueAt(const Json& obj, const FieldPath& path);
/// Removes the field at a path (no-op when absent).
void removeField(Json& obj, const FieldPath& path);
/// Encodes a set as a FieldsV1 object ({"f:spec":{"f:type":{}}}).
Json toFieldsV1(const FieldSet& set);
/// Decodes a FieldsV1 object.
FieldSet fromFieldsV1(const Json& fields);
/// ".spec.type", as conflicts print paths.
std::string pathString(const FieldPath& path);
/// Merges patch into target: objects recursively, everything else replaced (SSA with atomic lists).
void deepMerge(Json& target, const Json& patch);

/// One conflict of a server-side apply.
struct FieldConflict {
  std::string manager;
  FieldPath path;
};

/**
 * Records a non-apply write by `manager` in metadata.managedFields of `updated`: the fields whose
 * value changed move to the manager, fields that vanished leave every manager. With subresource
 * "status" (and an old object), only status is looked at: the caller guarantees the rest of
 * `updated` is `old_obj`'s, as a status write keeps it. managedFields the writer set itself (see
 * setsManagedFields) are the starting point instead of the old object's, as kube-apiserver does.
 */
void recordUpdate(const Json* old_obj, Json& updated, const std::string& manager, const std::string& subresource,
                  const std::string& now);

/// True when a write (not through a subresource) states managedFields of its own: a non-empty
/// list other than the stored one. kubectl does so when it hands an object's fields over from
/// client-side to server-side apply.
bool setsManagedFields(const Json& old_obj, const Json& updated, const std::string& subresource);

/**
 * Records, on a new object whose creator's entry is written, the status the hub set as it was
 * created: an entry of `manager` through the status subresource.
 */
void recordNewStatus(Json& obj, const std::string& manager, const std::string& now);

/**
 * Server-side apply of `applied` by `manager` onto `live` (nullptr to create). Returns the
 * conflicts (nothing is changed then, unless force); otherwise writes the merged object into
 * `result` with managedFields updated.
 */
std::vector<FieldConflict> applyConfig(const Json* live, const Json& applied, const std::string& manager, bool force,
                                       const std::string& subresource, const std::string& now, Json& result);

}  // namespace kflex::hub
