// SPDX-License-Identifier: Apache-2.0
#include "hub/api/api_service.hpp"

#include <algorithm>
#include <cctype>
#include <optional>
#include <variant>

#include "hub/api/errors.hpp"
#include "hub/api/managed_fields.hpp"
#include "hub/api/object_rules.hpp"
#include "hub/api/openapi_proto.hpp"
#include "hub/api/patch.hpp"
#include "hub/api/request_codec.hpp"
#include "hub/api/table_printer.hpp"
#include "hub/api/watch_stream.hpp"
#include "shared/common/json_decode.hpp"
#include "shared/common/json_pluck.hpp"
#include "shared/common/json_write.hpp"
#include "shared/common/log.hpp"
#include "shared/common/util.hpp"
#include "shared/common/version.hpp"
#include "shared/config/yaml_json.hpp"
#include "shared/model/selector.hpp"

namespace kflex::hub {
namespace {

using model::ResourceType;

constexpr const char* kJson = "application/json";

}  // namespace

ApiService::ApiService(ObjectStore& store, const model::Registry& registry, const Clock& clock, ApiOptions options)
    : store_(store), registry_(registry), clock_(clock), options_(std::move(options)),
      docs_(buildDiscovery(registry, options_.server_version)) {}

namespace {
// A request made by the hub itself: user system:kflex-hub in group system:masters.
ApiRequest hubRequest(const ResourceType& t, const std::string& ns) {
  ApiRequest req;
  req.ns = t.namespaced ? ns : "";
  req.user_agent = kHubFieldManager;
  req.user.name = "system:kflex-hub";
  req.user.groups = {"system:masters", "system:authenticated"};
  return req;
}

// The response of a write: its Status when it failed, else the object (201 for a stored create
// when `created_status` says so).
ApiResponse written(const WriteResult& result, unsigned created_status) {
  const Decision& d = result.decision;
  if (d.kind == Decision::Kind::Fail) {
    return fromDecision(d);
  }
  ApiResponse r;
  r.status = d.kind == Decision::Kind::Put && created_status != 0 ? created_status : 200;
  r.body = result.object ? result.object->bytes : "{}";
  addWarnings(r, d.warnings);
  return r;
}

// What a write is to an ApiClient caller: the error, or the object as stored.
Result<Json> writtenObject(const WriteResult& result) {
  if (result.decision.kind == Decision::Kind::Fail) {
    return toError(result.decision);
  }
  return result.object ? parseObject(*result.object) : Json::object();
}

// The namespace of an object of kind `t` as given in its metadata.
std::string namespaceOf(const ResourceType& t, const Json& object) {
  if (!t.namespaced || !object.is_object()) {
    return "";
  }
  const Json& meta = metaOf(object);
  auto ns = meta.find("namespace");
  return ns != meta.end() && ns->is_string() ? ns->get<std::string>() : "";
}

std::string nameOf(const Json& object) {
  const Json& meta = metaOf(object);
  auto name = meta.find("name");
  return name != meta.end() && name->is_string() ? name->get<std::string>() : "";
}
}  // namespace

Result<Json> ApiService::get(const ResourceType& t, const std::string& ns, const std::string& name) const {
  ObjectPtr obj = store_.get(resourceKey(t, t.namespaced ? ns : ""), name);
  if (!obj) {
    return toError(notFound(t, name));
  }
  return parseObject(*obj);
}

net::awaitable<Result<Json>> ApiService::create(const ResourceType& t, Json object) {
  ApiRequest req = hubRequest(t, namespaceOf(t, object));
  if (auto bad = checkKind(object, t, req.ns)) {
    co_return toError(*bad);
  }
  WriteResult result = co_await createObject(req, t, std::move(object));
  co_return writtenObject(result);
}

net::awaitable<Result<Json>> ApiService::updateStatus(const ResourceType& t, Json object) {
  ApiRequest req = hubRequest(t, namespaceOf(t, object));
  if (auto bad = checkKind(object, t, req.ns)) {
    co_return toError(*bad);
  }
  std::string name = nameOf(object);
  WriteResult result = co_await updateObject(req, t, name, "status", std::move(object));
  co_return writtenObject(result);
}

net::awaitable<Result<Json>> ApiService::mergePatch(const ResourceType& t, std::string ns, std::string name, Json patch) {
  if (!patch.is_object()) {
    co_return fail(Errc::Invalid, "a merge patch must be a JSON object");
  }
  ApiRequest req = hubRequest(t, ns);
  WriteResult result = co_await patchObject(req, t, name, "", PatchKind::Merge, std::move(patch));
  co_return writtenObject(result);
}

net::awaitable<Result<Json>> ApiService::apply(const ResourceType& t, std::string ns, std::string name, Json object,
                                               std::string manager) {
  ApiRequest req = hubRequest(t, ns);
  if (auto bad = checkKind(object, t, req.ns)) {
    co_return toError(*bad);
  }
  object["metadata"]["name"] = name;
  WriteResult result = co_await applyObject(req, t, name, "", std::move(object), std::move(manager), true);
  co_return writtenObject(result);
}

net::awaitable<Result<void>> ApiService::remove(const ResourceType& t, std::string ns, std::string name) {
  ApiRequest req = hubRequest(t, ns);
  WriteResult result = co_await removeObject(req, t, name, Json::object());
  if (result.decision.kind == Decision::Kind::Fail) {
    co_return toError(result.decision);
  }
  co_return Result<void>{};
}

net::awaitable<Result<void>> ApiService::changeStatus(const ResourceType& t, std::string name, ObjectChange change) {
  co_return co_await changeStatusIn(t, "", std::move(name), std::move(change));
}

net::awaitable<Result<void>> ApiService::changeStatusIn(const ResourceType& t, std::string ns, std::string name,
                                                        ObjectChange change) {
  ApiRequest req = hubRequest(t, ns);
  Decision last = conflict(t, name);
  for (int attempt = 0; attempt < 8 && last.code == Errc::Conflict; ++attempt) {
    ObjectPtr seen = store_.get(resourceKey(t, req.ns), name);
    if (!seen) {
      co_return toError(notFound(t, name));
    }
    // `change` runs here, on the caller's strand, never on the writer thread.
    Json old_obj = parseObject(*seen);
    Json obj = old_obj;
    if (!change(obj)) {
      co_return Result<void>{};
    }
    auto prepared = std::make_shared<Decision>(
        finishUpdate(t, req, name, old_obj, std::move(obj), "status", formatTime(clock_.now()), nullptr));
    // Written only over the version it was computed from (moved out once: a second call gets
    // another version and answers with a conflict).
    Mutation m = [&t, name, seen, prepared](const ObjectRecord* current, int64_t) {
      return current == seen.get() ? std::move(*prepared) : conflict(t, name);
    };
    WriteResult result = co_await commit(req, t, name, std::move(m));
    if (result.decision.kind != Decision::Kind::Fail) {
      co_return Result<void>{};
    }
    last = std::move(result.decision);
  }
  co_return toError(last);
}

net::awaitable<bool> ApiService::removeFinalizer(const ResourceType& t, std::string name, std::string finalizer) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    ObjectPtr rec = store_.get(resourceKey(t), name);
    Json obj = rec ? parseObject(*rec) : Json();
    if (!obj.is_object()) {
      co_return true;
    }
    Json finalizers = obj["metadata"].value("finalizers", Json::array());
    Json remaining = Json::array();
    for (const auto& f : finalizers) {
      if (f != finalizer) {
        remaining.push_back(f);
      }
    }
    if (remaining.size() == finalizers.size()) {
      co_return true;
    }
    Json patch = {{"metadata", {{"finalizers", remaining}, {"resourceVersion", obj["metadata"].value("resourceVersion", "")}}}};
    Result<Json> res = co_await mergePatch(t, "", name, std::move(patch));
    if (res || res.error().code == Errc::NotFound) {
      co_return true;
    }
    if (res.error().code != Errc::Conflict) {
      co_return false;
    }
  }
  co_return false;
}

