// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <memory>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "hub/store/store_backend.hpp"
#include "shared/store/postgres.hpp"

namespace kflex::hub {

/// Creates or upgrades the kflex schema (tables meta, objects, events, leader, secrets), one
/// session at a time; an error when the database's schema is newer than this build's.
Result<void> migrateSchema(store::Connection& conn, const std::string& where);

/**
 * The store in a PostgreSQL database (schema kflex; docs/dev/replicas.md has the design): the same
 * objects and event log as SQLite's, text bodies. A group is one transaction that first takes the
 * revision row's lock (`SELECT ... FOR UPDATE`) and ends by moving that row to the group's last
 * revision, so groups commit one at a time in revision order. COMMIT is durable
 * (synchronous_commit on), so sync() has nothing to do.
 * Several hub replicas share one database: a group that finds the revision moved first reads what
 * the others committed since (begin() returns it), and between groups catchUp() and the
 * changeSignal() (LISTEN kflex_events) bring the others' groups to this store.
 */
class PostgresBackend : public StoreBackend {
 public:
  static Result<std::unique_ptr<PostgresBackend>> open(const store::PostgresTarget& target);

  const std::string& where() const override { return where_; }
  Result<LoadedState> load() override;
  Result<Changes> begin() override;
  Result<void> put(const std::string& resource, const std::string& name, int64_t revision) override;
  Result<void> remove(const std::string& resource, const std::string& name) override;
  Result<void> appendEvent(const Event& event) override;
  Result<void> dropEvent(int64_t revision) override;
  Result<void> compact(int64_t from, int64_t to) override;
  Result<void> setMeta(int64_t revision, int64_t compacted) override;
  Result<void> commit() override;
  void rollback() override;
  Result<void> sync() override { return {}; }
  Result<Changes> catchUp() override;
  std::unique_ptr<ChangeSignal> changeSignal() override;
  Result<int64_t> leaderTerm() override;
  std::unique_ptr<LeaderElection> leaderElection(const std::string& holder, std::chrono::seconds lease) override;

 private:
  PostgresBackend(store::PostgresTarget target, std::unique_ptr<store::Connection> conn)
      : target_(std::move(target)), where_(store::redacted(target_.dsn)), conn_(std::move(conn)) {}
  Result<void> migrate();
  /// Every object and retained event, and the meta rows (in the caller's transaction).
  Result<LoadedState> readAll();
  /// The events after `after` in revision order; bodies shared with `live` where current.
  Result<std::vector<EventPtr>> readEvents(int64_t after, const std::unordered_map<std::string, ObjectPtr>* live);
  /// What other writers committed after revision_ up to `stored` (the revision row's value, read
  /// with the others' groups settled); moves revision_ there.
  Result<Changes> changesSince(int64_t stored);
  /// After the connection was lost during COMMIT: whether the group was committed.
  Result<bool> committedAfterLoss();
  /// The statement's error, the transaction rolled back.
  Error abort(const Error& e);
  /// Writes the group's waiting rows (put, appendEvent), one statement per table.
  Result<void> flush();
  static constexpr size_t kMaxPendingRows = 2000;  // (5 parameters a row; PostgreSQL takes 65,535)

  store::PostgresTarget target_;
  std::string where_;
  std::unique_ptr<store::Connection> conn_;
  std::string xact_;  // the group's transaction id
  std::vector<EventPtr> pending_events_;
  std::vector<std::pair<std::pair<std::string, std::string>, int64_t>> pending_puts_;  // (resource, name) -> revision
  std::map<std::pair<std::string, std::string>, size_t> pending_put_index_;
  int64_t revision_ = 0;      // what this store has committed (or loaded)
  int64_t group_last_ = 0;    // the highest revision of the group in progress
  bool in_transaction_ = false;
};

}  // namespace kflex::hub
