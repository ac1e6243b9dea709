// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "hub/api/api_types.hpp"
#include "hub/api/discovery.hpp"
#include "hub/store/object_store.hpp"
#include "shared/common/time.hpp"
#include "shared/model/resource.hpp"

namespace kflex::hub {

/// Limits and timings of the API.
struct ApiOptions {
  std::chrono::seconds default_watch_timeout{1800};   ///< Watch without timeoutSeconds ends after this.
  std::chrono::seconds bookmark_interval{60};         ///< BOOKMARK events when asked for.
  std::string server_version = "v1.32.0+kflex";       ///< gitVersion reported by /version.
};

/// The field manager of what the hub itself writes (its controllers, and status decided at create).
inline constexpr char kHubFieldManager[] = "kflex-hub";
/// The largest object the hub stores, serialized: etcd's default request limit (1.5 MiB), which
/// bounds kube-apiserver's objects too. Larger ones get 413.
inline constexpr size_t kMaxObjectBytes = 1536 * 1024;

/**
 * A controller that settles part of a new object's status as the object is created (placement
 * picks the agent), so that the create's own write carries what would otherwise be a second write
 * right after it. Asked for creates by POST; objects created otherwise are left to the
 * controller's own passes. Called on request threads: implementations synchronize themselves.
 */
class CreateAdmission {
 public:
  virtual ~CreateAdmission() = default;
  /// Edits the status of a validated new object (name, uid and spec are final). With dry_run,
  /// decides but holds nothing back. Returns a ticket for settled(), or 0 when there is none.
  virtual uint64_t admit(Json& object, bool dry_run) = 0;
  /// Tells whether the create admit() returned `ticket` for was stored.
  virtual void settled(const std::string& name, uint64_t ticket, bool stored) = 0;
};

/**
 * The Kubernetes-style REST API over the registry's kinds: discovery, OpenAPI, get, list, watch,
 * create, update, patch (merge, strategic, JSON, apply), delete, status subresource, Table output.
 * Thread safety: handle() may run concurrently on any number of strands.
 */
class ApiService {
 public:
  ApiService(ObjectStore& store, const model::Registry& registry, const Clock& clock, ApiOptions options);
  /// Serves one request.
  net::awaitable<ApiResponse> handle(ApiRequest req);
  /// Serves a request made by the hub itself (its controllers and enrollment), as user
  /// system:kflex-hub in group system:masters, through the same validation as any client.
  net::awaitable<ApiResponse> internal(http::verb method, std::string path, std::string body = "",
                                       std::string content_type = "application/json");
  /// Read-modify-write of one object's status by the hub itself (its controllers), validated
  /// as a PUT of the status subresource is, without a request's encoding and decoding: `change`
  /// edits the current object (on the caller's strand) and returns false when there is nothing
  /// to write; retried when the object changed meanwhile. Returns 200 (also when nothing needed
  /// writing), 404 when the object is gone, or the last attempt's error status.
  net::awaitable<unsigned> changeStatus(const model::ResourceType& type, std::string name,
                                        std::function<bool(Json& obj)> change);
  /// The same for an object of a namespaced kind.
  net::awaitable<unsigned> changeStatusIn(const model::ResourceType& type, std::string ns, std::string name,
                                          std::function<bool(Json& obj)> change);
  /// Removes `finalizer` from an object of a cluster-scoped kind (a controller has finished its
  /// cleanup); a deleting object whose last finalizer goes is deleted. True when it was removed or
  /// is already gone.
  net::awaitable<bool> removeFinalizer(const model::ResourceType& type, std::string name, std::string finalizer);
  /// Ends every open watch (graceful stop).
  void shutdown();
  /// Makes `admission` settle the status of new objects of `type` as they are created. Call
  /// before the server serves; `admission` must outlive the service.
  void setCreateAdmission(const model::ResourceType& type, CreateAdmission* admission);

 private:
  net::awaitable<ApiResponse> handleResource(ApiRequest& req, const model::ResourceType& type,
                                             const std::string& name, const std::string& subresource);
  ApiResponse get(const ApiRequest& req, const model::ResourceType& type, const std::string& name);
  ApiResponse list(const ApiRequest& req, const model::ResourceType& type);
  ApiResponse watch(const ApiRequest& req, const model::ResourceType& type, const std::string& name);
  net::awaitable<ApiResponse> create(const ApiRequest& req, const model::ResourceType& type);
  net::awaitable<ApiResponse> update(const ApiRequest& req, const model::ResourceType& type,
                                     const std::string& name, const std::string& subresource);
  net::awaitable<ApiResponse> patch(const ApiRequest& req, const model::ResourceType& type,
                                    const std::string& name, const std::string& subresource);
  net::awaitable<ApiResponse> remove(const ApiRequest& req, const model::ResourceType& type,
                                     const std::string& name);
  net::awaitable<ApiResponse> commit(const ApiRequest& req, const model::ResourceType& type,
                                     const std::string& name, Mutation mutation, unsigned created_status);
  std::string tableFor(const ApiRequest& req, const model::ResourceType& type,
                       const std::vector<ObjectPtr>& objects, int64_t revision, bool with_columns) const;

  ObjectStore& store_;
  const model::Registry& registry_;
  const Clock& clock_;
  ApiOptions options_;
  DiscoveryDocs docs_;
  std::atomic<bool> stopping_{false};
  std::map<const model::ResourceType*, CreateAdmission*> admissions_;  // set before serving
};

/// The store key of a kind ("group/plural", and "/namespace" for a namespaced kind's objects).
std::string resourceKey(const model::ResourceType& t, const std::string& ns = "");
/// The API path of an object (with "/status" when status is true; ns for a namespaced kind).
std::string objectPath(const model::ResourceType& t, const std::string& name, bool status = false,
                       const std::string& ns = "");

}  // namespace kflex::hub