void ApiService::shutdown() {
  stopping_ = true;
  store_.closeWatches();
}

void ApiService::setCreateAdmission(const ResourceType& t, CreateAdmission* admission) { admissions_[&t] = admission; }

net::awaitable<ApiResponse> ApiService::handle(ApiRequest req) {
  const std::string& p = req.path;
  // Health and version are public, as kube-apiserver's system:public-info-viewer makes them.
  if (p == "/livez" || p == "/healthz" || p == "/readyz" || p == "/livez/ping" || p == "/readyz/ping") {
    ApiResponse r;
    r.content_type = "text/plain; charset=utf-8";
    if (p.rfind("/readyz", 0) == 0 && stopping_) {
      r.status = 503;
      r.body = "[-]shutdown failed: the hub is shutting down\nreadyz check failed";
    } else {
      r.body = "ok";
    }
    co_return r;
  }
  if (p == "/version") {
    ApiResponse r;
    r.body = Json{{"major", "1"}, {"minor", "32"}, {"gitVersion", options_.server_version},
                  {"gitCommit", ""}, {"gitTreeState", "clean"}, {"buildDate", ""}, {"goVersion", ""},
                  {"compiler", "gcc"}, {"platform", "linux/amd64"}, {"kflexVersion", kVersion}}.dump();
    co_return r;
  }
  if (!req.user.authenticated()) {
    co_return statusResponse(401, "Unauthorized",
                             req.auth_error.empty() ? "Unauthorized" : "Unauthorized: " + req.auth_error);
  }
  auto doc = [](std::string body, const char* type = kJson) {
    ApiResponse r;
    r.body = std::move(body);
    r.content_type = type;
    return r;
  };
  if (bool core = p == "/api" || p == "/api/"; core || p == "/apis" || p == "/apis/") {
    // kubectl 1.27-1.29 ask for v2beta1 and cannot read v2; newer ones ask for v2 first.
    DiscoveryForm form = negotiateDiscovery(req.accept);
    const std::string* body = core ? &docs_.api : &docs_.apis;
    if (form == DiscoveryForm::AggregatedV2) {
      body = core ? &docs_.aggregated_api : &docs_.aggregated_apis;
    } else if (form == DiscoveryForm::AggregatedV2Beta1) {
      body = core ? &docs_.aggregated_api_v2beta1 : &docs_.aggregated_apis_v2beta1;
    }
    ApiResponse r = doc(*body, discoveryContentType(form));
    // The same URL answers differently by Accept: caches must keep the forms apart.
    r.headers.emplace_back("Vary", "Accept");
    co_return r;
  }
  if (p == "/openapi/v2") {
    // kubectl asks for protobuf only (it validates a `kind: List` against this document).
    if (acceptsOpenApiV2Protobuf(req.accept)) {
      co_return doc(docs_.openapi_v2_protobuf, kOpenApiV2Protobuf);
    }
    if (req.accept.find("json") == std::string::npos && req.accept.find("*/*") == std::string::npos &&
        !req.accept.empty()) {
      co_return statusResponse(406, "NotAcceptable",
                               std::string("/openapi/v2 is served as application/json and ") + kOpenApiV2Protobuf);
    }
    co_return doc(docs_.openapi_v2);
  }
  if (p == "/openapi/v3" || p == "/openapi/v3/") {
    co_return doc(docs_.openapi_v3_root);
  }
  if (p.rfind("/openapi/v3/", 0) == 0) {
    auto it = docs_.openapi_v3.find(p.substr(12));
    if (it != docs_.openapi_v3.end()) {
      ApiResponse r = doc(it->second);
      r.headers.emplace_back("Cache-Control", "public, immutable");
      co_return r;
    }
    co_return statusResponse(404, "NotFound", "the server could not find the requested resource");
  }
  if (auto it = docs_.groups.find(p); it != docs_.groups.end()) {
    co_return doc(it->second);
  }
  if (auto it = docs_.versions.find(p); it != docs_.versions.end()) {
    co_return doc(it->second);
  }
  std::optional<ResourceRoute> route = routeResource(registry_, req.method, p);
  if (!route) {
    co_return statusResponse(404, "NotFound", "the server could not find the requested resource");
  }
  req.ns = route->ns;
  const ResourceType* t = route->type;
  if (!req.user.isAdmin()) {
    std::string scope = req.ns.empty() ? "at the cluster scope" : "in the namespace \"" + req.ns + "\"";
    co_return statusResponse(403, "Forbidden",
                             qualifiedResource(*t) + " is forbidden: User \"" + req.user.name +
                                 "\" cannot access resource \"" + t->plural + "\" in API group \"" + t->group +
                                 "\" " + scope + ": only members of system:masters may");
  }
  co_return co_await handleResource(req, *t, route->name, route->subresource);
}

