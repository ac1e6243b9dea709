// SPDX-License-Identifier: Apache-2.0
#include "hub/api/control_plane_secrets.hpp"

#include "shared/common/log.hpp"
#include "shared/common/util.hpp"
#include "shared/model/resource.hpp"
#include "shared/tls/pki.hpp"

namespace kflex::hub {
namespace {

const std::string kControlPlanes = std::string(model::kTenancyGroup) + "/controlplanes";
constexpr const char* kNamespaceSuffix = "-system";

struct Stored {
  std::string cp;
  std::string secret_name;
  std::string uid;
  std::string created;
  int64_t revision = 0;
  Json data;  // key -> sealed
};

// The stored secret of control plane `cp`, if the control plane still exists with that uid.
std::optional<Stored> lookup(const ObjectStore& store, const std::string& cp) {
  auto rec = store.get(kCredentialsResource, cp);
  auto owner = store.get(kControlPlanes, cp);
  if (!rec || !owner) {
    return std::nullopt;
  }
  Json j = Json::parse(rec->bytes, nullptr, false);
  Json o = Json::parse(owner->bytes, nullptr, false);
  if (!j.is_object() || !o.is_object() ||
      j.value("controlPlaneUID", "") != o["metadata"].value("uid", std::string("-"))) {
    return std::nullopt;
  }
  return Stored{cp, j.value("secretName", ""), j["metadata"].value("uid", ""),
                j["metadata"].value("creationTimestamp", ""), rec->revision, j.value("data", Json::object())};
}

bool wantsTable(const ApiRequest& req) { return req.accept.find("as=Table") != std::string::npos; }

Json tableOf(const std::vector<Json>& cols, const std::vector<std::pair<Json, Json>>& rows, int64_t revision) {
  Json t = {{"kind", "Table"}, {"apiVersion", "meta.k8s.io/v1"},
            {"metadata", {{"resourceVersion", std::to_string(revision)}}}, {"columnDefinitions", cols},
            {"rows", Json::array()}};
  for (const auto& [cells, object] : rows) {
    t["rows"].push_back({{"cells", cells}, {"object", object}});
  }
  return t;
}

ApiResponse json(const Json& body) {
  ApiResponse r;
  r.body = body.dump();
  return r;
}

std::string age(const std::string& created, TimePoint now) {
  auto t = parseTime(created);
  return t ? humanDuration(std::chrono::duration_cast<std::chrono::seconds>(now - *t)) : "<unknown>";
}

}  // namespace

bool ControlPlaneSecrets::validSecret(const std::string& secret_name, const std::map<std::string, std::string>& data) {
  std::string key;
  std::string in_cluster;
  if (secret_name == "admin-kubeconfig") {
    key = "kubeconfig";
    in_cluster = "kubeconfig-incluster";
  } else if (secret_name == "k3s-config" || secret_name == "vc-vcluster") {
    key = "config";
    in_cluster = "config-incluster";
  } else {
    return false;
  }
  for (const auto& [k, v] : data) {
    if ((k != key && k != in_cluster) || v.empty() || v.size() > 64 * 1024) {
      return false;
    }
  }
  return data.count(in_cluster) == 1;
}

net::awaitable<Result<void>> ControlPlaneSecrets::put(std::string cp, std::string uid, std::string secret_name,
                                                      std::map<std::string, std::string> data) {
  std::string digest = tls::sha256Hex(secret_name + "\n" + uid + "\n" + Json(data).dump());
  if (auto cur = store_.get(kCredentialsResource, cp)) {
    Json j = Json::parse(cur->bytes, nullptr, false);
    if (j.is_object() && j.value("digest", "") == digest) {
      co_return Result<void>{};
    }
  }
  Json sealed = Json::object();
  for (const auto& [k, v] : data) {
    auto s = box_.seal(v);
    if (!s) {
      co_return s.error();
    }
    sealed[k] = s.value();
  }
  Json obj = {{"apiVersion", "kflex.internal/v1"},
              {"kind", "ControlPlaneCredential"},
              {"metadata", {{"name", cp}, {"uid", newUuid()}, {"creationTimestamp", formatTime(clock_.now())}}},
              {"controlPlaneUID", uid},
              {"secretName", secret_name},
              {"digest", digest},
              {"data", sealed}};
  // (A named mutation: GCC 12 destroys a lambda temporary that captures by value twice when it
  // is built inside a co_await expression.)
  Mutation mutation = [obj = std::move(obj)](const ObjectRecord*, int64_t) {
    Decision d;
    d.kind = Decision::Kind::Put;
    d.object = obj;
    return d;
  };
  auto result = co_await store_.write(kCredentialsResource, cp, std::move(mutation), net::use_awaitable);
  if (result.decision.kind == Decision::Kind::Fail) {
    co_return fail("cannot store the kubeconfig of " + cp + ": " + result.decision.message);
  }
  co_return Result<void>{};
}

net::awaitable<void> ControlPlaneSecrets::remove(std::string cp) {
  if (!store_.get(kCredentialsResource, cp)) {
    co_return;
  }
  Mutation mutation = [](const ObjectRecord* cur, int64_t) {
    Decision d;
    d.kind = cur ? Decision::Kind::Delete : Decision::Kind::Unchanged;
    return d;
  };
  co_await store_.write(kCredentialsResource, cp, std::move(mutation), net::use_awaitable);
}

net::awaitable<ApiResponse> ControlPlaneSecrets::handle(ApiRequest req) {
  if (!req.user.authenticated()) {
    co_return statusResponse(401, "Unauthorized",
                             req.auth_error.empty() ? "Unauthorized" : "Unauthorized: " + req.auth_error);
  }
  // /api/v1/namespaces[/NS[/secrets[/NAME]]] or /api/v1/secrets
  auto parts = split(req.path, '/');
  parts.erase(parts.begin(), parts.begin() + std::min<size_t>(3, parts.size()));  // "", "api", "v1"
  if (!parts.empty() && parts.back().empty()) {
    parts.pop_back();
  }
  bool secrets_all = parts.size() == 1 && parts[0] == "secrets";
  bool namespaces = !parts.empty() && parts[0] == "namespaces" && parts.size() <= 4 &&
                    (parts.size() < 3 || parts[2] == "secrets");
  if (!secrets_all && !namespaces) {
    co_return statusResponse(404, "NotFound",
                             "the server could not find the requested resource (the hub serves only namespaces and "
                             "secrets of core v1)");
  }
  std::string resource = secrets_all || parts.size() >= 3 ? "secrets" : "namespaces";
  if (req.method != http::verb::get) {
    co_return statusResponse(405, "MethodNotAllowed",
                             resource + " are read-only on the hub: they hold what the control planes' agents report");
  }
  if (!req.user.isAdmin()) {
    co_return statusResponse(403, "Forbidden",
                             resource + " is forbidden: User \"" + req.user.name + "\" cannot get resource \"" +
                                 resource + "\" in API group \"\": only members of system:masters may");
  }
  auto now = clock_.now();
  auto [cps, revision] = store_.list(kControlPlanes);
  // The control plane a namespace belongs to ("" when it is not one of ours).
  auto owner = [&](const std::string& ns) -> std::string {
    if (ns.size() <= std::string(kNamespaceSuffix).size() ||
        ns.compare(ns.size() - std::string(kNamespaceSuffix).size(), std::string::npos, kNamespaceSuffix) != 0) {
      return "";
    }
    std::string cp = ns.substr(0, ns.size() - std::string(kNamespaceSuffix).size());
    return store_.get(kControlPlanes, cp) ? cp : "";
  };
  auto notFound = [](const std::string& what, const std::string& name) {
    return statusResponse(404, "NotFound", what + " \"" + name + "\" not found",
                          Json{{"name", name}, {"kind", what}});
  };
  auto namespaceObject = [&](const ObjectPtr& cp_rec) {
    Json cp = Json::parse(cp_rec->bytes, nullptr, false);
    std::string created = cp["metadata"].value("creationTimestamp", "");
    return Json{{"apiVersion", "v1"},
                {"kind", "Namespace"},
                {"metadata",
                 {{"name", cp_rec->name + kNamespaceSuffix},
                  {"creationTimestamp", created},
                  {"resourceVersion", std::to_string(cp_rec->revision)},
                  {"labels", {{"kubernetes.io/metadata.name", cp_rec->name + kNamespaceSuffix},
                              {"kflex.kubestellar.org/cphash", cp_rec->name}}}}},
                {"spec", {{"finalizers", Json::array({"kubernetes"})}}},
                {"status", {{"phase", "Active"}}}};
  };
  auto secretObject = [&](const Stored& s) -> std::optional<Json> {
    Json data = Json::object();
    for (const auto& [k, v] : s.data.items()) {
      auto plain = box_.open(v.get<std::string>());
      if (!plain) {
        log::error("cannot open a stored kubeconfig", {{"controlPlane", s.cp}, {"error", plain.error().message}});
        return std::nullopt;
      }
      data[k] = base64Encode(plain.value());
    }
    return Json{{"apiVersion", "v1"},
                {"kind", "Secret"},
                {"metadata",
                 {{"name", s.secret_name},
                  {"namespace", s.cp + kNamespaceSuffix},
                  {"uid", s.uid},
                  {"creationTimestamp", s.created},
                  {"resourceVersion", std::to_string(s.revision)}}},
                {"type", "Opaque"},
                {"data", data}};
  };

  if (resource == "namespaces") {
    if (parts.size() == 2) {
      std::string cp = owner(parts[1]);
      if (cp.empty()) {
        co_return notFound("namespaces", parts[1]);
      }
      co_return json(namespaceObject(store_.get(kControlPlanes, cp)));
    }
    std::vector<Json> items;
    for (const auto& rec : cps) {
      items.push_back(namespaceObject(rec));
    }
    if (wantsTable(req)) {
      std::vector<std::pair<Json, Json>> rows;
      for (const auto& n : items) {
        rows.push_back({Json::array({n["metadata"]["name"], "Active", age(n["metadata"].value("creationTimestamp", ""), now)}),
                        {{"kind", "PartialObjectMetadata"}, {"apiVersion", "meta.k8s.io/v1"}, {"metadata", n["metadata"]}}});
      }
      co_return json(tableOf({{{"name", "Name"}, {"type", "string"}, {"format", "name"}},
                              {{"name", "Status"}, {"type", "string"}},
                              {{"name", "Age"}, {"type", "string"}}},
                             rows, revision));
    }
    co_return json({{"kind", "NamespaceList"}, {"apiVersion", "v1"},
                    {"metadata", {{"resourceVersion", std::to_string(revision)}}}, {"items", items}});
  }
  // Secrets: of one namespace, or of all.
  std::vector<std::string> owners;
  if (secrets_all) {
    for (const auto& rec : cps) {
      owners.push_back(rec->name);
    }
  } else {
    std::string cp = owner(parts[1]);
    if (cp.empty() && parts.size() == 4) {
      co_return notFound("secrets", parts[3]);
    }
    if (!cp.empty()) {
      owners.push_back(cp);
    }
  }
  std::vector<Json> items;
  for (const auto& cp : owners) {
    auto s = lookup(store_, cp);
    if (!s || (parts.size() == 4 && s->secret_name != parts[3])) {
      continue;
    }
    auto obj = secretObject(*s);
    if (!obj) {
      co_return statusResponse(500, "InternalError",
                               "the stored kubeconfig of " + cp + " cannot be decrypted with this hub's key");
    }
    items.push_back(std::move(*obj));
  }
  if (parts.size() == 4) {
    if (items.empty()) {
      co_return notFound("secrets", parts[3]);
    }
    co_return json(items.front());
  }
  if (wantsTable(req)) {
    std::vector<std::pair<Json, Json>> rows;
    for (const auto& s : items) {
      rows.push_back({Json::array({s["metadata"]["name"], "Opaque", s["data"].size(),
                                   age(s["metadata"].value("creationTimestamp", ""), now)}),
                      {{"kind", "PartialObjectMetadata"}, {"apiVersion", "meta.k8s.io/v1"}, {"metadata", s["metadata"]}}});
    }
    co_return json(tableOf({{{"name", "Name"}, {"type", "string"}, {"format", "name"}},
                            {{"name", "Type"}, {"type", "string"}},
                            {{"name", "Data"}, {"type", "integer"}},
                            {{"name", "Age"}, {"type", "string"}}},
                           rows, revision));
  }
  co_return json({{"kind", "SecretList"}, {"apiVersion", "v1"},
                  {"metadata", {{"resourceVersion", std::to_string(revision)}}}, {"items", items}});
}

}  // namespace kflex::hub
