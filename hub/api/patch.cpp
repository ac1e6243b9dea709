// SPDX-License-Identifier: Apache-2.0
#include "hub/api/patch.hpp"

#include <functional>

#include "hub/api/errors.hpp"
#include "hub/api/managed_fields.hpp"
#include "hub/api/object_rules.hpp"
#include "hub/api/request_codec.hpp"

namespace kflex::hub {

Mutation patchMutation(const model::ResourceType& t, ApiRequest req, std::string name, std::string sub, PatchKind kind,
                       Json patch_doc, std::string now) {
  return [&t, req, patch_doc, kind, now, name, sub](const ObjectRecord* current, int64_t) {
    if (current == nullptr) {
      return notFound(t, name);
    }
    Json live = parseObject(*current);
    Json patched = live;
    if (kind == PatchKind::Json6902) {
      // Against the current object, resourceVersion included, so that a "test" of it works (kubectl
      // sends one when it hands managedFields over to server-side apply). A resourceVersion the
      // patch leaves as it is states no precondition; one it changes does (409 below if stale).
      try {
        patched = live.patch(patch_doc);
      } catch (const std::exception& e) {
        return failure("Invalid", std::string("the JSON patch could not be applied: ") + e.what());
      }
      if (patched.is_object() && patched["metadata"].is_object() &&
          patched["metadata"].contains("resourceVersion") &&
          patched["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]) {
        patched["metadata"].erase("resourceVersion");
      }
    } else {
      // Without a stated resourceVersion a patch applies to whatever is current (no precondition).
      patched["metadata"].erase("resourceVersion");
      // For kinds without patch strategies (all CRD-like kinds), a strategic merge patch is a
      // JSON merge patch with $patch/$retainKeys directives removed.
      Json doc = patch_doc;
      if (kind == PatchKind::Strategic) {
        std::function<void(Json&)> strip = [&](Json& j) {
          if (j.is_object()) {
            j.erase("$patch");
            j.erase("$retainKeys");
            for (auto it = j.begin(); it != j.end();) {
              if (it.key().rfind("$setElementOrder/", 0) == 0 || it.key().rfind("$deleteFromPrimitiveList/", 0) == 0) {
                it = j.erase(it);
              } else {
                strip(*it);
                ++it;
              }
            }
          }
        };
        strip(doc);
      }
      patched.merge_patch(doc);
    }
    if (!patched.is_object()) {
      return failure("Invalid", "the patched object is not an object");
    }
    Json& meta = patched["metadata"];
    if (!meta.is_object()) {
      return failure("Invalid", "the patch removed metadata");
    }
    if (!meta.contains("resourceVersion")) {
      meta["resourceVersion"] = "";
    }
    if (meta["resourceVersion"] == "") {
      meta.erase("resourceVersion");
    }
    Json tmp = patched;
    if (auto bad = checkKind(tmp, t, req.ns)) {
      return *bad;
    }
    return finishUpdate(t, req, name, live, tmp, sub, now, nullptr);
  };
}

Mutation applyMutation(const model::ResourceType& t, ApiRequest req, std::string name, std::string sub, Json applied,
                       std::string manager, bool force, std::string now) {
  return [&t, req, applied, now, manager, force, name, sub](const ObjectRecord* current, int64_t) {
    Json result;
    if (current == nullptr) {
      if (sub == "status") {
        return notFound(t, name);
      }
      Json base = applied;
      base["metadata"].erase("managedFields");
      Decision d = prepareCreate(t, req, base, now);
      if (d.kind != Decision::Kind::Put) {
        return d;
      }
      Json merged;
      applyConfig(nullptr, applied, manager, true, "", now, merged);
      d.object["metadata"]["managedFields"] = merged["metadata"]["managedFields"];
      return d;
    }
    Json live = parseObject(*current);
    auto conflicts = applyConfig(&live, applied, manager, force, sub, now, result);
    if (!conflicts.empty() && !force) {
      Json causes = Json::array();
      std::string msg;
      for (const auto& c : conflicts) {
        std::string field = pathString(c.path);
        causes.push_back({{"reason", "FieldManagerConflict"},
                          {"message", "conflict with \"" + c.manager + "\""},
                          {"field", field}});
        msg += (msg.empty() ? "" : "\n") + std::string("- conflict with \"") + c.manager + "\": " + field;
      }
      return failure("Conflict", "Apply failed with " + std::to_string(conflicts.size()) +
                                          " conflict" + (conflicts.size() > 1 ? "s" : "") + ": " + msg,
                     {{"name", name}, {"group", t.group}, {"kind", t.plural}, {"causes", causes}});
    }
    Json managed = result["metadata"].contains("managedFields") ? result["metadata"]["managedFields"] : Json();
    Decision d = finishUpdate(t, req, name, live, result, sub == "status" ? "status" : "apply", now, nullptr);
    if (d.kind == Decision::Kind::Put) {
      if (managed.is_null()) {
        d.object["metadata"].erase("managedFields");
      } else {
        d.object["metadata"]["managedFields"] = managed;
      }
    }
    return d;
  };
}

}  // namespace kflex::hub
