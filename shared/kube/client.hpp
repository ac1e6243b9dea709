// SPDX-License-Identifier: Apache-2.0
// A small Kubernetes API client: discovery, get/list, server-side apply, delete, watch and
// wait-for-condition, over kflex's HTTPS client. Used by the hub (adopting clusters, the host
// type), by the agent (vCluster) and by PostCreateHooks.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include <boost/system/result.hpp>
#include <nlohmann/json.hpp>

#include "shared/config/kubeconfig.hpp"
#include "shared/net/https_client.hpp"

namespace kflex::kube {

using Json = nlohmann::json;

/// A failed call: the HTTP status (0 when the server was not reached), the Status reason and a
/// message for a person.
struct ApiError {
  unsigned status = 0;
  std::string reason;
  std::string message;
  bool notFound() const { return status == 404; }
  /// Worth trying again later: unreachable, overloaded, starting up, or a kind not served yet.
  bool transient() const { return status == 0 || status == 429 || status >= 500 || reason == "NoKind"; }
};

[[noreturn]] inline void throw_exception_from_error(const ApiError& e, const boost::source_location&) {
  throw std::runtime_error(e.message);
}

template <class T>
using KubeResult = boost::system::result<T, ApiError>;

/// Where a server keeps objects of one kind, as its discovery says.
struct Resource {
  std::string api_version;  ///< "v1", "apps/v1".
  std::string kind;
  std::string plural;
  bool namespaced = false;
  /// The collection path ("/api/v1/namespaces/NS/secrets"); ns is ignored for cluster-scoped kinds
  /// and, when empty for a namespaced kind, means every namespace.
  std::string collection(const std::string& ns) const;
};

/// The apiVersion, kind, namespace and name that identify an object.
struct ObjectRef {
  std::string api_version;
  std::string kind;
  std::string ns;
  std::string name;
  static ObjectRef of(const Json& obj);
  /// "Kind ns/name" for messages.
  std::string describe() const;
};

/**
 * A client for one cluster. Calls are coroutines on the caller's executor; discovery results are
 * cached per group version and looked up again when a kind is missing (a CRD just created).
 * Thread safety: one strand at a time. Callers: name an ObjectRef before the co_await that
 * passes it (GCC 12 destroys an aggregate temporary built inside a co_await expression twice).
 */
class Client {
 public:
  static Result<std::unique_ptr<Client>> create(const config::ClusterAccess& access,
                                                 std::chrono::milliseconds timeout = std::chrono::seconds(30));

  /// The resource serving `kind` of `api_version`; reason "NoKind" when the server has none.
  net::awaitable<KubeResult<Resource>> resource(std::string api_version, std::string kind);
  net::awaitable<KubeResult<Json>> get(ObjectRef ref);
  /// The list object (items, metadata.resourceVersion).
  net::awaitable<KubeResult<Json>> list(std::string api_version, std::string kind, std::string ns,
                                        std::string label_selector = "");
  /// Server-side apply under `manager` (force takes over conflicting fields). The object's
  /// namespace defaults to "default" for namespaced kinds.
  net::awaitable<KubeResult<Json>> apply(Json obj, std::string manager, bool force = true);
  /// Deletes with background propagation; true when it was there (it may still be finishing).
  net::awaitable<KubeResult<bool>> remove(ObjectRef ref);
  /// POSTs to a path (a subresource such as serviceaccounts/NAME/token) and returns the answer.
  net::awaitable<KubeResult<Json>> post(std::string path, Json body);
  /// GETs a non-resource path (/readyz, /version); the body when it answers 200.
  net::awaitable<KubeResult<std::string>> getRaw(std::string path);

  /// Watches objects of a kind (optionally one name) after `resource_version`, calling
  /// on_event(type, object) until it returns false, the server closes the stream, or `timeout`
  /// passes. Returns the last resource version seen.
  net::awaitable<KubeResult<std::string>> watch(ObjectRef ref, std::string resource_version,
                                                std::function<bool(const std::string&, const Json&)> on_event,
                                                std::chrono::seconds timeout);
  /// Waits until done(object) holds (the object is null while it does not exist) or until the
  /// deadline; returns the object. Watches between checks, and lists again when a watch ends.
  net::awaitable<KubeResult<Json>> waitFor(ObjectRef ref, std::function<bool(const Json&)> done,
                                           std::chrono::steady_clock::time_point deadline);

  const std::string& server() const { return http_->server(); }

 private:
  Client(std::unique_ptr<net_client::HttpsClient> http, std::chrono::milliseconds timeout)
      : http_(std::move(http)), timeout_(timeout) {}
  net::awaitable<KubeResult<Json>> call(http::verb method, std::string path, std::string body,
                                        std::string content_type);
  net::awaitable<KubeResult<std::string>> objectPath(const ObjectRef& ref);

  std::unique_ptr<net_client::HttpsClient> http_;
  std::chrono::milliseconds timeout_;
  std::map<std::string, Resource> kinds_;                         // "apiVersion/kind"
  std::map<std::string, std::chrono::steady_clock::time_point> fetched_;  // group version -> when
};

/// Makes ServiceAccount ns/account bound to cluster-admin (ClusterRoleBinding `binding`) and
/// returns a token for it valid `expiration_seconds` (TokenRequest), as upstream KubeFlex adopts
/// clusters. Applied under field manager `manager`.
net::awaitable<Result<std::string>> makeAdminAccount(Client& client, std::string ns, std::string account,
                                                     std::string binding, int64_t expiration_seconds,
                                                     std::string manager);

/// Upstream's names in an adopted cluster.
inline constexpr const char* kAdoptedAccount = "kubeflex";
inline constexpr const char* kAdoptedAccountNamespace = "kube-system";
inline constexpr const char* kAdoptedBinding = "kubeflex-clusterrolebinding";

/// Adopts the cluster of `bootstrap_kubeconfig` (its server and CA kept): makes upstream's admin
/// account there and returns a kubeconfig for control plane `name` holding only its token.
net::awaitable<Result<std::string>> adoptCluster(std::string name, std::string bootstrap_kubeconfig,
                                                 int64_t expiration_seconds, std::string manager,
                                                 std::chrono::milliseconds timeout);

/// A kubeconfig (YAML text) for `server` with a CA and a bearer token: context `name`, cluster
/// NAME-cluster, user NAME-admin (upstream's naming).
std::string tokenKubeconfig(const std::string& name, const std::string& server, const std::string& ca_pem,
                            const std::string& token);

}  // namespace kflex::kube