namespace {

// Whether a read must first wait for the other replicas' writes: it asks for the latest state
// (no resourceVersion), or for a revision this replica has not reached yet.
bool needsFreshRead(const ApiRequest& req, int64_t current) {
  auto rv = req.query.find("resourceVersion");
  if (rv == req.query.end() || rv->second.empty()) {
    return true;
  }
  auto revision = parseRevision(rv->second);
  return revision && *revision > current;  // (a malformed one is refused as it is)
}

}  // namespace

net::awaitable<ApiResponse> ApiService::handleResource(ApiRequest& req, const ResourceType& t,
                                                       const std::string& name, const std::string& sub) {
  bool watching = req.query.count("watch") > 0 && req.query["watch"] != "false" && req.query["watch"] != "0";
  if (auto refused = refuseEncoding(req)) {
    co_return std::move(*refused);
  }
  // A write's options: dryRun is All or absent (apiserver's ValidateCreateOptions and siblings
  // answer anything else, `true` and `all` included, with 422 before anything is written).
  if (auto dry = req.query.find("dryRun"); dry != req.query.end() && dry->second != "All") {
    const char* options = req.method == http::verb::post    ? "CreateOptions"
                          : req.method == http::verb::put   ? "UpdateOptions"
                          : req.method == http::verb::patch ? "PatchOptions"
                          : req.method == http::verb::delete_ ? "DeleteOptions"
                                                              : nullptr;
    if (options != nullptr) {
      co_return statusResponse(422, "Invalid",
                               std::string(options) + ".meta.k8s.io \"\" is invalid: dryRun: Unsupported value: " +
                                   dumpSafe(Json::array({dry->second})) + ": supported values: \"All\"");
    }
  }
  switch (req.method) {
    case http::verb::get:
      if (store_.shared() && needsFreshRead(req, store_.revision())) {
        // Another replica may have written what this read must show (a read without
        // resourceVersion is a consistent read, as kube-apiserver's from etcd).
        bool current = co_await store_.fresh(net::use_awaitable);
        if (!current) {
          // As kube-apiserver without etcd: a consistent read cannot be promised. What this
          // replica holds is still offered, to a read that asks for it.
          co_return statusResponse(503, "ServiceUnavailable",
                                   "the datastore cannot be reached to confirm this hub replica is current; retry, "
                                   "or read with resourceVersion=0 for what this replica holds");
        }
      }
      if (watching) {
        co_return watchResponse(store_, stopping_, clock_, req, t, name, options_.default_watch_timeout,
                                 options_.bookmark_interval);
      }
      co_return name.empty() ? list(req, t) : get(req, t, name);
    case http::verb::post:
      if (!name.empty()) {
        co_return statusResponse(405, "MethodNotAllowed", "POST is not supported on a named " + t.kind);
      }
      co_return co_await create(req, t);
    case http::verb::put:
      if (name.empty()) {
        co_return statusResponse(405, "MethodNotAllowed", "PUT needs an object name in the path");
      }
      co_return co_await update(req, t, name, sub);
    case http::verb::patch:
      if (name.empty()) {
        co_return statusResponse(405, "MethodNotAllowed", "PATCH needs an object name in the path");
      }
      co_return co_await patch(req, t, name, sub);
    case http::verb::delete_:
      if (name.empty() || !sub.empty()) {
        co_return statusResponse(405, "MethodNotAllowed", "DELETE needs an object name in the path");
      }
      co_return co_await remove(req, t, name);
    default:
      co_return statusResponse(405, "MethodNotAllowed", "the method is not supported on this resource");
  }
}

