// SPDX-License-Identifier: Apache-2.0
#include "hub/api/discovery.hpp"

#include "hub/api/openapi_proto.hpp"

#include <algorithm>
#include <charconv>
#include <optional>

#include <openssl/sha.h>

#include "shared/common/util.hpp"

namespace kflex::hub {
namespace {

using model::Json;
constexpr const char* kObjectMetaRef = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
constexpr const char* kDiscoveryGroup = "apidiscovery.k8s.io";
constexpr const char* kDiscoveryKind = "APIGroupDiscoveryList";
constexpr const char* kAggregatedV2 =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
constexpr const char* kAggregatedV2Beta1 =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";
const std::vector<std::string> kVerbs = {"delete", "get", "list", "patch", "create", "update", "watch"};

std::string hashOf(const std::string& text) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), d);
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (int i = 0; i < 32; ++i) {
    out += kHex[d[i] >> 4];
    out += kHex[d[i] & 15];
  }
  return out;
}

std::string reverseGroup(const std::string& group) {
  auto parts = split(group, '.');
  std::reverse(parts.begin(), parts.end());
  std::string out;
  for (const auto& p : parts) {
    out += (out.empty() ? "" : ".") + p;
  }
  return out;
}

// Replaces the schema's metadata with a reference to ObjectMeta, as kube-apiserver publishes CRDs.
Json publishedSchema(const model::ResourceType& t, const std::string& ref_prefix) {
  Json s = t.schema;
  s["properties"]["metadata"] = {{"allOf", Json::array({{{"$ref", ref_prefix + kObjectMetaRef}}})},
                                 {"description", "Standard object's metadata."}};
  s["x-kubernetes-group-version-kind"] = Json::array({{{"group", t.group}, {"kind", t.kind}, {"version", t.version}}});
  return s;
}

Json listSchema(const model::ResourceType& t, const std::string& ref_prefix) {
  return {{"type", "object"},
          {"description", t.list_kind + " is a list of " + t.kind},
          {"required", Json::array({"items"})},
          {"properties",
           {{"apiVersion", {{"type", "string"}}},
            {"kind", {{"type", "string"}}},
            {"metadata", {{"type", "object"}}},
            {"items", {{"type", "array"}, {"items", {{"$ref", ref_prefix + definitionName(t)}}}}}}},
          {"x-kubernetes-group-version-kind", Json::array({{{"group", t.group}, {"kind", t.list_kind}, {"version", t.version}}})}};
}

Json queryParam(const std::string& name, const std::string& type, const std::string& description, bool v3) {
  Json p = {{"name", name}, {"in", "query"}, {"description", description}, {"uniqueItems", true}};
  if (v3) {
    p["schema"] = {{"type", type}};
  } else {
    p["type"] = type;
  }
  return p;
}

Json operation(const model::ResourceType& t, const std::string& action, const std::string& ref, bool v3,
               bool with_validation) {
  Json op = {{"operationId", action + t.kind},
             {"tags", Json::array({reverseGroup(t.group) + "_" + t.version})},
             {"x-kubernetes-action", action},
             {"x-kubernetes-group-version-kind", {{"group", t.group}, {"kind", t.kind}, {"version", t.version}}},
             {"parameters", Json::array()}};
  if (with_validation) {
    op["parameters"].push_back(queryParam("dryRun", "string", "When present, indicates that modifications should not be persisted. Valid value: All", v3));
    op["parameters"].push_back(queryParam("fieldManager", "string", "Name of the actor making these changes.", v3));
    op["parameters"].push_back(queryParam("fieldValidation", "string", "Ignore, Warn or Strict: what to do with unknown fields. Default Strict.", v3));
  }
  if (v3) {
    op["responses"] = {{"200", {{"description", "OK"}, {"content", {{"application/json", {{"schema", {{"$ref", ref}}}}}}}}}};
  } else {
    op["responses"] = {{"200", {{"description", "OK"}, {"schema", {{"$ref", ref}}}}}};
  }
  return op;
}

