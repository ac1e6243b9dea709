// SPDX-License-Identifier: Apache-2.0
#pragma once

// The rules every write of an object goes through, whoever sends it: schema validation and
// defaults, the kind's own rules, server-owned metadata (uid, creationTimestamp, generation,
// deletion), the status/spec split of the status subresource, managed fields, and a deleting
// object losing its last finalizer becoming a delete.

#include <initializer_list>
#include <string>
#include <vector>

#include "hub/api/api_types.hpp"
#include "hub/store/object_store.hpp"
#include "shared/model/resource.hpp"

namespace kflex::hub {

/// Validates and defaults everything but server-managed metadata. Returns errors.
std::vector<model::FieldError> validateObject(const model::ResourceType& t, Json& obj, model::UnknownFields unknown,
                                              std::vector<std::string>& dropped);
/// A status write keeps metadata and spec as they are stored: only status is checked against the
/// schema; the kind's own rules still see the whole object.
std::vector<model::FieldError> validateStatusWrite(const model::ResourceType& t, Json& obj,
                                                   model::UnknownFields unknown, std::vector<std::string>& dropped);
/// True when two objects are equal in every key but those in `skip`.
bool equalExcept(const Json& a, const Json& b, std::initializer_list<const char*> skip);
/// An object's metadata (an empty object when it has none).
const Json& metaOf(const Json& obj);
/// True when the object lists finalizers.
bool hasFinalizers(const Json& obj);
/// Applies the rules every write shares once the new object is known (subresource "", "status"
/// or "apply"); `dropped_out`, when given, receives the unknown fields dropped.
Decision finishUpdate(const model::ResourceType& t, const ApiRequest& req, const std::string& name,
                      const Json& old_obj, Json obj, const std::string& subresource, const std::string& now,
                      std::vector<std::string>* dropped_out);
/// Fills in what create sets: uid, creationTimestamp, generation; drops what a client may not set.
Decision prepareCreate(const model::ResourceType& t, const ApiRequest& req, Json obj, const std::string& now);
/// The mutation of a delete: preconditions (uid, resourceVersion), then a delete, or a
/// deletionTimestamp while finalizers hold the object.
Mutation deleteMutation(const model::ResourceType& t, std::string name, Json preconditions, std::string now);
/// A stored object, decoded.
Json parseObject(const ObjectRecord& rec);

}  // namespace kflex::hub
