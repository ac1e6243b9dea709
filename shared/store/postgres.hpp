// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
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
/// A quoted SQL identifier.
std::string quoteIdentifier(const std::string& name);

}  // namespace kflex::store
