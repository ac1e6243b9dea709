// SPDX-License-Identifier: Apache-2.0
#pragma once

// Patches, as mutations of the stored object: JSON merge patch (RFC 7386), strategic merge patch
// (for kinds without patch strategies: a merge patch without its directives), JSON patch
// (RFC 6902, against the object with its resourceVersion so that a "test" of it works), and
// server-side apply (field ownership by manager, conflicts, force).

#include <string>

#include "hub/api/api_types.hpp"
#include "hub/store/object_store.hpp"
#include "shared/model/resource.hpp"

namespace kflex::hub {

enum class PatchKind { Merge, Strategic, Json6902 };

/// The mutation of a patch of object `name` (subresource "" or "status") with `patch` at `now`.
Mutation patchMutation(const model::ResourceType& t, ApiRequest req, std::string name, std::string sub, PatchKind kind,
                       Json patch_doc, std::string now);
/// The mutation of a server-side apply of `applied` by `manager` (creates the object when absent).
Mutation applyMutation(const model::ResourceType& t, ApiRequest req, std::string name, std::string sub, Json applied,
                       std::string manager, bool force, std::string now);

}  // namespace kflex::hub
