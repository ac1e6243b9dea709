// SPDX-License-Identifier: Apache-2.0
#include "hub/api/control_plane_secrets.hpp"

#include "hub/api/errors.hpp"
#include "shared/common/log.hpp"
#include "shared/common/util.hpp"
#include "shared/common/json_decode.hpp"
#include "shared/config/kubeconfig.hpp"
#include "shared/config/yaml_json.hpp"
#include "shared/model/control_plane_types.hpp"
#include "shared/model/resource.hpp"
#include "shared/protocol/tunnel.hpp"
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

// Deletes the record if it is there (nothing to do otherwise).
Mutation deleteIfPresent() {
  return [](const ObjectRecord* cur, int64_t) {
    Decision d;
    d.kind = cur ? Decision::Kind::Delete : Decision::Kind::Unchanged;
    return d;
  };
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
  Mutation mutation = [obj = std::move(obj)](const ObjectRecord* cur, int64_t) {
    Decision d;
    d.kind = Decision::Kind::Put;
    d.object = obj;
    // The tunnel token of the served kubeconfig stays with the control plane it was made for.
    Json was = cur != nullptr ? Json::parse(cur->bytes, nullptr, false) : Json();
    if (was.is_object() && was.value("controlPlaneUID", "") == obj.value("controlPlaneUID", "") &&
        was.contains("tunnelToken")) {
      d.object["tunnelToken"] = was["tunnelToken"];
    }
    return d;
  };
  auto result = co_await store_.write(kCredentialsResource, cp, std::move(mutation), net::use_awaitable);
  if (result.decision.kind == Decision::Kind::Fail) {
    co_return fail("cannot store the kubeconfig of " + cp + ": " + result.decision.message);
  }
  // The tunnel token of its served kubeconfig, made now rather than at a first read.
  auto owner = store_.get(kControlPlanes, cp);
  Json owner_obj = owner ? Json::parse(owner->bytes, nullptr, false) : Json();
  if (route_.api != nullptr && owner_obj.is_object() && route_.reaches(owner_obj)) {
    co_await secretToken(cp, true);
  }
  co_return Result<void>{};
}

net::awaitable<void> ControlPlaneSecrets::remove(std::string cp) {
  auto rec = store_.get(kCredentialsResource, cp);
  if (!rec) {
    co_return;
  }
  Json j = Json::parse(rec->bytes, nullptr, false);
  Mutation mutation = deleteIfPresent();
  co_await store_.write(kCredentialsResource, cp, std::move(mutation), net::use_awaitable);
  auto token = j.is_object() && j.value("tunnelToken", Json()).is_string()
                   ? box_.open(j["tunnelToken"].get<std::string>())
                   : Result<std::string>(fail("none"));
  if (token && route_.api != nullptr) {
    std::string id = token->substr(0, token->find('.'));
    if (auto r = co_await route_.api->remove(*route_.tokens, "", id); r || r.error().code == Errc::NotFound) {
      log::info("a deleted control plane's tunnel token was deleted with it", {{"controlPlane", cp}, {"token", id}});
    }
  }
}