ApiResponse ApiService::get(const ApiRequest& req, const ResourceType& t, const std::string& name) {
  ObjectPtr obj = store_.get(resourceKey(t, req.ns), name);
  if (!obj) {
    return fromDecision(notFound(t, name));
  }
  ApiResponse r;
  r.body = wantsTable(req) ? tableFor(req, t, {obj}, obj->revision, true, clock_.now()) : obj->bytes;
  return r;
}

ApiResponse ApiService::list(const ApiRequest& req, const ResourceType& t) {
  auto parsed = parseSelectors(req);
  if (auto* bad = std::get_if<ApiResponse>(&parsed)) {
    return std::move(*bad);
  }
  const auto& [labels, fields] = std::get<Selectors>(parsed);
  int64_t asked_rv = 0;
  if (auto bad = checkQueryResourceVersion(req, store_.revision(), asked_rv)) {
    return std::move(*bad);
  }
  size_t limit = 0;
  if (auto it = req.query.find("limit"); it != req.query.end() && !it->second.empty()) {
    try {
      long v = std::stol(it->second);
      limit = v > 0 ? size_t(v) : 0;
    } catch (const std::exception&) {
      return statusResponse(400, "BadRequest", "limit must be an integer, not \"" + it->second + "\"");
    }
  }
  std::string start_after;
  if (auto it = req.query.find("continue"); it != req.query.end() && !it->second.empty()) {
    auto decoded = base64Decode(it->second);
    Json token = decoded ? Json::parse(decoded.value(), nullptr, false) : Json();
    if (!token.is_object() || !token.contains("start") || !token["start"].is_string()) {
      return statusResponse(400, "BadRequest", "the continue token is not valid; list again without it");
    }
    start_after = token["start"].get<std::string>();
  }
  // A namespaced kind listed without a namespace: every namespace, ordered by namespace/name.
  bool every_ns = t.namespaced && req.ns.empty();
  auto [all, revision] = every_ns ? store_.listPrefix(resourceKey(t, "")) : store_.list(resourceKey(t, req.ns));
  auto position = [every_ns](const ObjectPtr& o) { return every_ns ? o->resource + "/" + o->name : o->name; };
  std::vector<ObjectPtr> items;
  size_t remaining = 0;
  std::string next;
  for (const auto& obj : all) {
    if (!start_after.empty() && position(obj) <= start_after) {
      continue;
    }
    if (!labels.matches(obj->labels) || !fields.matches(obj->name)) {
      continue;
    }
    if (limit > 0 && items.size() >= limit) {
      ++remaining;
      continue;
    }
    items.push_back(obj);
  }
  if (limit > 0 && remaining > 0 && !items.empty()) {
    next = base64Encode(Json{{"start", position(items.back())}, {"rv", revision}}.dump());
  }
  ApiResponse r;
  if (wantsTable(req)) {
    Json table = Json::parse(tableFor(req, t, items, revision, true, clock_.now()));
    if (!next.empty()) {
      table["metadata"]["continue"] = next;
      table["metadata"]["remainingItemCount"] = remaining;
    }
    r.body = dumpJson(table);
    return r;
  }
  // Assemble the list from the stored bytes: no object is decoded or re-encoded.
  Json meta = {{"resourceVersion", std::to_string(revision)}};
  if (!next.empty()) {
    meta["continue"] = next;
    meta["remainingItemCount"] = remaining;
  }
  std::string body = "{\"apiVersion\":\"" + t.apiVersion() + "\",\"items\":[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) {
      body += ',';
    }
    body += items[i]->bytes;
  }
  body += "],\"kind\":\"" + t.list_kind + "\",\"metadata\":" + meta.dump() + "}";
  r.body = std::move(body);
  return r;
}

