// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <filesystem>
#include <string>

#include "hub/app/hub_config.hpp"
#include "shared/common/result.hpp"

namespace kflex::hub {

/**
 * `kflex-hub migrate --from-sqlite DIR`: moves a stopped hub's objects and retained events (DIR/
 * hub.db), with their revisions, into the empty PostgreSQL database `to.datastore`, and, with
 * `to.secrets_key_file`, its CA and keys (DIR/pki) into the database too. Watches resume across it
 * by resourceVersion and every kubeconfig and agent certificate stays valid. Refuses a database
 * that already holds a hub. Returns what was done and what to run next.
 */
Result<std::string> migrateFromSqlite(const std::filesystem::path& from_dir, const HubConfig& to);

}  // namespace kflex::hub
