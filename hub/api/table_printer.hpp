// SPDX-License-Identifier: Apache-2.0
#pragma once

// Table output (Accept: application/json;as=Table), as kubectl get prints it: the kind's
// additional printer columns, ages as kubectl shows them, and each row's object in full, as
// PartialObjectMetadata, or not at all (includeObject).

#include <string>
#include <vector>

#include "hub/api/api_types.hpp"
#include "hub/store/object_store.hpp"
#include "shared/common/time.hpp"
#include "shared/model/resource.hpp"

namespace kflex::hub {

/// True when the request asks for a Table.
bool wantsTable(const ApiRequest& req);
/// The Table of `objects` at `revision` (column definitions only when `with_columns`); ages are
/// counted to `now`.
std::string tableFor(const ApiRequest& req, const model::ResourceType& t, const std::vector<ObjectPtr>& objects,
                     int64_t revision, bool with_columns, TimePoint now);

}  // namespace kflex::hub