net::awaitable<WriteResult> ApiService::commit(const ApiRequest& req, const ResourceType& t, const std::string& name,
                                               Mutation mutation) {
  WriteResult result;
  if (isDryRun(req)) {
    try {
      result = store_.dryRun(resourceKey(t, req.ns), name, mutation);
    } catch (const Json::type_error& e) {
      result.decision = failure("BadRequest", std::string("the object cannot be stored: ") + e.what());
    } catch (const std::exception& e) {
      result.decision = failure("InternalError", std::string("internal error: ") + e.what());
    }
  } else if (options_.leadership && !options_.leadership->leading()) {
    // The controllers' client of a replica that does not lead: nothing to write (the leader's
    // controllers do it).
    result.decision = failure("Conflict", "this hub replica does not lead the controllers");
  } else {
    // Optimistic: compute the outcome here, against the version current now, so the work runs
    // in parallel on the request's thread. The writer thread takes it as it is when that version
    // is still current (the record it points to is kept alive, so pointer identity means the same
    // version) and otherwise runs the mutation again itself. A mutation therefore runs at most
    // twice, the second time only against another version than the first.
    ObjectPtr seen = store_.get(resourceKey(t, req.ns), name);
    std::shared_ptr<Decision> computed;
    try {
      computed = std::make_shared<Decision>(mutation(seen.get(), 0));
      ObjectStore::encode(*computed);
      if (computed->encoded && computed->encoded->head.size() + computed->encoded->tail.size() > kMaxObjectBytes) {
        result.decision = failure("RequestEntityTooLarge",
                                  "the object would be " +
                                      std::to_string(computed->encoded->head.size() + computed->encoded->tail.size()) +
                                      " bytes once stored; the limit is " + std::to_string(kMaxObjectBytes) +
                                      " bytes (etcd's default request limit, which kube-apiserver's objects share)");
        computed.reset();
      }
    } catch (const Json::type_error& e) {
      // The object cannot be serialized (a string that is not UTF-8): nothing is written. Not
      // retried: a mutation may have moved its object out on this first call.
      result.decision = failure("BadRequest", std::string("the object cannot be stored: ") + e.what());
      computed.reset();
    } catch (const std::exception& e) {
      result.decision = failure("InternalError", std::string("internal error: ") + e.what());
      computed.reset();
    }
    if (!computed) {
      co_return result;
    }
    Mutation checked = [seen, computed, mutation = std::move(mutation)](const ObjectRecord* current, int64_t next) {
      if (computed && current == seen.get()) {
        return std::move(*computed);
      }
      return mutation(current, next);
    };
    // The controllers' writes are fenced by the term they were decided under.
    int64_t fence = options_.leadership ? options_.leadership->term() : 0;
    result = co_await store_.write(resourceKey(t, req.ns), name, fence, std::move(checked), net::use_awaitable);
  }
  co_return result;
}

