// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <vector>
#include <cstdint>
#include <string>
#include <utility>

#include "shared/common/result.hpp"

namespace kflex::store {

/// Where a PostgreSQL server is and who to be there: a libpq URI without the password
/// (postgres://USER@HOST:PORT/DB?sslmode=...) and the password, read from a file so that it never
/// shows in a process list or a log.
struct PostgresTarget {
  std::string dsn;
  std::string password;
};

/// The same server, another database.
PostgresTarget withDatabase(const PostgresTarget& t, const std::string& database);
/// The server's host and port (5432 when the URI has none).
Result<std::pair<std::string, uint16_t>> serverOf(const PostgresTarget& t);
/// The URI as every Kine release takes it on --endpoint: scheme postgres:// (Kine before v0.13.1
/// refuses postgresql://), no password (it would show in a process list).
std::string kineEndpoint(const PostgresTarget& t);
/// A PGPASSFILE line that gives `password` for any host, port, database and user (':' and '\'
/// escaped as libpq and pgx read them): for a file only one program reads, with one server.
std::string passfileLine(const std::string& password);
/// The URI with any password removed, for messages.
std::string redacted(const std::string& dsn);
/// A database name for a control plane: '-' becomes '_' (as KubeFlex does).
std::string databaseNameFor(const std::string& control_plane);
/// Checks a DSN's form (postgres:// or postgresql:// with a host).
Result<void> validateDsn(const std::string& dsn);

/// Runs one SQL statement on a fresh connection, with a connect timeout.
Result<void> execute(const PostgresTarget& t, const std::string& sql, std::chrono::seconds timeout = std::chrono::seconds(5));
/// Whether database `name` exists.
Result<bool> databaseExists(const PostgresTarget& t, const std::string& name, std::chrono::seconds timeout = std::chrono::seconds(5));
/// CREATE DATABASE unless it exists.
Result<void> createDatabase(const PostgresTarget& t, const std::string& name);
/// DROP DATABASE IF EXISTS ... WITH (FORCE) (ends its connections first).
Result<void> dropDatabase(const PostgresTarget& t, const std::string& name);
/**
 * One kept connection to a PostgreSQL server, for a program that runs many statements (the hub's
 * store). Parameters and results are text; NULL is nullopt. Errors carry NoSpace when the
 * server's disk is full (SQLSTATE 53100), Conflict on a serialization failure or deadlock,
 * Unavailable when the connection is lost (reconnect() then).
 * Thread safety: one thread at a time.
 */
class Connection {
 public:
  using Row = std::vector<std::optional<std::string>>;
  /// `options`: session settings applied at every (re)connect, as libpq's options parameter
  /// ("-c synchronous_commit=on").
  static Result<std::unique_ptr<Connection>> open(const PostgresTarget& t,
                                                  std::chrono::seconds timeout = std::chrono::seconds(10),
                                                  std::string options = "");
  /// The same, not connected yet: the first ensure() connects (for a connection kept for a
  /// thread that must start whether or not the server answers now).
  static std::unique_ptr<Connection> deferred(const PostgresTarget& t,
                                              std::chrono::seconds timeout = std::chrono::seconds(10),
                                              std::string options = "");
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  /// Runs one statement (several, separated by ';', when there are no parameters); the rows of
  /// the last (none for a command).
  Result<std::vector<Row>> query(const std::string& sql, const std::vector<std::optional<std::string>>& params = {});
  /// Runs one statement, its rows ignored.
  Result<void> exec(const std::string& sql, const std::vector<std::optional<std::string>>& params = {});
  /// Whether the connection is up.
  bool ok() const;
  /// Connects again (after Unavailable), with the same session settings.
  Result<void> reconnect();
  /// Connects when not connected (never yet, or the connection was seen lost).
  Result<void> ensure();
  /// After LISTEN: waits up to `timeout` for notifications, or for `wake_fd` (when >= 0) to be
  /// readable; the payloads received, none on timeout or wake. Unavailable when the connection
  /// is lost.
  Result<std::vector<std::string>> awaitNotifications(std::chrono::milliseconds timeout, int wake_fd = -1);

 private:
  Connection(PostgresTarget t, std::chrono::seconds timeout, std::string options);
  PostgresTarget target_;
  std::chrono::seconds timeout_;
  std::string options_;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// A quoted SQL identifier.
std::string quoteIdentifier(const std::string& name);

}  // namespace kflex::store
