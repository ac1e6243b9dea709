// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <memory>
#include <string>

#include "hub/store/store_backend.hpp"
#include "shared/store/postgres.hpp"

namespace kflex::hub {

/**
 * The store in a PostgreSQL database (schema kflex; docs/dev/replicas.md has the design): the same
 * objects and event log as SQLite's, text bodies. A group is one transaction that first takes the
 * revision row's lock (`SELECT ... FOR UPDATE`) and ends by moving that row to the group's last
 * revision, so groups commit one at a time in revision order. COMMIT is durable
 * (synchronous_commit on), so sync() has nothing to do.
 * One hub per database for now: a group that finds the revision moved by another writer fails
 * (several replicas need the follower of docs/dev/replicas.md, not built yet).
 */
class PostgresBackend : public StoreBackend {
 public:
  static Result<std::unique_ptr<PostgresBackend>> open(const store::PostgresTarget& target);

  const std::string& where() const override { return where_; }
  Result<LoadedState> load() override;
  Result<void> begin() override;
  Result<void> put(const std::string& resource, const std::string& name, int64_t revision) override;
  Result<void> remove(const std::string& resource, const std::string& name) override;
  Result<void> appendEvent(const Event& event) override;
  Result<void> dropEvent(int64_t revision) override;
  Result<void> compact(int64_t from, int64_t to) override;
  Result<void> setMeta(int64_t revision, int64_t compacted) override;
  Result<void> commit() override;
  void rollback() override;
  Result<void> sync() override { return {}; }

 private:
  PostgresBackend(std::string where, std::unique_ptr<store::Connection> conn)
      : where_(std::move(where)), conn_(std::move(conn)) {}
  Result<void> migrate();
  /// After the connection was lost during COMMIT: whether the group was committed.
  Result<bool> committedAfterLoss();
  /// The statement's error, the transaction rolled back.
  Error abort(const Error& e);

  std::string where_;
  std::unique_ptr<store::Connection> conn_;
  int64_t revision_ = 0;      // what this store has committed (or loaded)
  int64_t group_last_ = 0;    // the highest revision of the group in progress
  bool in_transaction_ = false;
};

}  // namespace kflex::hub
