// SPDX-License-Identifier: Apache-2.0
#pragma once

// Watch (?watch=true): subscribes to the store's events at the asked revision (410 when it is
// older than the retained events), then streams them as kube-apiserver does, one JSON event per
// line, filtered by name and selectors, as Table rows when asked, with BOOKMARK events
// (allowWatchBookmarks, sendInitialEvents) and an end at timeoutSeconds or shutdown.

#include <atomic>
#include <chrono>
#include <string>

#include "hub/api/api_types.hpp"
#include "hub/store/object_store.hpp"
#include "shared/common/time.hpp"
#include "shared/model/resource.hpp"

namespace kflex::hub {

/// One watch event line ({"type":"ADDED","object":...}\n) around an encoded object.
std::string watchEventLine(EventType type, const std::string& object_json);

/// The response of a watch of kind `t` (of object `name` when not empty): an error status, or a
/// stream that ends when the client goes, at its timeout, or once `stopping` is set. `store`,
/// `stopping` and `clock` must outlive the stream.
ApiResponse watchResponse(ObjectStore& store, const std::atomic<bool>& stopping, const Clock& clock, const ApiRequest& req,
                          const model::ResourceType& t, const std::string& name, std::chrono::seconds default_timeout,
                          std::chrono::seconds bookmark_interval);

}  // namespace kflex::hub