net::awaitable<std::string> ControlPlaneSecrets::secretToken(std::string cp, bool make) {
  auto rec = store_.get(kCredentialsResource, cp);
  Json j = rec ? Json::parse(rec->bytes, nullptr, false) : Json();
  if (!j.is_object()) {
    co_return "";
  }
  const std::string seen = j.value("tunnelToken", Json()).is_string() ? j["tunnelToken"].get<std::string>() : "";
  if (!seen.empty()) {
    if (auto token = box_.open(seen); token && route_.token_valid(token.value(), cp)) {
      co_return token.value();
    }
  }
  if (!make) {
    co_return "";
  }
  // None yet, or revoked (kflex token delete): a new one, for this control plane only.
  const std::string id = tls::randomAlnum(6);
  const std::string token = id + "." + tls::randomAlnum(16);
  Json obj = {{"apiVersion", std::string(model::kTenancyGroup) + "/" + model::kTenancyVersion},
              {"kind", "BootstrapToken"},
              {"metadata", {{"name", id}}},
              {"spec",
               {{"usages", {"tunnel"}},
                {"controlPlanes", {cp}},
                {"secret", token.substr(7)},
                {"description", "the kubeconfig secret of control plane " + cp + " (made by the hub)"}}}};
  auto created = co_await route_.api->create(*route_.tokens, std::move(obj));
  auto sealed = created ? box_.seal(token) : Result<std::string>(created.error());
  if (!sealed) {
    log::warn("cannot make the tunnel token of a control plane's kubeconfig secret; it is served direct",
              {{"controlPlane", cp}, {"error", sealed.error().message}});
    co_return "";
  }
  const std::string uid = j.value("controlPlaneUID", "");
  auto raced = std::make_shared<bool>(false);
  Mutation mutation = [uid, seen, sealed = sealed.value(), raced](const ObjectRecord* cur, int64_t) {
    Decision d;
    Json now = cur != nullptr ? Json::parse(cur->bytes, nullptr, false) : Json();
    if (!now.is_object() || now.value("controlPlaneUID", "") != uid ||
        (now.value("tunnelToken", Json()).is_string() ? now["tunnelToken"].get<std::string>() : "") != seen) {
      *raced = true;  // another request made one meanwhile, or the control plane went
      d.kind = Decision::Kind::Unchanged;
      return d;
    }
    now["tunnelToken"] = sealed;
    d.kind = Decision::Kind::Put;
    d.object = std::move(now);
    return d;
  };
  auto result = co_await store_.write(kCredentialsResource, cp, std::move(mutation), net::use_awaitable);
  if (*raced || result.decision.kind == Decision::Kind::Fail) {
    co_await route_.api->remove(*route_.tokens, "", id);
    if (*raced) {
      co_return co_await secretToken(cp, make);
    }
    co_return "";
  }
  log::info("made the tunnel token of a control plane's kubeconfig secret", {{"controlPlane", cp}, {"token", id}});
  co_return token;
}

net::awaitable<std::map<std::string, std::string>> ControlPlaneSecrets::served(std::string cp,
                                                                               std::map<std::string, std::string> data,
                                                                               bool make) {
  const std::string key = data.count("kubeconfig") ? "kubeconfig" : data.count("config") ? "config" : "";
  auto owner = store_.get(kControlPlanes, cp);
  Json obj = owner ? Json::parse(owner->bytes, nullptr, false) : Json();
  if (route_.api == nullptr || key.empty() || !obj.is_object() || !route_.reaches(obj)) {
    co_return data;
  }
  auto kc = config::Kubeconfig::parse(data[key], "the kubeconfig of " + cp);
  if (auto own = kc ? kc->access() : Result<config::ClusterAccess>(kc.error()); !own || own->ca_pem.empty()) {
    co_return data;  // (without a CA of its own, kubectl could not trust the hub's beside it)
  }
  std::string token = co_await secretToken(cp, make);
  if (token.empty()) {
    co_return data;
  }
  // An adopted cluster keeps its server (its certificate names that); the others are reached by
  // their tunnel name.
  const bool adopted = model::isAdopted(obj["spec"].value("type", ""));
  if (auto r = kc->routeThroughHub(kc->currentContext(), adopted ? "" : protocol::tunnel::tunnelHost(cp),
                                   route_.hub_url, token, route_.hub_ca_pem);
      !r) {
    co_return data;
  }
  data[key + "-direct"] = data[key];
  data[key] = kc->toYaml();
  co_return data;
}