Json pathsFor(const model::ResourceType& t, const std::string& ref_prefix, bool v3) {
  std::string base = (t.group.empty() ? "/api/" + t.version : "/apis/" + t.group + "/" + t.version) +
                     (t.namespaced ? "/namespaces/{namespace}/" : "/") + t.plural;
  std::string ref = ref_prefix + definitionName(t);
  Json name_param = {{"name", "name"}, {"in", "path"}, {"required", true}, {"description", "name of the " + t.kind}};
  if (v3) {
    name_param["schema"] = {{"type", "string"}};
  } else {
    name_param["type"] = "string";
  }
  Json paths;
  paths[base] = {{"get", operation(t, "list", ref_prefix + definitionName(t) + "List", v3, false)},
                 {"post", operation(t, "post", ref, v3, true)}};
  Json item = {{"get", operation(t, "get", ref, v3, false)},
               {"put", operation(t, "put", ref, v3, true)},
               {"patch", operation(t, "patch", ref, v3, true)},
               {"delete", operation(t, "delete", ref, v3, false)},
               {"parameters", Json::array({name_param})}};
  paths[base + "/{name}"] = item;
  if (t.has_status) {
    paths[base + "/{name}/status"] = {{"get", operation(t, "get", ref, v3, false)},
                                      {"put", operation(t, "put", ref, v3, true)},
                                      {"patch", operation(t, "patch", ref, v3, true)},
                                      {"parameters", Json::array({name_param})}};
  }
  return paths;
}

Json aggregatedResource(const model::ResourceType& t) {
  Json r = {{"resource", t.plural},
            {"responseKind", {{"group", t.group}, {"version", t.version}, {"kind", t.kind}}},
            {"scope", t.namespaced ? "Namespaced" : "Cluster"},
            {"singularResource", t.singular},
            {"verbs", kVerbs}};
  if (!t.short_names.empty()) {
    r["shortNames"] = t.short_names;
  }
  if (!t.categories.empty()) {
    r["categories"] = t.categories;
  }
  if (t.has_status) {
    r["subresources"] = Json::array({{{"subresource", "status"},
                                      {"responseKind", {{"group", t.group}, {"version", t.version}, {"kind", t.kind}}},
                                      {"verbs", Json::array({"get", "patch", "update"})}}});
  }
  return r;
}

// One clause of an Accept header.
struct AcceptClause {
  std::string type;
  std::string subtype;
  double q = 1.0;
  std::map<std::string, std::string> params;
};

// Splits an Accept header into clauses, dropping malformed ones. A q that does not parse counts as
// 0, as in the parser kube-apiserver uses.
std::vector<AcceptClause> parseAccept(std::string_view accept) {
  std::vector<AcceptClause> clauses;
  for (const auto& part : split(accept, ',')) {
    auto pieces = split(part, ';');
    auto range = split(trim(pieces[0]), '/');
    AcceptClause c;
    if (range.size() == 2) {
      c.type = trim(range[0]);
      c.subtype = trim(range[1]);
    } else if (range.size() == 1 && range[0] == "*") {
      c.type = c.subtype = "*";
    } else {
      continue;
    }
    for (size_t i = 1; i < pieces.size(); ++i) {
      auto eq = pieces[i].find('=');
      if (eq == std::string::npos) {
        continue;
      }
      std::string key(trim(std::string_view(pieces[i]).substr(0, eq)));
      std::string value(trim(std::string_view(pieces[i]).substr(eq + 1)));
      if (key == "q") {
        auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), c.q);
        if (ec != std::errc() || end != value.data() + value.size()) {
          c.q = 0;
        }
      } else {
        c.params[key] = value;
      }
    }
    clauses.push_back(std::move(c));
  }
  return clauses;
}

int specificity(const AcceptClause& c) { return c.type == "*" ? 0 : c.subtype == "*" ? 1 : 2; }

// The aggregated form a clause asks for, or nothing when it asks for none (or for a conversion
// discovery does not offer, which kube-apiserver skips just the same).
std::optional<DiscoveryForm> aggregatedFormOf(const AcceptClause& c) {
  bool json = (c.type == "application" && (c.subtype == "json" || c.subtype == "*")) ||
              (c.type == "*" && c.subtype == "*");
  if (!json) {
    return std::nullopt;
  }
  auto param = [&](const char* key) {
    auto it = c.params.find(key);
    return it == c.params.end() ? std::string() : it->second;
  };
  if (param("g") != kDiscoveryGroup || param("as") != kDiscoveryKind) {
    return std::nullopt;
  }
  // A server version pin is something discovery does not allow either.
  if (!param("sv").empty()) {
    return std::nullopt;
  }
  std::string version = param("v");
  if (version == "v2") {
    return DiscoveryForm::AggregatedV2;
  }
  if (version == "v2beta1") {
    return DiscoveryForm::AggregatedV2Beta1;
  }
  return std::nullopt;
}