net::awaitable<ApiResponse> ApiService::create(const ApiRequest& req, const ResourceType& t) {
  Json obj;
  std::vector<std::string> decode_warnings;
  if (auto bad = decodeObject(req, t, obj, decode_warnings)) {
    co_return std::move(*bad);
  }
  WriteResult result = co_await createObject(req, t, std::move(obj));
  ApiResponse r = written(result, 201);
  addWarnings(r, decode_warnings);
  co_return r;
}

net::awaitable<WriteResult> ApiService::createObject(const ApiRequest& req, const ResourceType& t, Json obj) {
  Json& meta = obj["metadata"];
  if (meta.value("name", "").empty() && !meta.value("generateName", "").empty()) {
    static constexpr char kChars[] = "bcdfghjklmnpqrstvwxz2456789";
    std::string suffix;
    std::string uuid = newUuid();
    for (int i = 0; i < 5; ++i) {
      suffix += kChars[static_cast<unsigned char>(uuid[size_t(i)]) % 27];
    }
    meta["name"] = meta["generateName"].get<std::string>() + suffix;
  }
  std::string name = meta.value("name", "");
  std::string now = formatTime(clock_.now());
  // Validation and defaulting run here, on the request's strand; the writer thread only checks
  // that the name is free, so concurrent creates are validated in parallel and committed in groups.
  auto prepared = std::make_shared<Decision>(prepareCreate(t, req, std::move(obj), now));
  if (prepared->kind != Decision::Kind::Put) {
    co_return WriteResult{std::move(*prepared), nullptr};
  }
  recordUpdate(nullptr, prepared->object, managerOf(req), "", now);
  // A controller may settle the new object's first status now (placement picks its agent), so
  // that one write stores both; that status is the hub's, as if written through /status.
  auto admission = admissions_.find(&t);
  uint64_t ticket = 0;
  if (admission != admissions_.end()) {
    ticket = admission->second->admit(prepared->object, isDryRun(req));
    if (prepared->object.contains("status")) {
      recordNewStatus(prepared->object, kHubFieldManager, now);
    }
  }
  Mutation m = [&t, prepared, name](const ObjectRecord* current, int64_t) {
    if (current != nullptr) {
      return failure("AlreadyExists", qualifiedResource(t) + " \"" + name + "\" already exists",
                     {{"name", name}, {"group", t.group}, {"kind", t.plural}});
    }
    // Only a call with no current object moves the prepared one out, and commit() calls a
    // mutation again only against another version than the first time: it is moved once.
    return std::move(*prepared);
  };
  WriteResult result = co_await commit(req, t, name, std::move(m));
  if (ticket != 0) {
    admission->second->settled(name, ticket, result.decision.kind == Decision::Kind::Put);
  }
  co_return result;
}

