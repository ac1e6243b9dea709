// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "shared/common/result.hpp"
#include "shared/store/postgres.hpp"
#include "shared/tls/secret_box.hpp"

namespace kflex::hub {

/// The files of DATA_DIR/pki that every replica of one database must share: the CA, a rotation's
/// previous CA, cross-signed certificate and schedule, and the key that seals control planes'
/// credentials. (Each replica issues its own serving and admin certificates from the shared CA.)
const std::vector<std::string>& sharedPkiFiles();

/**
 * The shared part of the hub's PKI kept in the database (table kflex.secrets), each file sealed
 * with the operator's key (--secrets-key-file, the same on every replica), so that no replica
 * holds a PKI of its own and none has to be copied by hand (docs/dev/replicas.md).
 *
 * withFiles() takes a database lock that one replica holds at a time, writes the stored files into
 * the data dir's pki/ (the database is the truth once it holds any), runs `step` (which may make
 * or change them: the first replica's CA, a rotation), and stores what changed, all before the
 * lock is let go: two replicas starting at once on an empty database end up with one CA.
 */
class SharedPki {
 public:
  static Result<std::unique_ptr<SharedPki>> open(const store::PostgresTarget& target, tls::SecretBox box);
  Result<void> withFiles(const std::filesystem::path& pki_dir, const std::function<Result<void>()>& step);

 private:
  SharedPki(std::unique_ptr<store::Connection> conn, tls::SecretBox box, std::string where)
      : conn_(std::move(conn)), box_(std::move(box)), where_(std::move(where)) {}
  Result<void> exchange(const std::filesystem::path& pki_dir, const std::function<Result<void>()>& step);

  std::unique_ptr<store::Connection> conn_;
  tls::SecretBox box_;
  std::string where_;
};

}  // namespace kflex::hub