// The aggregated list as apidiscovery.k8s.io/VERSION: v2beta1 and v2 have the same JSON shape.
std::string aggregatedList(const Json& items, const char* version) {
  return Json{{"kind", kDiscoveryKind},
              {"apiVersion", std::string(kDiscoveryGroup) + "/" + version},
              {"metadata", Json::object()},
              {"items", items}}
      .dump();
}

}  // namespace

DiscoveryForm negotiateDiscovery(std::string_view accept) {
  auto clauses = parseAccept(accept);
  std::stable_sort(clauses.begin(), clauses.end(),
                   [](const AcceptClause& a, const AcceptClause& b) {
                     return a.q != b.q ? a.q > b.q : specificity(a) > specificity(b);
                   });
  for (const auto& c : clauses) {
    if (auto form = aggregatedFormOf(c)) {
      return *form;
    }
  }
  return DiscoveryForm::Unaggregated;
}

const char* discoveryContentType(DiscoveryForm form) {
  switch (form) {
    case DiscoveryForm::AggregatedV2:
      return kAggregatedV2;
    case DiscoveryForm::AggregatedV2Beta1:
      return kAggregatedV2Beta1;
    case DiscoveryForm::Unaggregated:
      break;
  }
  return "application/json";
}

std::string definitionName(const model::ResourceType& t) {
  return (t.group.empty() ? std::string("io.k8s.api.core") : reverseGroup(t.group)) + "." + t.version + "." + t.kind;
}