net::awaitable<ApiResponse> ApiService::update(const ApiRequest& req, const ResourceType& t, const std::string& name,
                                               const std::string& sub) {
  Json obj;
  std::vector<std::string> decode_warnings;
  if (auto bad = decodeObject(req, t, obj, decode_warnings)) {
    co_return std::move(*bad);
  }
  WriteResult result = co_await updateObject(req, t, name, sub, std::move(obj));
  ApiResponse r = written(result, 0);
  addWarnings(r, decode_warnings);
  co_return r;
}

net::awaitable<WriteResult> ApiService::updateObject(const ApiRequest& req, const ResourceType& t, const std::string& name,
                                                     const std::string& sub, Json obj) {
  if (obj["metadata"].value("resourceVersion", "").empty()) {
    co_return WriteResult{invalid(t, name, {{"FieldValueInvalid", "metadata.resourceVersion",
                                             "Invalid value: 0x0: must be specified for an update"}}),
                          nullptr};
  }
  std::string now = formatTime(clock_.now());
  Mutation m = [&t, req, obj, now, name, sub](const ObjectRecord* current, int64_t) {
    if (current == nullptr) {
      return notFound(t, name);
    }
    return finishUpdate(t, req, name, parseObject(*current), obj, sub, now, nullptr);
  };
  co_return co_await commit(req, t, name, std::move(m));
}

