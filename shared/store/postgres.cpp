// SPDX-License-Identifier: Apache-2.0
#include "shared/store/postgres.hpp"

#include <libpq-fe.h>

#include <memory>
#include <vector>

namespace kflex::store {
namespace {

using Conn = std::unique_ptr<PGconn, decltype(&PQfinish)>;
using Res = std::unique_ptr<PGresult, decltype(&PQclear)>;

// The parts of postgres://[user[:password]@]host[:port][/db][?query].
struct Parts {
  std::string scheme, user, password, hostport, db, query;
};

Result<Parts> split(const std::string& dsn) {
  Parts p;
  auto colon = dsn.find("://");
  if (colon == std::string::npos) {
    return fail("not a postgres:// URI");
  }
  p.scheme = dsn.substr(0, colon);
  std::string rest = dsn.substr(colon + 3);
  if (auto q = rest.find('?'); q != std::string::npos) {
    p.query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    p.db = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
  }
  if (auto at = rest.rfind('@'); at != std::string::npos) {
    std::string cred = rest.substr(0, at);
    rest = rest.substr(at + 1);
    auto c = cred.find(':');
    p.user = cred.substr(0, c);
    if (c != std::string::npos) {
      p.password = cred.substr(c + 1);
    }
  }
  p.hostport = rest;
  return p;
}

std::string join(const Parts& p, bool with_password) {
  std::string out = p.scheme + "://";
  if (!p.user.empty()) {
    out += p.user;
    if (with_password && !p.password.empty()) {
      out += ":" + p.password;
    }
    out += "@";
  }
  out += p.hostport;
  if (!p.db.empty()) {
    out += "/" + p.db;
  }
  if (!p.query.empty()) {
    out += "?" + p.query;
  }
  return out;
}

Result<Conn> connect(const PostgresTarget& t, std::chrono::seconds timeout) {
  std::string secs = std::to_string(std::max<long>(1, timeout.count()));
  std::vector<const char*> keys = {"dbname", "connect_timeout", "password", nullptr};
  std::vector<const char*> values = {t.dsn.c_str(), secs.c_str(), t.password.empty() ? nullptr : t.password.c_str(),
                                     nullptr};
  if (t.password.empty()) {
    keys[2] = nullptr;
  }
  Conn c(PQconnectdbParams(keys.data(), values.data(), 1), PQfinish);
  if (!c || PQstatus(c.get()) != CONNECTION_OK) {
    std::string msg = c ? PQerrorMessage(c.get()) : "out of memory";
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) {
      msg.pop_back();
    }
    return fail("cannot connect to PostgreSQL at " + redacted(t.dsn) + ": " + msg);
  }
  return c;
}

}  // namespace

PostgresTarget withDatabase(const PostgresTarget& t, const std::string& database) {
  auto p = split(t.dsn);
  if (!p) {
    return t;
  }
  p->db = database;
  return {join(*p, true), t.password};
}

Result<std::pair<std::string, uint16_t>> serverOf(const PostgresTarget& t) {
  auto p = split(t.dsn);
  if (!p || p->hostport.empty()) {
    return fail("no server in " + redacted(t.dsn));
  }
  std::string host = p->hostport;
  uint16_t port = 5432;
  auto colon = host.rfind(':');
  if (colon != std::string::npos && host.find(']', colon) == std::string::npos) {
    port = static_cast<uint16_t>(std::atoi(host.substr(colon + 1).c_str()));
    host = host.substr(0, colon);
  }
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return std::make_pair(host, port);
}

std::string kineEndpoint(const PostgresTarget& t) {
  auto p = split(t.dsn);
  if (!p) {
    return t.dsn;
  }
  p->scheme = "postgres";
  return join(*p, false);
}

std::string passfileLine(const std::string& password) {
  std::string escaped;
  for (char c : password) {
    if (c == ':' || c == '\\') {
      escaped += '\\';
    }
    escaped += c;
  }
  return "*:*:*:*:" + escaped + "\n";
}

std::string redacted(const std::string& dsn) {
  auto p = split(dsn);
  return p ? join(*p, false) : "<not a URI>";
}

std::string databaseNameFor(const std::string& control_plane) {
  std::string out = control_plane;
  for (char& c : out) {
    if (c == '-') {
      c = '_';
    }
  }
  return out;
}

Result<void> validateDsn(const std::string& dsn) {
  auto p = split(dsn);
  if (!p || (p->scheme != "postgres" && p->scheme != "postgresql") || p->hostport.empty()) {
    return fail("\"" + redacted(dsn) + "\" is not a PostgreSQL URI such as postgres://kflex@db.example:5432/postgres?sslmode=require");
  }
  if (!p->password.empty()) {
    return fail("the DSN holds a password; put it in a file (postgres_password_file) instead, so it shows in no "
                "process list or log");
  }
  return {};
}

std::string quoteIdentifier(const std::string& name) {
  std::string out = "\"";
  for (char c : name) {
    out += c;
    if (c == '"') {
      out += '"';
    }
  }
  return out + "\"";
}

Result<void> execute(const PostgresTarget& t, const std::string& sql, std::chrono::seconds timeout) {
  auto c = connect(t, timeout);
  if (!c) {
    return c.error();
  }
  Res r(PQexec(c->get(), sql.c_str()), PQclear);
  auto st = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    std::string msg = PQerrorMessage(c->get());
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) {
      msg.pop_back();
    }
    return fail(msg);
  }
  return {};
}

Result<bool> databaseExists(const PostgresTarget& t, const std::string& name, std::chrono::seconds timeout) {
  auto c = connect(t, timeout);
  if (!c) {
    return c.error();
  }
  const char* params[] = {name.c_str()};
  Res r(PQexecParams(c->get(), "SELECT 1 FROM pg_database WHERE datname = $1", 1, nullptr, params, nullptr, nullptr, 0),
        PQclear);
  if (!r || PQresultStatus(r.get()) != PGRES_TUPLES_OK) {
    return fail(std::string("cannot list databases: ") + PQerrorMessage(c->get()));
  }
  return PQntuples(r.get()) > 0;
}

Result<void> createDatabase(const PostgresTarget& t, const std::string& name) {
  auto exists = databaseExists(t, name);
  if (!exists) {
    return exists.error();
  }
  if (*exists) {
    return {};
  }
  if (auto r = execute(t, "CREATE DATABASE " + quoteIdentifier(name)); !r) {
    // (Someone else may have made it meanwhile.)
    auto again = databaseExists(t, name);
    if (again && *again) {
      return {};
    }
    return fail("cannot create database " + name + ": " + r.error().message);
  }
  return {};
}

Result<void> dropDatabase(const PostgresTarget& t, const std::string& name) {
  if (auto r = execute(t, "DROP DATABASE IF EXISTS " + quoteIdentifier(name) + " WITH (FORCE)"); !r) {
    return fail("cannot drop database " + name + ": " + r.error().message);
  }
  return {};
}

}  // namespace kflex::store
