// SPDX-License-Identifier: Apache-2.0
#pragma once

// What the hub's own code (controllers, enrollment) and tests read and write objects through,
// in process: typed calls that go through the same rules as a client's request (validation,
// defaults, managed fields, admission), made as user system:kflex-hub in group system:masters,
// without URLs or encoded bodies. Errors are project error codes (Errc::NotFound, Conflict,
// Invalid, ...), never HTTP statuses.

#include <functional>
#include <string>

#include "hub/store/leadership.hpp"
#include "hub/store/object_store.hpp"
#include "shared/common/result.hpp"
#include "shared/model/resource.hpp"
#include "shared/net/asio.hpp"

namespace kflex::hub {

/// Edits an object in place; returns false when there is nothing to write.
using ObjectChange = std::function<bool(Json& obj)>;

/**
 * Typed access to the API's objects. `ns` is the namespace of an object of a namespaced kind and
 * ignored for a cluster-scoped one. Thread safety: as ApiService::handle().
 */
class ApiClient {
 public:
  virtual ~ApiClient() = default;

  /// The current object; NotFound when there is none.
  virtual Result<Json> get(const model::ResourceType& type, const std::string& ns, const std::string& name) const = 0;
  /// Creates `object` (a namespaced kind's namespace is its metadata.namespace) and returns it as
  /// stored: Conflict when the name is taken, Invalid when it breaks the kind's rules.
  virtual net::awaitable<Result<Json>> create(const model::ResourceType& type, Json object) = 0;
  /// Replaces the status of `object`, whose metadata.resourceVersion must be current (Conflict
  /// otherwise); returns the object as stored.
  virtual net::awaitable<Result<Json>> updateStatus(const model::ResourceType& type, Json object) = 0;
  /// Applies a JSON merge patch (RFC 7386) to an object; a metadata.resourceVersion in the patch
  /// is a precondition (Conflict when stale). Returns the object as stored.
  virtual net::awaitable<Result<Json>> mergePatch(const model::ResourceType& type, std::string ns, std::string name,
                                                  Json patch) = 0;
  /// Server-side apply of `object` by field manager `manager`, forcing conflicts; creates the
  /// object when absent. Returns the object as stored.
  virtual net::awaitable<Result<Json>> apply(const model::ResourceType& type, std::string ns, std::string name,
                                             Json object, std::string manager) = 0;
  /// Deletes an object (marks it deleting while finalizers hold it): NotFound when there is none.
  virtual net::awaitable<Result<void>> remove(const model::ResourceType& type, std::string ns, std::string name) = 0;
  /// Read-modify-write of the status of an object of a cluster-scoped kind: `change` edits the
  /// current object (on the caller's strand) and returns false when there is nothing to write;
  /// retried when the object changed meanwhile. Succeeds also when nothing needed writing;
  /// NotFound when the object is gone, or the last attempt's error.
  virtual net::awaitable<Result<void>> changeStatus(const model::ResourceType& type, std::string name,
                                                    ObjectChange change) = 0;
  /// The same for an object of a namespaced kind.
  virtual net::awaitable<Result<void>> changeStatusIn(const model::ResourceType& type, std::string ns,
                                                      std::string name, ObjectChange change) = 0;
  /// Removes `finalizer` from an object of a cluster-scoped kind (a controller has finished its
  /// cleanup); a deleting object whose last finalizer goes is deleted. True when it was removed or
  /// is already gone.
  virtual net::awaitable<bool> removeFinalizer(const model::ResourceType& type, std::string name,
                                               std::string finalizer) = 0;
  /// The lead this client's writes are fenced by (the controllers' client of a replica), or
  /// nullptr: controllers built on it reconcile only while it leads.
  virtual const Leadership* leadership() const { return nullptr; }
};

}  // namespace kflex::hub