std::optional<std::map<std::string, std::string>> ControlPlaneSecrets::get(const std::string& cp,
                                                                          const std::string& uid) const {
  auto s = lookup(store_, cp);
  if (!s) {
    return std::nullopt;
  }
  auto owner = store_.get(kControlPlanes, cp);
  Json o = owner ? Json::parse(owner->bytes, nullptr, false) : Json();
  if (!o.is_object() || o["metadata"].value("uid", "") != uid) {
    return std::nullopt;
  }
  return openAll(s->data, "the kubeconfig of " + cp);
}

std::optional<std::map<std::string, std::string>> ControlPlaneSecrets::openAll(const Json& sealed,
                                                                              const std::string& what) const {
  std::map<std::string, std::string> out;
  if (!sealed.is_object()) {
    return out;
  }
  for (const auto& [k, v] : sealed.items()) {
    auto plain = v.is_string() ? box_.open(v.get<std::string>()) : Result<std::string>(fail("not sealed"));
    if (!plain) {
      log::error("cannot open a sealed secret", {{"secret", what}, {"error", plain.error().message}});
      return std::nullopt;
    }
    out[k] = plain.value();
  }
  return out;
}

std::optional<std::map<std::string, std::string>> ControlPlaneSecrets::bootstrap(const std::string& name) const {
  auto rec = store_.get(kBootstrapResource, name);
  Json j = rec ? Json::parse(rec->bytes, nullptr, false) : Json();
  if (!j.is_object()) {
    return std::nullopt;
  }
  return openAll(j.value("sealed", Json::object()), "bootstrap secret " + name);
}

net::awaitable<void> ControlPlaneSecrets::removeBootstrap(std::string name) {
  Mutation mutation = deleteIfPresent();
  co_await store_.write(kBootstrapResource, name, std::move(mutation), net::use_awaitable);
}

std::optional<Json> ControlPlaneSecrets::bootstrapObject(const ObjectPtr& rec) const {
  Json j = Json::parse(rec->bytes, nullptr, false);
  auto data = bootstrap(rec->name);
  if (!j.is_object() || !data) {
    return std::nullopt;
  }
  Json encoded = Json::object();
  for (const auto& [k, v] : *data) {
    encoded[k] = base64Encode(v);
  }
  Json obj = {{"apiVersion", "v1"}, {"kind", "Secret"}, {"metadata", j["metadata"]}, {"type", j.value("type", "Opaque")},
              {"data", encoded}};
  obj["metadata"]["resourceVersion"] = std::to_string(rec->revision);
  return obj;
}

