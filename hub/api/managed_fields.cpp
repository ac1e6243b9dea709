// SPDX-License-Identifier: Apache-2.0
#include "hub/api/managed_fields.hpp"

#include <functional>
#include <map>
#include <set>
#include <string_view>

namespace kflex::hub {
namespace {

// A metadata field the server keeps (or that names the object): nobody manages it.
bool isServerMetadata(std::string_view field) {
  static const std::set<std::string, std::less<>> kServer = {
      "name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
      "deletionGracePeriodSeconds", "managedFields", "selfLink", "generateName"};
  return kServer.count(field) > 0;
}

bool isIdentity(const FieldPath& p) {
  if (p.size() == 1) {
    return p[0] == "apiVersion" || p[0] == "kind";
  }
  return p.size() == 2 && p[0] == "metadata" && isServerMetadata(p[1]);
}

void collect(const Json& v, FieldPath& path, FieldSet& out, bool with_status) {
  if (v.is_object() && !v.empty()) {
    for (auto it = v.begin(); it != v.end(); ++it) {
      path.push_back(it.key());
      bool skip = isIdentity(path) || (path.size() == 1 && path[0] == "status" && !with_status) ||
                  (path.size() == 1 && path[0] == "metadata" && false);
      if (!skip) {
        collect(it.value(), path, out, with_status);
      }
      path.pop_back();
    }
  } else if (!path.empty()) {
    out.insert(path);
  }
}

struct Entry {
  std::string manager;
  std::string operation;
  std::string subresource;
  std::string time;
  FieldSet fields;
};

std::vector<Entry> readEntries(const Json& obj) {
  std::vector<Entry> out;
  const Json* mf = valueAt(obj, {"metadata", "managedFields"});
  if (mf == nullptr || !mf->is_array()) {
    return out;
  }
  for (const auto& e : *mf) {
    if (!e.is_object()) {
      continue;
    }
    Entry entry;
    entry.manager = e.value("manager", "");
    entry.operation = e.value("operation", "Update");
    entry.subresource = e.value("subresource", "");
    entry.time = e.value("time", "");
    if (auto f = e.find("fieldsV1"); f != e.end()) {
      entry.fields = fromFieldsV1(*f);
    }
    out.push_back(std::move(entry));
  }
  return out;
}

void writeEntries(Json& obj, const std::vector<Entry>& entries, const std::string& api_version) {
  Json arr = Json::array();
  for (const auto& e : entries) {
    if (e.fields.empty()) {
      continue;
    }
    Json j = {{"manager", e.manager}, {"operation", e.operation}, {"apiVersion", api_version},
              {"fieldsType", "FieldsV1"}, {"fieldsV1", toFieldsV1(e.fields)}};
    if (!e.time.empty()) {
      j["time"] = e.time;
    }
    if (!e.subresource.empty()) {
      j["subresource"] = e.subresource;
    }
    arr.push_back(std::move(j));
  }
  if (arr.empty()) {
    obj["metadata"].erase("managedFields");
  } else {
    obj["metadata"]["managedFields"] = std::move(arr);
  }
}

Entry& entryFor(std::vector<Entry>& entries, const std::string& manager, const std::string& op,
                const std::string& subresource) {
  for (auto& e : entries) {
    if (e.manager == manager && e.operation == op && e.subresource == subresource) {
      return e;
    }
  }
  entries.push_back(Entry{manager, op, subresource, "", {}});
  return entries.back();
}

}  // namespace

FieldSet leafFields(const Json& obj, bool with_status) {
  FieldSet out;
  FieldPath path;
  collect(obj, path, out, with_status);
  return out;
}

const Json* valueAt(const Json& obj, const FieldPath& path) {
  const Json* cur = &obj;
  for (const auto& k : path) {
    if (!cur->is_object()) {
      return nullptr;
    }
    auto it = cur->find(k);
    if (it == cur->end()) {
      return nullptr;
    }
    cur = &*it;
  }
  return cur;
}

void removeField(Json& obj, const FieldPath& path) {
  Json* cur = &obj;
  for (size_t i = 0; i + 1 < path.size(); ++i) {
    if (!cur->is_object() || !cur->contains(path[i])) {
      return;
    }
    cur = &(*cur)[path[i]];
  }
  if (cur->is_object() && !path.empty()) {
    cur->erase(path.back());
  }
}

Json toFieldsV1(const FieldSet& set) {
  Json out = Json::object();
  for (const auto& path : set) {
    Json* cur = &out;
    for (const auto& k : path) {
      cur = &(*cur)["f:" + k];
      if (cur->is_null()) {
        *cur = Json::object();
      }
    }
  }
  return out;
}

FieldSet fromFieldsV1(const Json& fields) {
  FieldSet out;
  FieldPath path;
  std::function<void(const Json&)> walk = [&](const Json& node) {
    bool leaf = true;
    if (node.is_object()) {
      for (auto it = node.begin(); it != node.end(); ++it) {
        if (it.key().rfind("f:", 0) == 0) {
          leaf = false;
          path.push_back(it.key().substr(2));
          walk(it.value());
          path.pop_back();
        }
      }
    }
    if (leaf && !path.empty()) {
      out.insert(path);
    }
  };
  walk(fields);
  return out;
}

std::string pathString(const FieldPath& path) {
  std::string s;
  for (const auto& k : path) {
    s += "." + k;
  }
  return s;
}

void deepMerge(Json& target, const Json& patch) {
  if (!patch.is_object() || !target.is_object()) {
    target = patch;
    return;
  }
  for (auto it = patch.begin(); it != patch.end(); ++it) {
    auto t = target.find(it.key());
    if (t != target.end() && t->is_object() && it.value().is_object()) {
      deepMerge(*t, it.value());
    } else {
      target[it.key()] = it.value();
    }
  }
}

// fieldsV1 of every leaf of `v` (what leafFields and toFieldsV1 give together), built in one walk,
// into `out`. `depth` is v's distance from the object's top (0: the object itself); `in_metadata`:
// v is the object's metadata. It runs for every create, so it walks without building paths (the
// rule is isIdentity's), and appends in order (the keys come sorted and "f:" keeps them so):
// every insertion lands at the end of the map.
void fieldsV1Into(const Json& v, size_t depth, bool in_metadata, bool with_status, Json::object_t& out) {
  std::string key;
  for (const auto& [name, child] : v.get_ref<const Json::object_t&>()) {
    if (depth == 0 && (name == "apiVersion" || name == "kind" || (name == "status" && !with_status))) {
      continue;
    }
    if (in_metadata && isServerMetadata(name)) {
      continue;
    }
    key.assign("f:").append(name);
    if (!child.is_object() || child.empty()) {
      out.emplace_hint(out.end(), key, Json::object());
      continue;
    }
    Json sub = Json::object();
    fieldsV1Into(child, depth + 1, depth == 0 && name == "metadata", with_status, sub.get_ref<Json::object_t&>());
    if (!sub.empty()) {
      out.emplace_hint(out.end(), key, std::move(sub));
    }
  }
}

Json fieldsV1Of(const Json& v, FieldPath& path, bool with_status) {
  Json out = Json::object();
  if (v.is_object()) {
    fieldsV1Into(v, path.size(), path.size() == 1 && path[0] == "metadata", with_status,
                 out.get_ref<Json::object_t&>());
  }
  return out;
}

bool setsManagedFields(const Json& old_obj, const Json& updated, const std::string& subresource) {
  if (!subresource.empty()) {
    return false;
  }
  const Json* given = valueAt(updated, {"metadata", "managedFields"});
  if (given == nullptr || !given->is_array() || given->empty()) {
    return false;  // absent or emptied: the stored ones stay (clients that do not know them)
  }
  // Entries that do not decode leave the stored ones in place (kube-apiserver falls back to the
  // live object's the same way).
  auto optionalString = [](const Json& e, const char* key) { return !e.contains(key) || e[key].is_string(); };
  for (const auto& e : *given) {
    if (!e.is_object() || !e.contains("manager") || !e["manager"].is_string() || !optionalString(e, "operation") ||
        (e.contains("operation") && e["operation"] != "Apply" && e["operation"] != "Update") ||
        !optionalString(e, "subresource") || !optionalString(e, "time") || !optionalString(e, "apiVersion") ||
        !optionalString(e, "fieldsType") || (e.contains("fieldsV1") && !e["fieldsV1"].is_object())) {
      return false;
    }
  }
  const Json* stored = valueAt(old_obj, {"metadata", "managedFields"});
  return stored == nullptr || *stored != *given;
}

void recordUpdate(const Json* old_obj, Json& updated, const std::string& manager, const std::string& subresource,
                  const std::string& now) {
  bool with_status = subresource == "status";
  if (old_obj == nullptr && valueAt(updated, {"metadata", "managedFields"}) == nullptr) {
    // A new object: every field it has belongs to its creator (the common case, done in one walk).
    FieldPath path;
    Json fields = updated.is_object() ? fieldsV1Of(updated, path, with_status) : Json::object();
    if (!fields.empty()) {
      Json e = Json::object();  // (key by key: an initializer list copies every value once more)
      e["manager"] = manager.empty() ? "unknown" : manager;
      e["operation"] = "Update";
      e["apiVersion"] = updated.value("apiVersion", "");
      e["fieldsType"] = "FieldsV1";
      e["fieldsV1"] = std::move(fields);
      e["time"] = now;
      if (!subresource.empty()) {
        e["subresource"] = subresource;
      }
      updated["metadata"]["managedFields"] = Json::array({std::move(e)});
    }
    return;
  }
  std::vector<Entry> entries = old_obj != nullptr && !setsManagedFields(*old_obj, updated, subresource)
                                   ? readEntries(*old_obj)
                                   : readEntries(updated);
  // A write through the status subresource changes nothing but status (the API keeps the rest
  // as it was): only that subtree is walked, and only its fields can change hands.
  bool status_only = with_status && old_obj != nullptr;
  FieldSet new_fields;
  if (status_only) {
    if (auto st = updated.find("status"); st != updated.end()) {
      FieldPath path{"status"};
      collect(*st, path, new_fields, true);
    }
  } else {
    new_fields = leafFields(updated, true);
  }
  auto outside = [status_only](const FieldPath& p) { return status_only && (p.empty() || p[0] != "status"); };
  FieldSet changed;
  for (const auto& p : new_fields) {
    if (!with_status && !p.empty() && p[0] == "status") {
      continue;
    }
    const Json* before = old_obj != nullptr ? valueAt(*old_obj, p) : nullptr;
    if (before == nullptr || *before != *valueAt(updated, p)) {
      changed.insert(p);
    }
  }
  for (auto& e : entries) {
    for (auto it = e.fields.begin(); it != e.fields.end();) {
      if (!outside(*it) && (changed.count(*it) > 0 || new_fields.count(*it) == 0)) {
        it = e.fields.erase(it);
      } else {
        ++it;
      }
    }
  }
  if (!changed.empty()) {
    Entry& mine = entryFor(entries, manager.empty() ? "unknown" : manager, "Update", subresource);
    mine.fields.insert(changed.begin(), changed.end());
    mine.time = now;
  }
  writeEntries(updated, entries, updated.value("apiVersion", ""));
}

void recordNewStatus(Json& obj, const std::string& manager, const std::string& now) {
  auto st = obj.find("status");
  if (st == obj.end() || !st->is_object() || st->empty()) {
    return;
  }
  FieldPath path{"status"};
  // (Built key by key: nlohmann's initializer lists copy every value once more.)
  Json e = Json::object();
  e["manager"] = manager;
  e["operation"] = "Update";
  e["apiVersion"] = obj.value("apiVersion", "");
  e["fieldsType"] = "FieldsV1";
  e["fieldsV1"]["f:status"] = fieldsV1Of(*st, path, true);
  e["time"] = now;
  e["subresource"] = "status";
  Json& entries = obj["metadata"]["managedFields"];
  if (!entries.is_array()) {
    entries = Json::array();
  }
  entries.push_back(std::move(e));
}

std::vector<FieldConflict> applyConfig(const Json* live, const Json& applied, const std::string& manager, bool force,
                                       const std::string& subresource, const std::string& now, Json& result) {
  bool with_status = subresource == "status";
  FieldSet applied_fields = leafFields(applied, with_status);
  if (with_status) {
    for (auto it = applied_fields.begin(); it != applied_fields.end();) {
      it = (!it->empty() && (*it)[0] == "status") ? std::next(it) : applied_fields.erase(it);
    }
  }
  std::vector<Entry> entries = live != nullptr ? readEntries(*live) : std::vector<Entry>{};
  std::vector<FieldConflict> conflicts;
  std::set<std::pair<size_t, FieldPath>> taken;
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    if (e.manager == manager && e.operation == "Apply") {
      continue;
    }
    for (const auto& p : applied_fields) {
      if (e.fields.count(p) == 0) {
        continue;
      }
      const Json* cur = live != nullptr ? valueAt(*live, p) : nullptr;
      const Json* want = valueAt(applied, p);
      if (cur == nullptr || want == nullptr || *cur != *want) {
        conflicts.push_back({e.manager, p});
        taken.insert({i, p});
      }
    }
  }
  if (!conflicts.empty() && !force) {
    return conflicts;
  }
  result = live != nullptr ? *live : Json::object();
  Entry* mine_ptr = nullptr;
  for (auto& e : entries) {
    if (e.manager == manager && e.operation == "Apply" && e.subresource == subresource) {
      mine_ptr = &e;
    }
  }
  if (mine_ptr != nullptr) {
    // Fields this manager applied before and no longer applies go, unless someone else owns them.
    for (const auto& p : mine_ptr->fields) {
      if (applied_fields.count(p) > 0) {
        continue;
      }
      bool shared = false;
      for (const auto& e : entries) {
        if (&e != mine_ptr && e.fields.count(p) > 0) {
          shared = true;
        }
      }
      if (!shared) {
        removeField(result, p);
      }
    }
  }
  Json to_merge = applied;
  if (with_status) {
    to_merge = Json::object();
    if (applied.contains("status")) {
      to_merge["status"] = applied["status"];
    }
  } else {
    to_merge.erase("status");
  }
  deepMerge(result, to_merge);
  for (const auto& [i, p] : taken) {
    entries[i].fields.erase(p);
  }
  Entry& mine = entryFor(entries, manager, "Apply", subresource);
  mine.fields = applied_fields;
  mine.time = now;
  writeEntries(result, entries, applied.value("apiVersion", result.value("apiVersion", "")));
  return conflicts;
}

}  // namespace kflex::hub
