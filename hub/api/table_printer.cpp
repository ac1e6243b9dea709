// SPDX-License-Identifier: Apache-2.0
#include "hub/api/table_printer.hpp"

#include "hub/api/object_rules.hpp"
#include "shared/common/json_write.hpp"
#include "shared/common/util.hpp"

namespace kflex::hub {
namespace {

using model::ResourceType;

Json partialMetadata(const Json& obj) {
  return {{"kind", "PartialObjectMetadata"}, {"apiVersion", "meta.k8s.io/v1"}, {"metadata", metaOf(obj)}};
}

}  // namespace

bool wantsTable(const ApiRequest& req) { return req.accept.find("as=Table") != std::string::npos; }

std::string tableFor(const ApiRequest& req, const ResourceType& t, const std::vector<ObjectPtr>& objects,
                     int64_t revision, bool with_columns, TimePoint now) {
  Json table = {{"kind", "Table"}, {"apiVersion", "meta.k8s.io/v1"},
                {"metadata", {{"resourceVersion", std::to_string(revision)}}}};
  if (with_columns) {
    Json cols = Json::array({{{"name", "Name"}, {"type", "string"}, {"format", "name"},
                              {"description", "Name must be unique. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"},
                              {"priority", 0}}});
    for (const auto& c : t.columns) {
      cols.push_back({{"name", c.name}, {"type", c.type}, {"format", ""}, {"description", c.description},
                      {"priority", c.priority}});
    }
    table["columnDefinitions"] = cols;
  } else {
    table["columnDefinitions"] = nullptr;
  }
  std::string include = "Metadata";
  if (auto it = req.query.find("includeObject"); it != req.query.end()) {
    include = it->second;
  }
  Json rows = Json::array();
  for (const auto& rec : objects) {
    Json obj = parseObject(*rec);
    Json cells = Json::array({rec->name});
    for (const auto& c : t.columns) {
      Json v = model::evalJsonPath(obj, c.json_path);
      if (c.type == "date" && v.is_string()) {
        auto tp = parseTime(v.get<std::string>());
        v = tp ? humanDuration(std::chrono::duration_cast<std::chrono::seconds>(now - *tp)) : "<invalid>";
      }
      cells.push_back(v);
    }
    Json row = {{"cells", cells}};
    if (include == "Object") {
      row["object"] = obj;
    } else if (include != "None") {
      row["object"] = partialMetadata(obj);
    }
    rows.push_back(std::move(row));
  }
  table["rows"] = rows;
  return dumpJson(table);
}

}  // namespace kflex::hub
