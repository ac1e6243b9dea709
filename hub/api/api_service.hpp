// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "hub/api/api_client.hpp"
#include "hub/api/api_types.hpp"
#include "hub/api/discovery.hpp"
#include "hub/api/patch.hpp"
#include "hub/api/router.hpp"
#include "hub/store/object_store.hpp"
#include "shared/common/time.hpp"
#include "shared/model/resource.hpp"

namespace kflex::hub {

/// Limits and timings of the API.
struct ApiOptions {
  std::chrono::seconds default_watch_timeout{1800};   ///< Watch without timeoutSeconds ends after this.
  std::chrono::seconds bookmark_interval{60};         ///< BOOKMARK events when asked for.
  std::string server_version = "v1.32.0+kflex";       ///< gitVersion reported by /version.
  /// Set for the client the controllers write through: its writes are refused while this
  /// replica does not lead, and fenced by the term it leads under (docs/dev/replicas.md).
  const Leadership* leadership = nullptr;
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
 * A facade over the API kit: routing (router), request decoding (request_codec), the rules of
 * every write (object_rules, managed_fields), patches (patch), watch (watch_stream), tables
 * (table_printer) and errors (errors). It is also the ApiClient of the hub's own code.
 * Thread safety: handle() and the ApiClient calls may run concurrently on any number of strands.
 */
class ApiService : public ApiClient {
 public:
  ApiService(ObjectStore& store, const model::Registry& registry, const Clock& clock, ApiOptions options);
  /// Serves one request.
  net::awaitable<ApiResponse> handle(ApiRequest req);
  /// Ends every open watch (graceful stop).
  void shutdown();
  /// Makes `admission` settle the status of new objects of `type` as they are created. Call
  /// before the server serves; `admission` must outlive the service.
  void setCreateAdmission(const model::ResourceType& type, CreateAdmission* admission);

  // ApiClient, as user system:kflex-hub in group system:masters.
  Result<Json> get(const model::ResourceType& type, const std::string& ns, const std::string& name) const override;
  net::awaitable<Result<Json>> create(const model::ResourceType& type, Json object) override;
  net::awaitable<Result<Json>> updateStatus(const model::ResourceType& type, Json object) override;
  net::awaitable<Result<Json>> mergePatch(const model::ResourceType& type, std::string ns, std::string name,
                                          Json patch) override;
  net::awaitable<Result<Json>> apply(const model::ResourceType& type, std::string ns, std::string name, Json object,
                                     std::string manager) override;
  net::awaitable<Result<void>> remove(const model::ResourceType& type, std::string ns, std::string name) override;
  net::awaitable<Result<void>> changeStatus(const model::ResourceType& type, std::string name,
                                            ObjectChange change) override;
  net::awaitable<Result<void>> changeStatusIn(const model::ResourceType& type, std::string ns, std::string name,
                                              ObjectChange change) override;
  net::awaitable<bool> removeFinalizer(const model::ResourceType& type, std::string name,
                                       std::string finalizer) override;
  const Leadership* leadership() const override { return options_.leadership; }

 private:
  net::awaitable<ApiResponse> handleResource(ApiRequest& req, const model::ResourceType& type,
                                             const std::string& name, const std::string& subresource);
  // The HTTP verbs: decode the request, then run the write below and encode its outcome.
  ApiResponse get(const ApiRequest& req, const model::ResourceType& type, const std::string& name);
  ApiResponse list(const ApiRequest& req, const model::ResourceType& type);
  net::awaitable<ApiResponse> create(const ApiRequest& req, const model::ResourceType& type);
  net::awaitable<ApiResponse> update(const ApiRequest& req, const model::ResourceType& type,
                                     const std::string& name, const std::string& subresource);
  net::awaitable<ApiResponse> patch(const ApiRequest& req, const model::ResourceType& type,
                                    const std::string& name, const std::string& subresource);
  net::awaitable<ApiResponse> remove(const ApiRequest& req, const model::ResourceType& type,
                                     const std::string& name);
  // The writes, on decoded objects: shared by the HTTP verbs and the ApiClient calls.
  net::awaitable<WriteResult> createObject(const ApiRequest& req, const model::ResourceType& type, Json obj);
  net::awaitable<WriteResult> updateObject(const ApiRequest& req, const model::ResourceType& type,
                                           const std::string& name, const std::string& subresource, Json obj);
  net::awaitable<WriteResult> patchObject(const ApiRequest& req, const model::ResourceType& type,
                                          const std::string& name, const std::string& subresource, PatchKind kind,
                                          Json patch_doc);
  net::awaitable<WriteResult> applyObject(const ApiRequest& req, const model::ResourceType& type,
                                          const std::string& name, const std::string& subresource, Json applied,
                                          std::string manager, bool force);
  net::awaitable<WriteResult> removeObject(const ApiRequest& req, const model::ResourceType& type,
                                           const std::string& name, Json preconditions);
  /// Computes a write on the request's strand and hands it to the store (or runs it dry).
  net::awaitable<WriteResult> commit(const ApiRequest& req, const model::ResourceType& type, const std::string& name,
                                     Mutation mutation);

  ObjectStore& store_;
  const model::Registry& registry_;
  const Clock& clock_;
  ApiOptions options_;
  DiscoveryDocs docs_;
  std::atomic<bool> stopping_{false};
  std::map<const model::ResourceType*, CreateAdmission*> admissions_;  // set before serving
};

}  // namespace kflex::hub