net::awaitable<ApiResponse> ControlPlaneSecrets::handleSystem(const ApiRequest& req,
                                                              const std::vector<std::string>& parts) {
  // parts: namespaces, kubeflex-system, secrets[, NAME]
  std::string name = parts.size() == 4 ? parts[3] : "";
  auto notFound = [&] {
    return statusResponse(404, "NotFound", "secrets \"" + name + "\" not found", Json{{"name", name}, {"kind", "secrets"}});
  };
  if (req.method == http::verb::get) {
    if (!name.empty()) {
      auto rec = store_.get(kBootstrapResource, name);
      auto obj = rec ? bootstrapObject(rec) : std::nullopt;
      co_return obj ? json(*obj) : notFound();
    }
    auto [all, revision] = store_.list(kBootstrapResource);
    Json items = Json::array();
    for (const auto& rec : all) {
      if (auto obj = bootstrapObject(rec)) {
        items.push_back(std::move(*obj));
      }
    }
    co_return json({{"kind", "SecretList"}, {"apiVersion", "v1"},
                    {"metadata", {{"resourceVersion", std::to_string(revision)}}}, {"items", items}});
  }
  if (req.method == http::verb::delete_ && !name.empty()) {
    if (!store_.get(kBootstrapResource, name)) {
      co_return notFound();
    }
    co_await removeBootstrap(name);
    co_return json({{"kind", "Status"}, {"apiVersion", "v1"}, {"status", "Success"},
                    {"details", {{"name", name}, {"kind", "secrets"}}}});
  }
  if (req.method != http::verb::post || !name.empty()) {
    co_return statusResponse(405, "MethodNotAllowed",
                             "secrets in " + std::string(kSystemNamespace) +
                                 " can be created, read and deleted on the hub (they hold kubeconfigs of clusters to "
                                 "adopt), not changed");
  }
  bool yaml = req.content_type.find("yaml") != std::string::npos;
  Result<Json> body = yaml ? config::yamlToJson(req.body) : decodeJson(req.body);
  if (!body || !body->is_object()) {
    co_return statusResponse(400, "BadRequest", "the body must be a Secret as a JSON or YAML object" +
                                                    (body ? std::string() : ": " + body.error().message));
  }
  Json& obj = body.value();
  auto stringOr = [&obj](const char* key, const char* dflt) {
    auto it = obj.find(key);
    return it == obj.end() ? std::string(dflt) : it->is_string() ? it->get<std::string>() : std::string("?");
  };
  if (stringOr("kind", "Secret") != "Secret" || stringOr("apiVersion", "v1") != "v1") {
    co_return statusResponse(400, "BadRequest", "the body must be a v1 Secret");
  }
  if (obj.contains("metadata") && !obj["metadata"].is_object()) {
    co_return statusResponse(400, "BadRequest", "metadata must be an object");
  }
  Json meta = obj.value("metadata", Json::object());
  name = meta.is_object() && meta.contains("name") && meta["name"].is_string() ? meta["name"].get<std::string>() : "";
  std::vector<std::string> problems;
  if (!isDns1123Subdomain(name)) {
    problems.push_back("metadata.name: Invalid value: " + dumpSafe(Json(name)) + ": must be a DNS-1123 subdomain");
  }
  if (meta.contains("namespace") && !meta["namespace"].is_null() && !meta["namespace"].is_string()) {
    co_return statusResponse(400, "BadRequest", "metadata.namespace must be a string");
  }
  if (meta.contains("namespace") && meta["namespace"].is_string() && !meta["namespace"].get<std::string>().empty() &&
      meta["namespace"].get<std::string>() != kSystemNamespace) {
    co_return statusResponse(400, "BadRequest", "the namespace of the provided object does not match the namespace "
                                                "sent on the request");
  }
  std::map<std::string, std::string> data;
  const Json given = obj.value("data", Json::object());
  const Json given_strings = obj.value("stringData", Json::object());
  if (!given.is_object() || !given_strings.is_object()) {
    co_return statusResponse(400, "BadRequest", "data and stringData must be objects");
  }
  for (const auto& [k, v] : given.items()) {
    auto decoded = v.is_string() ? base64Decode(v.get<std::string>()) : Result<std::string>(fail("not a string"));
    if (!decoded) {
      problems.push_back("data[" + k + "]: Invalid value: must be base64");
    } else {
      data[k] = decoded.value();
    }
  }
  for (const auto& [k, v] : given_strings.items()) {
    if (!v.is_string()) {
      problems.push_back("stringData[" + k + "]: Invalid value: must be a string");
    } else {
      data[k] = v.get<std::string>();
    }
  }
  size_t total = 0;
  for (const auto& [k, v] : data) {
    total += k.size() + v.size();
    if (k.empty() || k.size() > 253 || k.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != std::string::npos) {
      problems.push_back("data[" + k + "]: Invalid value: a valid config key must consist of alphanumeric characters, '-', '_' or '.'");
    }
  }
  if (total > 1024 * 1024) {
    problems.push_back("data: Too long: must have at most 1048576 bytes");
  }
  if (!problems.empty()) {
    std::string joined;
    for (const auto& p : problems) {
      joined += (joined.empty() ? "" : ", ") + p;
    }
    co_return statusResponse(422, "Invalid", "Secret \"" + name + "\" is invalid: " + joined);
  }
  Json sealed = Json::object();
  for (const auto& [k, v] : data) {
    auto box = box_.seal(v);
    if (!box) {
      co_return statusResponse(500, "InternalError", "cannot seal the secret: " + box.error().message);
    }
    sealed[k] = box.value();
  }
  Json stored = {{"apiVersion", "kflex.internal/v1"},
                 {"kind", "BootstrapSecret"},
                 {"metadata", {{"name", name}, {"namespace", kSystemNamespace}, {"uid", newUuid()},
                               {"creationTimestamp", formatTime(clock_.now())}}},
                 {"type", obj.value("type", "Opaque")},
                 {"sealed", sealed}};
  if (meta.is_object() && meta.contains("labels")) {
    stored["metadata"]["labels"] = meta["labels"];
  }
  Mutation mutation = [stored, name](const ObjectRecord* cur, int64_t) {
    Decision d;
    if (cur != nullptr) {
      d.kind = Decision::Kind::Fail;
      d.code = Errc::Conflict;
      d.reason = "AlreadyExists";
      d.message = "secrets \"" + name + "\" already exists";
      return d;
    }
    d.kind = Decision::Kind::Put;
    d.object = stored;
    return d;
  };
  auto result = co_await store_.write(kBootstrapResource, name, std::move(mutation), net::use_awaitable);
  if (result.decision.kind == Decision::Kind::Fail) {
    co_return statusResponse(httpStatus(result.decision), result.decision.reason, result.decision.message,
                             Json{{"name", name}, {"kind", "secrets"}});
  }
  auto created = bootstrapObject(result.object);
  ApiResponse r = json(created.value_or(Json::object()));
  r.status = 201;
  co_return r;
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
  if (!req.user.isAdmin()) {
    co_return statusResponse(403, "Forbidden",
                             resource + " is forbidden: User \"" + req.user.name + "\" cannot get resource \"" +
                                 resource + "\" in API group \"\": only members of system:masters may");
  }
  if (parts.size() >= 3 && parts[1] == kSystemNamespace) {
    co_return co_await handleSystem(req, parts);
  }
  if (req.method != http::verb::get) {
    co_return statusResponse(405, "MethodNotAllowed",
                             resource + " are read-only on the hub: they hold what the control planes' agents report");
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
  auto secretObject = [&](const Stored& s, const std::map<std::string, std::string>& plain) {
    Json data = Json::object();
    for (const auto& [k, v] : plain) {
      data[k] = base64Encode(v);
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

  const Json system_ns = {{"apiVersion", "v1"},
                          {"kind", "Namespace"},
                          {"metadata", {{"name", kSystemNamespace},
                                        {"labels", {{"kubernetes.io/metadata.name", kSystemNamespace}}}}},
                          {"spec", {{"finalizers", Json::array({"kubernetes"})}}},
                          {"status", {{"phase", "Active"}}}};
  if (resource == "namespaces") {
    if (parts.size() == 2 && parts[1] == kSystemNamespace) {
      co_return json(system_ns);
    }
    if (parts.size() == 2) {
      std::string cp = owner(parts[1]);
      if (cp.empty()) {
        co_return notFound("namespaces", parts[1]);
      }
      co_return json(namespaceObject(store_.get(kControlPlanes, cp)));
    }
    std::vector<Json> items = {system_ns};
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
    auto plain = openAll(s->data, "the kubeconfig of " + s->cp);
    if (!plain) {
      co_return statusResponse(500, "InternalError",
                               "the stored kubeconfig of " + cp + " cannot be decrypted with this hub's key");
    }
    // (A list never makes tokens: one request would otherwise write one per control plane.)
    auto data = co_await served(cp, std::move(*plain), parts.size() == 4);
    items.push_back(secretObject(*s, data));
  }
  if (secrets_all) {
    for (const auto& rec : store_.list(kBootstrapResource).first) {
      if (auto obj = bootstrapObject(rec)) {
        items.push_back(std::move(*obj));
      }
    }
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
