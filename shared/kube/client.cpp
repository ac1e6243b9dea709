// SPDX-License-Identifier: Apache-2.0
#include "shared/kube/client.hpp"

#include "shared/common/util.hpp"
#include "shared/config/yaml_json.hpp"

namespace kflex::kube {
namespace {

std::string percentEncode(const std::string& s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
      out += char(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

ApiError errorFrom(const net_client::HttpResult& r, const std::string& what) {
  ApiError e;
  e.status = r.status;
  Json status = Json::parse(r.body, nullptr, false);
  std::string message;
  if (status.is_object() && status.value("kind", "") == "Status") {
    e.reason = status.value("reason", "");
    message = status.value("message", "");
  }
  if (message.empty()) {
    message = trim(r.body.substr(0, 300));
  }
  e.message = what + ": " + (message.empty() ? "HTTP " + std::to_string(r.status) : message) + " (HTTP " +
              std::to_string(r.status) + ")";
  return e;
}

// A JSON value as a result (Json converts to nearly anything, so say which side it is).
KubeResult<Json> value(Json j) { return KubeResult<Json>(boost::system::in_place_value, std::move(j)); }

std::string groupVersionPath(const std::string& api_version) {
  return api_version.find('/') == std::string::npos ? "/api/" + api_version : "/apis/" + api_version;
}

}  // namespace

std::string Resource::collection(const std::string& ns) const {
  std::string base = groupVersionPath(api_version);
  if (namespaced && !ns.empty()) {
    base += "/namespaces/" + ns;
  }
  return base + "/" + plural;
}

ObjectRef ObjectRef::of(const Json& obj) {
  ObjectRef r;
  if (!obj.is_object()) {
    return r;
  }
  r.api_version = obj.value("apiVersion", "");
  r.kind = obj.value("kind", "");
  const Json meta = obj.value("metadata", Json::object());
  if (meta.is_object()) {
    r.ns = meta.value("namespace", "");
    r.name = meta.value("name", "");
  }
  return r;
}

std::string ObjectRef::describe() const { return kind + " " + (ns.empty() ? name : ns + "/" + name); }

Result<std::unique_ptr<Client>> Client::create(const config::ClusterAccess& access, std::chrono::milliseconds timeout) {
  auto http = net_client::HttpsClient::create(access);
  if (!http) {
    return http.error();
  }
  return std::unique_ptr<Client>(new Client(std::move(http.value()), timeout));
}

net::awaitable<KubeResult<Json>> Client::call(http::verb method, std::string path, std::string body,
                                              std::string content_type) {
  auto r = co_await http_->asyncRequest(method, path, std::move(body), std::move(content_type), timeout_);
  if (!r) {
    co_return ApiError{0, "", r.error().message};
  }
  if (r->status >= 300) {
    co_return errorFrom(r.value(), std::string(http::to_string(method)) + " " + path.substr(0, path.find('?')));
  }
  Json j = Json::parse(r->body, nullptr, false);
  if (j.is_discarded()) {
    co_return ApiError{r->status, "", "the answer to " + path + " is not JSON"};
  }
  co_return value(std::move(j));
}

net::awaitable<KubeResult<Resource>> Client::resource(std::string api_version, std::string kind) {
  std::string key = api_version + "/" + kind;
  if (auto it = kinds_.find(key); it != kinds_.end()) {
    co_return it->second;
  }
  // Look the group version up (again, when it was fetched over a second ago: a CRD may have
  // been established since).
  auto now = std::chrono::steady_clock::now();
  auto seen = fetched_.find(api_version);
  if (seen == fetched_.end() || now - seen->second > std::chrono::seconds(1)) {
    fetched_[api_version] = now;
    auto list = co_await call(http::verb::get, groupVersionPath(api_version), "", "");
    if (!list && !list.error().notFound()) {
      co_return list.error();
    }
    if (list) {
      for (const auto& r : list->value("resources", Json::array())) {
        std::string name = r.value("name", "");
        if (name.empty() || name.find('/') != std::string::npos) {
          continue;  // subresources
        }
        Resource res{api_version, r.value("kind", ""), name, r.value("namespaced", false)};
        kinds_[api_version + "/" + res.kind] = res;
      }
    }
    if (auto it = kinds_.find(key); it != kinds_.end()) {
      co_return it->second;
    }
  }
  co_return ApiError{404, "NoKind",
                     "the server " + server() + " has no kind " + kind + " in " + api_version +
                         " (is its CustomResourceDefinition installed and established?)"};
}

net::awaitable<KubeResult<std::string>> Client::objectPath(const ObjectRef& ref) {
  if (ref.api_version.empty() || ref.kind.empty()) {
    co_return ApiError{400, "BadRequest", "an object needs apiVersion and kind"};
  }
  if (ref.name.empty()) {
    co_return ApiError{400, "BadRequest", ref.kind + ": an object needs metadata.name"};
  }
  auto res = co_await resource(ref.api_version, ref.kind);
  if (!res) {
    co_return res.error();
  }
  co_return res->collection(res->namespaced && ref.ns.empty() ? "default" : ref.ns) + "/" + ref.name;
}

net::awaitable<KubeResult<Json>> Client::get(ObjectRef ref) {
  auto path = co_await objectPath(ref);
  if (!path) {
    co_return path.error();
  }
  co_return co_await call(http::verb::get, path.value(), "", "");
}

net::awaitable<KubeResult<Json>> Client::list(std::string api_version, std::string kind, std::string ns,
                                              std::string label_selector) {
  auto res = co_await resource(api_version, kind);
  if (!res) {
    co_return res.error();
  }
  std::string path = res->collection(ns);
  if (!label_selector.empty()) {
    path += "?labelSelector=" + percentEncode(label_selector);
  }
  co_return co_await call(http::verb::get, path, "", "");
}

net::awaitable<KubeResult<Json>> Client::apply(Json obj, std::string manager, bool force) {
  ObjectRef ref = ObjectRef::of(obj);
  auto res = co_await resource(ref.api_version, ref.kind);
  if (!res) {
    co_return res.error();
  }
  if (res->namespaced && ref.ns.empty()) {
    ref.ns = "default";
    obj["metadata"]["namespace"] = ref.ns;
  }
  auto path = co_await objectPath(ref);
  if (!path) {
    co_return path.error();
  }
  std::string target = path.value() + "?fieldManager=" + percentEncode(manager) + (force ? "&force=true" : "");
  // JSON is YAML: the apply content type takes it as it is.
  auto r = co_await call(http::verb::patch, target, obj.dump(), "application/apply-patch+yaml");
  if (!r) {
    ApiError e = r.error();
    e.message = "applying " + ref.describe() + ": " + e.message;
    co_return e;
  }
  co_return r;
}

net::awaitable<KubeResult<bool>> Client::remove(ObjectRef ref) {
  auto path = co_await objectPath(ref);
  if (!path) {
    if (path.error().reason == "NoKind") {
      co_return KubeResult<bool>(boost::system::in_place_value, false);  // no such kind: nothing to delete
    }
    co_return path.error();
  }
  Json options = {{"kind", "DeleteOptions"}, {"apiVersion", "v1"}, {"propagationPolicy", "Background"}};
  auto r = co_await call(http::verb::delete_, path.value(), options.dump(), "application/json");
  if (!r) {
    if (r.error().notFound()) {
      co_return KubeResult<bool>(boost::system::in_place_value, false);
    }
    co_return r.error();
  }
  co_return KubeResult<bool>(boost::system::in_place_value, true);
}

net::awaitable<KubeResult<Json>> Client::post(std::string path, Json body) {
  co_return co_await call(http::verb::post, std::move(path), body.dump(), "application/json");
}

net::awaitable<KubeResult<std::string>> Client::getRaw(std::string path) {
  auto r = co_await http_->asyncRequest(http::verb::get, path, "", "application/json", timeout_);
  if (!r) {
    co_return ApiError{0, "", r.error().message};
  }
  if (r->status != 200) {
    co_return errorFrom(r.value(), "GET " + path);
  }
  co_return r->body;
}

net::awaitable<KubeResult<std::string>> Client::watch(ObjectRef ref, std::string resource_version,
                                                      std::function<bool(const std::string&, const Json&)> on_event,
                                                      std::chrono::seconds timeout) {
  auto res = co_await resource(ref.api_version, ref.kind);
  if (!res) {
    co_return res.error();
  }
  std::string path = res->collection(ref.ns) + "?watch=1&allowWatchBookmarks=true&timeoutSeconds=" +
                     std::to_string(timeout.count()) + "&resourceVersion=" + percentEncode(resource_version);
  if (!ref.name.empty()) {
    path += "&fieldSelector=" + percentEncode("metadata.name=" + ref.name);
  }
  std::string last = resource_version;
  std::string error;
  // (Named before the co_await: GCC 12 destroys a lambda built inside one twice.)
  std::function<bool(std::string_view)> on_line = [&](std::string_view line) {
        Json ev = Json::parse(line, nullptr, false);
        if (!ev.is_object()) {
          return true;
        }
        std::string type = ev.value("type", "");
        const Json& obj = ev.contains("object") ? ev["object"] : Json();
        if (type == "ERROR") {
          error = obj.is_object() ? obj.value("message", "watch error") : "watch error";
          return false;
        }
        if (obj.is_object() && obj.contains("metadata")) {
          last = obj["metadata"].value("resourceVersion", last);
        }
        return type == "BOOKMARK" || on_event(type, obj);
  };
  auto r = co_await http_->asyncStream(path, on_line, timeout + std::chrono::seconds(5));
  if (!r && r.error().code == Errc::Timeout) {
    co_return last;  // (the server ends a watch at timeoutSeconds; this is its slack running out)
  }
  if (!r) {
    co_return ApiError{0, "", r.error().message};
  }
  if (r->status != 200) {
    co_return errorFrom(r.value(), "watching " + ref.kind);
  }
  if (!error.empty()) {
    co_return ApiError{410, "Expired", "watching " + ref.kind + ": " + error};
  }
  co_return last;
}

net::awaitable<KubeResult<Json>> Client::waitFor(ObjectRef ref, std::function<bool(const Json&)> done,
                                                 std::chrono::steady_clock::time_point deadline) {
  ApiError last_error{0, "Timeout", ""};
  while (std::chrono::steady_clock::now() < deadline) {
    // List one name: the object (or its absence) and a revision to watch from.
    auto res = co_await resource(ref.api_version, ref.kind);
    if (!res) {
      last_error = res.error();
      if (!last_error.transient()) {
        co_return last_error;
      }
    } else {
      std::string path = res->collection(res->namespaced && ref.ns.empty() ? "default" : ref.ns) +
                         "?fieldSelector=" + percentEncode("metadata.name=" + ref.name);
      auto list = co_await call(http::verb::get, path, "", "");
      if (!list) {
        last_error = list.error();
        if (!last_error.transient()) {
          co_return last_error;
        }
      } else {
        const Json& items = (*list)["items"];
        Json current = items.is_array() && !items.empty() ? items[0] : Json();
        if (done(current)) {
          co_return value(current);
        }
        std::string rv = (*list)["metadata"].value("resourceVersion", "");
        auto left = std::chrono::duration_cast<std::chrono::seconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
          break;
        }
        bool met = false;
        ObjectRef named = ref;
        named.ns = res->namespaced && ref.ns.empty() ? "default" : ref.ns;
        std::function<bool(const std::string&, const Json&)> on_event = [&](const std::string& type,
                                                                             const Json& obj) {
          current = type == "DELETED" ? Json() : obj;
          met = done(current);
          return !met;
        };
        auto w = co_await watch(named, rv, on_event, std::min(left + std::chrono::seconds(1), std::chrono::seconds(60)));
        if (met) {
          co_return value(current);
        }
        if (!w) {
          last_error = w.error();
        }
        continue;
      }
    }
    net::steady_timer pause(co_await net::this_coro::executor, std::chrono::milliseconds(500));
    co_await pause.async_wait(net::as_tuple(net::use_awaitable));
  }
  co_return ApiError{last_error.status, "Timeout",
                     "timed out waiting for " + ref.describe() +
                         (last_error.message.empty() ? "" : " (last error: " + last_error.message + ")")};
}

net::awaitable<Result<std::string>> makeAdminAccount(Client& client, std::string ns, std::string account,
                                                     std::string binding, int64_t expiration_seconds,
                                                     std::string manager) {
  Json sa = {{"apiVersion", "v1"}, {"kind", "ServiceAccount"}, {"metadata", {{"name", account}, {"namespace", ns}}}};
  if (auto r = co_await client.apply(sa, manager); !r) {
    co_return fail(r.error().message);
  }
  Json crb = {{"apiVersion", "rbac.authorization.k8s.io/v1"},
              {"kind", "ClusterRoleBinding"},
              {"metadata", {{"name", binding}}},
              {"roleRef", {{"apiGroup", "rbac.authorization.k8s.io"}, {"kind", "ClusterRole"}, {"name", "cluster-admin"}}},
              {"subjects", Json::array({{{"kind", "ServiceAccount"}, {"name", account}, {"namespace", ns}}})}};
  if (auto r = co_await client.apply(crb, manager); !r) {
    co_return fail(r.error().message);
  }
  Json request = {{"apiVersion", "authentication.k8s.io/v1"},
                  {"kind", "TokenRequest"},
                  {"spec", {{"expirationSeconds", expiration_seconds}}}};
  std::string path = "/api/v1/namespaces/" + ns + "/serviceaccounts/" + account + "/token";
  auto answer = co_await client.post(path, request);
  if (!answer) {
    co_return fail("requesting a token for " + ns + "/" + account + ": " + answer.error().message);
  }
  std::string token = (*answer)["status"].value("token", "");
  if (token.empty()) {
    co_return fail("the TokenRequest for " + ns + "/" + account + " came back without a token");
  }
  co_return token;
}

net::awaitable<Result<std::string>> adoptCluster(std::string name, std::string bootstrap_kubeconfig,
                                                 int64_t expiration_seconds, std::string manager,
                                                 std::chrono::milliseconds timeout) {
  auto kc = config::Kubeconfig::parse(bootstrap_kubeconfig, "the bootstrap kubeconfig");
  auto access = kc ? kc->access() : Result<config::ClusterAccess>(kc.error());
  if (!access) {
    co_return fail(access.error().message);
  }
  auto client = Client::create(access.value(), timeout);
  if (!client) {
    co_return fail(client.error().message);
  }
  auto token = co_await makeAdminAccount(*client.value(), kAdoptedAccountNamespace, kAdoptedAccount, kAdoptedBinding,
                                         expiration_seconds, manager);
  if (!token) {
    co_return fail("adopting through the bootstrap kubeconfig: " + token.error().message);
  }
  co_return tokenKubeconfig(name, access->server, access->ca_pem, token.value());
}

std::string tokenKubeconfig(const std::string& name, const std::string& server, const std::string& ca_pem,
                            const std::string& token) {
  config::ClusterAccess a;
  a.server = server;
  a.ca_pem = ca_pem;
  a.token = token;
  config::Kubeconfig kc;
  kc.setAccess(name, a);
  kc.setCurrentContext(name);
  return kc.toYaml();
}

}  // namespace kflex::kube