DiscoveryDocs buildDiscovery(const model::Registry& registry, const std::string& server_version) {
  DiscoveryDocs d;
  d.api = Json{{"kind", "APIVersions"}, {"versions", Json::array({"v1"})},
               {"serverAddressByClientCIDRs", Json::array()}}.dump();
  // Core v1: the control planes' namespaces and kubeconfig secrets, read-only, and bootstrap
  // secrets in kubeflex-system (ControlPlaneSecrets).
  Json core = Json::array(
      {{{"name", "namespaces"}, {"singularName", "namespace"}, {"namespaced", false}, {"kind", "Namespace"},
        {"verbs", Json::array({"get", "list"})}, {"shortNames", Json::array({"ns"})}},
       {{"name", "secrets"}, {"singularName", "secret"}, {"namespaced", true}, {"kind", "Secret"},
        {"verbs", Json::array({"create", "delete", "get", "list"})}}});
  Json core_agg = Json::array();
  for (const auto& r : core) {
    Json a = {{"resource", r["name"]}, {"responseKind", {{"group", ""}, {"version", "v1"}, {"kind", r["kind"]}}},
              {"scope", r["namespaced"].get<bool>() ? "Namespaced" : "Cluster"}, {"singularResource", r["singularName"]},
              {"verbs", r["verbs"]}};
    if (r.contains("shortNames")) {
      a["shortNames"] = r["shortNames"];
    }
    core_agg.push_back(a);
  }
  d.groups["/api/v1"] = Json{{"kind", "APIResourceList"}, {"groupVersion", "v1"}, {"resources", core}}.dump();
  Json core_items = Json::array(
      {{{"metadata", {{"creationTimestamp", nullptr}}},
        {"versions",
         Json::array({{{"version", "v1"}, {"resources", core_agg}, {"freshness", "Current"}}})}}});

  Json groups = Json::array();
  Json agg_items = Json::array();
  Json v2 = {{"swagger", "2.0"},
             {"info", {{"title", "kflex-hub"}, {"version", server_version}}},
             {"paths", Json::object()},
             {"definitions", Json::object()}};
  v2["definitions"][kObjectMetaRef] = model::objectMetaSchema();
  Json v3_root = {{"paths", Json::object()}};

  for (const auto& group : registry.groups()) {
    // One version per group today; kinds of the group share it.
    std::string version;
    Json resources = Json::array();
    Json agg_resources = Json::array();
    Json v3 = {{"openapi", "3.0.0"},
               {"info", {{"title", "kflex-hub"}, {"version", server_version}}},
               {"paths", Json::object()},
               {"components", {{"schemas", Json::object()}}}};
    v3["components"]["schemas"][kObjectMetaRef] = model::objectMetaSchema();
    for (const auto& t : registry.all()) {
      if (t->group != group) {
        continue;
      }
      version = t->version;
      Json res = {{"name", t->plural}, {"singularName", t->singular}, {"namespaced", t->namespaced},
                  {"kind", t->kind}, {"verbs", kVerbs},
                  {"storageVersionHash", base64Encode(hashOf(t->apiVersion() + t->kind)).substr(0, 11)}};
      if (!t->short_names.empty()) {
        res["shortNames"] = t->short_names;
      }
      if (!t->categories.empty()) {
        res["categories"] = t->categories;
      }
      resources.push_back(res);
      if (t->has_status) {
        resources.push_back({{"name", t->plural + "/status"}, {"singularName", ""}, {"namespaced", t->namespaced},
                             {"kind", t->kind}, {"verbs", Json::array({"get", "patch", "update"})}});
      }
      agg_resources.push_back(aggregatedResource(*t));
      v2["definitions"][definitionName(*t)] = publishedSchema(*t, "#/definitions/");
      v2["definitions"][definitionName(*t) + "List"] = listSchema(*t, "#/definitions/");
      v2["paths"].update(pathsFor(*t, "#/definitions/", false));
      v3["components"]["schemas"][definitionName(*t)] = publishedSchema(*t, "#/components/schemas/");
      v3["components"]["schemas"][definitionName(*t) + "List"] = listSchema(*t, "#/components/schemas/");
      v3["paths"].update(pathsFor(*t, "#/components/schemas/", true));
    }
    if (group.empty()) {
      // The core group is served under /api/VERSION, not listed among the /apis groups.
      d.groups["/api/" + version] = Json{{"kind", "APIResourceList"}, {"groupVersion", version},
                                         {"resources", resources}}.dump();
      core_items = Json::array({{{"metadata", {{"creationTimestamp", nullptr}}},
                                 {"versions", Json::array({{{"version", version},
                                                            {"resources", agg_resources},
                                                            {"freshness", "Current"}}})}}});
      std::string doc = v3.dump();
      d.openapi_v3["api/" + version] = doc;
      v3_root["paths"]["api/" + version] = {{"serverRelativeURL", "/openapi/v3/api/" + version + "?hash=" + hashOf(doc)}};
      continue;
    }
    std::string gv = group + "/" + version;
    Json gv_entry = {{"groupVersion", gv}, {"version", version}};
    Json api_group = {{"name", group}, {"versions", Json::array({gv_entry})}, {"preferredVersion", gv_entry}};
    groups.push_back(api_group);
    Json g = api_group;
    g["kind"] = "APIGroup";
    g["apiVersion"] = "v1";
    d.groups["/apis/" + group] = g.dump();
    d.versions["/apis/" + gv] = Json{{"kind", "APIResourceList"}, {"apiVersion", "v1"}, {"groupVersion", gv},
                                     {"resources", resources}}.dump();
    agg_items.push_back({{"metadata", {{"name", group}, {"creationTimestamp", nullptr}}},
                         {"versions", Json::array({{{"version", version}, {"resources", agg_resources},
                                                    {"freshness", "Current"}}})}});
    std::string doc = v3.dump();
    d.openapi_v3["apis/" + gv] = doc;
    v3_root["paths"]["apis/" + gv] = {{"serverRelativeURL", "/openapi/v3/apis/" + gv + "?hash=" + hashOf(doc)}};
  }
  d.apis = Json{{"kind", "APIGroupList"}, {"apiVersion", "v1"}, {"groups", groups}}.dump();
  d.aggregated_api = aggregatedList(core_items, "v2");
  d.aggregated_apis = aggregatedList(agg_items, "v2");
  d.aggregated_api_v2beta1 = aggregatedList(core_items, "v2beta1");
  d.aggregated_apis_v2beta1 = aggregatedList(agg_items, "v2beta1");
  d.openapi_v2 = v2.dump();
  d.openapi_v2_protobuf = openApiV2Protobuf(v2);
  d.openapi_v3_root = v3_root.dump();
  return d;
}

}  // namespace kflex::hub
