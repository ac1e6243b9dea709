// SPDX-License-Identifier: Apache-2.0
#include "hub/api/object_rules.hpp"

#include <algorithm>
#include <set>

#include "hub/api/errors.hpp"
#include "hub/api/managed_fields.hpp"
#include "hub/api/request_codec.hpp"
#include "shared/common/util.hpp"

namespace kflex::hub {

using model::FieldError;
using model::ResourceType;

// Validates and defaults everything but server-managed metadata. Returns errors.
std::vector<FieldError> validateObject(const ResourceType& t, Json& obj, model::UnknownFields unknown,
                                       std::vector<std::string>& dropped) {
  std::vector<FieldError> errors;
  model::validateObjectMeta(obj["metadata"], t.namespaced, t.name_is_label, errors);
  Json metadata = std::move(obj["metadata"]);
  obj.erase("metadata");
  model::validateAndDefault(*t.compiled_schema, obj, "", unknown, errors, dropped);  // (every kind is registered)
  obj["metadata"] = std::move(metadata);
  model::applyKindRules(t, obj, errors);
  if (errors.empty() && t.admit) {
    t.admit(obj);
  }
  return errors;
}

// A status write keeps metadata and spec as they are stored (validated when they were written):
// only status is checked against the schema; the kind's own rules still see the whole object.
std::vector<FieldError> validateStatusWrite(const ResourceType& t, Json& obj, model::UnknownFields unknown,
                                            std::vector<std::string>& dropped) {
  const model::CompiledSchema* schema = t.compiled_schema->property("status");
  if (schema == nullptr) {
    return validateObject(t, obj, unknown, dropped);
  }
  std::vector<FieldError> errors;
  if (auto st = obj.find("status"); st != obj.end()) {
    model::validateAndDefault(*schema, *st, "status", unknown, errors, dropped);
  }
  model::applyKindRules(t, obj, errors);
  return errors;
}

// True when two objects are equal in every key but those in `skip` (compared in place: these
// objects are copied nowhere on the way to the store).
bool equalExcept(const Json& a, const Json& b, std::initializer_list<const char*> skip) {
  if (!a.is_object() || !b.is_object()) {
    return a == b;
  }
  auto skipped = [&skip](const std::string& key) {
    return std::any_of(skip.begin(), skip.end(), [&key](const char* s) { return key == s; });
  };
  size_t compared = 0;
  for (auto it = a.begin(); it != a.end(); ++it) {
    if (skipped(it.key())) {
      continue;
    }
    auto other = b.find(it.key());
    if (other == b.end() || *other != it.value()) {
      return false;
    }
    ++compared;
  }
  size_t in_b = 0;
  for (auto it = b.begin(); it != b.end(); ++it) {
    in_b += skipped(it.key()) ? 0 : 1;
  }
  return compared == in_b;
}

const Json& metaOf(const Json& obj) {
  static const Json kEmpty = Json::object();
  auto it = obj.find("metadata");
  return it != obj.end() && it->is_object() ? *it : kEmpty;
}

bool hasFinalizers(const Json& obj) {
  auto f = metaOf(obj).find("finalizers");
  return f != metaOf(obj).end() && f->is_array() && !f->empty();
}

// Applies the rules every write shares once the new object is known: keeps server-owned metadata,
// keeps the other half (status or the rest) of the object, bumps generation, validates, and turns
// the removal of the last finalizer of a deleting object into a delete.
Decision finishUpdate(const ResourceType& t, const ApiRequest& req, const std::string& name, const Json& old_obj,
                      Json obj, const std::string& subresource, const std::string& now,
                      std::vector<std::string>* dropped_out) {
  const Json& old_meta = metaOf(old_obj);
  Json& meta = obj["metadata"];
  std::string want_rv = meta.value("resourceVersion", "");
  if (meta.contains("name") && meta["name"] != name) {
    return failure("BadRequest", "the name of the object (" + meta["name"].dump() +
                                          ") does not match the name on the URL (" + name + ")");
  }
  meta["name"] = name;
  if (!want_rv.empty() && want_rv != old_meta.value("resourceVersion", "")) {
    return conflict(t, name);
  }
  if (meta.contains("uid") && meta["uid"] != old_meta.value("uid", "")) {
    return failure("Conflict", "Precondition failed: UID in precondition: " + meta["uid"].dump() +
                                        ", UID in object meta: " + old_meta.value("uid", ""));
  }
  for (const char* key : {"uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"}) {
    if (old_meta.contains(key)) {
      meta[key] = old_meta[key];
    } else {
      meta.erase(key);
    }
  }
  meta.erase("resourceVersion");
  if (subresource == "status") {
    // Status writes change only status (and nothing of metadata).
    Json status = obj.contains("status") ? obj["status"] : Json(nullptr);
    obj = old_obj;
    if (status.is_null()) {
      obj.erase("status");
    } else {
      obj["status"] = status;
    }
    // managedFields is recorded by the caller on `obj`.
  } else {
    if (t.has_status) {
      if (old_obj.contains("status")) {
        obj["status"] = old_obj["status"];
      } else {
        obj.erase("status");
      }
    }
    if (old_meta.contains("deletionTimestamp") && meta.contains("finalizers")) {
      std::set<std::string> before;
      if (auto f = old_meta.find("finalizers"); f != old_meta.end() && f->is_array()) {
        for (const auto& x : *f) {
          before.insert(x.dump());
        }
      }
      for (const auto& x : meta["finalizers"]) {
        if (before.count(x.dump()) == 0) {
          return failure("Invalid", t.qualifiedKind() + " \"" + name +
                                             "\" is invalid: metadata.finalizers: Forbidden: no new finalizers can be "
                                             "added if the object is being deleted, found new finalizers " + x.dump());
        }
      }
    }
  }
  std::vector<std::string> dropped;
  auto errors = subresource == "status" ? validateStatusWrite(t, obj, unknownPolicy(req), dropped)
                                        : validateObject(t, obj, unknownPolicy(req), dropped);
  if (errors.empty() && t.validate_update) {
    try {
      t.validate_update(old_obj, obj, errors);
    } catch (const Json::exception&) {
      errors.push_back({"FieldValueInvalid", "", "Invalid value: the object does not have the shape of a " + t.kind});
    }
  }
  if (dropped_out != nullptr) {
    *dropped_out = dropped;
  }
  if (!errors.empty()) {
    return invalid(t, name, errors);
  }
  if (!equalExcept(obj, old_obj, {"metadata", "status"})) {
    obj["metadata"]["generation"] = old_meta.value("generation", int64_t(1)) + 1;
  }
  bool own_managed_fields = subresource != "apply" && setsManagedFields(old_obj, obj, subresource);
  if (subresource != "apply") {
    recordUpdate(&old_obj, obj, managerOf(req), subresource == "status" ? "status" : "", now);
  }
  // Compare without the volatile managedFields timestamps (unless the writer set them itself).
  if (!own_managed_fields && equalExcept(obj, old_obj, {"metadata"}) &&
      equalExcept(metaOf(obj), metaOf(old_obj), {"resourceVersion", "managedFields"})) {
    Decision d;
    d.kind = Decision::Kind::Unchanged;
    return d;
  }
  Decision d;
  d.warnings = unknownFieldWarnings(req, dropped);
  if (obj["metadata"].contains("deletionTimestamp") && !hasFinalizers(obj)) {
    d.kind = Decision::Kind::Delete;
    return d;
  }
  d.kind = Decision::Kind::Put;
  d.object = std::move(obj);
  return d;
}

// Fills in what create sets: uid, creationTimestamp, generation; drops what a client may not set.
Decision prepareCreate(const ResourceType& t, const ApiRequest& req, Json obj, const std::string& now) {
  Json& meta = obj["metadata"];
  if (!meta.value("resourceVersion", "").empty()) {
    return failure("InternalError", "resourceVersion should not be set on objects to be created");
  }
  for (const char* key : {"uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                          "generation", "resourceVersion", "selfLink"}) {
    meta.erase(key);
  }
  if (t.has_status) {
    obj.erase("status");
  }
  std::string name = meta.value("name", "");
  std::vector<std::string> dropped;
  auto errors = validateObject(t, obj, unknownPolicy(req), dropped);
  if (!errors.empty()) {
    return invalid(t, name, errors);
  }
  if (t.on_create) {
    t.on_create(obj);
  }
  Json& fresh = obj["metadata"];  // validateObject re-seated metadata
  fresh["uid"] = newUuid();
  fresh["creationTimestamp"] = now;
  fresh["generation"] = 1;
  Decision d;
  d.kind = Decision::Kind::Put;
  d.object = std::move(obj);
  d.warnings = unknownFieldWarnings(req, dropped);
  return d;
}

Json parseObject(const ObjectRecord& rec) { return Json::parse(rec.bytes); }

Mutation deleteMutation(const ResourceType& t, std::string name, Json preconditions, std::string now) {
  return [&t, name, preconditions, now](const ObjectRecord* current, int64_t) {
    if (current == nullptr) {
      return notFound(t, name);
    }
    Json live = parseObject(*current);
    const Json& meta = live["metadata"];
    if (preconditions.is_object()) {
      if (auto uid = preconditions.find("uid"); uid != preconditions.end() && uid->is_string() &&
                                                 *uid != meta.value("uid", "")) {
        return failure("Conflict", "Precondition failed: UID in precondition: " + uid->get<std::string>() +
                                            ", UID in object meta: " + meta.value("uid", ""));
      }
      if (auto rv = preconditions.find("resourceVersion"); rv != preconditions.end() && rv->is_string() &&
                                                            *rv != meta.value("resourceVersion", "")) {
        return failure("Conflict", "Precondition failed: ResourceVersion in precondition: " +
                                            rv->get<std::string>() + ", ResourceVersion in object meta: " +
                                            meta.value("resourceVersion", ""));
      }
    }
    Decision d;
    if (hasFinalizers(live)) {
      if (meta.contains("deletionTimestamp")) {
        d.kind = Decision::Kind::Unchanged;
        return d;
      }
      live["metadata"]["deletionTimestamp"] = now;
      live["metadata"]["deletionGracePeriodSeconds"] = 0;
      live["metadata"]["generation"] = meta.value("generation", int64_t(1)) + 1;
      d.kind = Decision::Kind::Put;
      d.object = std::move(live);
      return d;
    }
    d.kind = Decision::Kind::Delete;
    return d;
  };
}

}  // namespace kflex::hub