net::awaitable<ApiResponse> ApiService::patch(const ApiRequest& req, const ResourceType& t, const std::string& name,
                                              const std::string& sub) {
  if (auto bad = checkFieldValidationParam(req)) {
    co_return fromDecision(*bad);
  }
  std::string ct = req.content_type.substr(0, req.content_type.find(';'));
  if (ct == "application/apply-patch+yaml" || ct == "application/apply-patch+cbor") {
    ApiRequest yaml_req = req;
    yaml_req.content_type = "application/yaml";
    auto body = parseBody(yaml_req);
    if (!body) {
      co_return statusResponse(400, "BadRequest", body.error().message);
    }
    Json applied = std::move(body.value());
    if (auto bad = checkKind(applied, t, req.ns)) {
      co_return fromDecision(*bad);
    }
    auto fm = req.query.find("fieldManager");
    if (fm == req.query.end() || fm->second.empty()) {
      co_return statusResponse(400, "BadRequest", "PATCH with application/apply-patch+yaml requires fieldManager");
    }
    bool force = req.query.count("force") && req.query.at("force") == "true";
    if (applied["metadata"].contains("name") && applied["metadata"]["name"] != name) {
      co_return statusResponse(400, "BadRequest", "the name of the object (" + applied["metadata"]["name"].dump() +
                                                      ") does not match the name on the URL (" + name + ")");
    }
    applied["metadata"]["name"] = name;
    WriteResult result = co_await applyObject(req, t, name, sub, std::move(applied), fm->second, force);
    co_return written(result, 201);
  }
  PatchKind kind;
  if (ct == "application/merge-patch+json") {
    kind = PatchKind::Merge;
  } else if (ct == "application/strategic-merge-patch+json") {
    kind = PatchKind::Strategic;
  } else if (ct == "application/json-patch+json") {
    kind = PatchKind::Json6902;
  } else {
    co_return statusResponse(415, "UnsupportedMediaType",
                             "the body of the request was in an unknown format - accepted media types include: "
                             "application/json-patch+json, application/merge-patch+json, "
                             "application/strategic-merge-patch+json, application/apply-patch+yaml");
  }
  auto decoded_patch = decodeJson(req.body);
  if (!decoded_patch) {
    co_return statusResponse(400, "BadRequest", "couldn't decode the patch: " + decoded_patch.error().message);
  }
  Json patch_doc = std::move(decoded_patch.value());
  if (kind != PatchKind::Json6902 && !patch_doc.is_object()) {
    co_return statusResponse(400, "BadRequest", "a merge patch must be a JSON object");
  }
  if (kind == PatchKind::Json6902 && !patch_doc.is_array()) {
    co_return statusResponse(400, "BadRequest", "a JSON patch must be a JSON array of operations");
  }
  WriteResult result = co_await patchObject(req, t, name, sub, kind, std::move(patch_doc));
  co_return written(result, 0);
}

net::awaitable<WriteResult> ApiService::patchObject(const ApiRequest& req, const ResourceType& t, const std::string& name,
                                                    const std::string& sub, PatchKind kind, Json patch_doc) {
  Mutation m = patchMutation(t, req, name, sub, kind, std::move(patch_doc), formatTime(clock_.now()));
  co_return co_await commit(req, t, name, std::move(m));
}

net::awaitable<WriteResult> ApiService::applyObject(const ApiRequest& req, const ResourceType& t, const std::string& name,
                                                    const std::string& sub, Json applied, std::string manager,
                                                    bool force) {
  Mutation m = applyMutation(t, req, name, sub, std::move(applied), std::move(manager), force, formatTime(clock_.now()));
  co_return co_await commit(req, t, name, std::move(m));
}

net::awaitable<ApiResponse> ApiService::remove(const ApiRequest& req, const ResourceType& t, const std::string& name) {
  Json options = Json::object();
  if (!trim(req.body).empty()) {
    auto decoded = decodeJson(req.body);
    if (!decoded || !decoded->is_object()) {
      co_return statusResponse(400, "BadRequest", "the DeleteOptions body is not a JSON object" +
                                                      (decoded ? std::string() : ": " + decoded.error().message));
    }
    options = std::move(decoded.value());
  }
  ApiRequest effective = req;
  if (auto dr = options.find("dryRun"); dr != options.end() && dr->is_array() && !dr->empty() && (*dr)[0] == "All") {
    effective.query["dryRun"] = "All";
  }
  Json preconditions = options.value("preconditions", Json::object());
  WriteResult result = co_await removeObject(effective, t, name, std::move(preconditions));
  co_return written(result, 0);
}

net::awaitable<WriteResult> ApiService::removeObject(const ApiRequest& req, const ResourceType& t, const std::string& name,
                                                     Json preconditions) {
  Mutation m = deleteMutation(t, name, std::move(preconditions), formatTime(clock_.now()));
  co_return co_await commit(req, t, name, std::move(m));
}

}  // namespace kflex::hub
