// SPDX-License-Identifier: Apache-2.0
// Stand-in for Kine (k3s-io/kine), the etcd shim the k8s type runs in front of PostgreSQL. As the
// real one it refuses unknown flags and positional arguments, reads --endpoint (or KINE_ENDPOINT),
// creates the database when it is missing and its `kine` table and indexes in it, keeps a
// connection, listens on --listen-address (default 0.0.0.0:2379) and serves metrics on
// --metrics-bind-address (default :8080, fatal when taken; 0 turns it off). Instead of etcd's
// gRPC it answers one health line on its port ("health" -> "ok", or why not), which is how the
// kube-apiserver stand-in checks its storage.
#include <libpq-fe.h>
#include <sqlite3.h>
#include <unistd.h>

#include <iostream>
#include <memory>

#include "shared/common/log.hpp"
#include "shared/store/postgres.hpp"
#include "tests/standins/standin.hpp"

namespace {

using namespace kflex;
using tcp = net::ip::tcp;

std::vector<standin::FlagSpec> kineFlags() {
  std::vector<standin::FlagSpec> f;
  for (const char* n : {"listen-address", "endpoint", "ca-file", "cert-file", "key-file", "server-cert-file",
                        "server-key-file", "trusted-ca-file", "metrics-bind-address", "datastore-max-idle-connections",
                        "datastore-max-open-connections", "datastore-connection-max-lifetime",
                        "datastore-connection-max-idle-time", "watch-progress-notify-interval", "emulated-etcd-version",
                        "compact-interval", "compact-timeout", "compact-min-retain", "compact-batch-size",
                        "poll-batch-size", "slow-sql-threshold", "log-format", "table-name"}) {
    std::string env = "KINE_";
    for (const char* c = n; *c; ++c) {
      env += *c == '-' ? '_' : static_cast<char>(std::toupper(*c));
    }
    f.push_back({n, false, {}, env});
  }
  f.push_back({"skip-verify", true, {}, "KINE_SKIP_VERIFY"});
  f.push_back({"debug", true, {}, "KINE_DEBUG"});
  return f;
}

int fatal(const std::string& msg) {
  log::error(msg);
  return 1;
}

// host:port (":8080" = all addresses) -> endpoint.
bool parseListen(const std::string& text, tcp::endpoint& ep) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos) {
    return false;
  }
  std::string host = text.substr(0, colon);
  boost::system::error_code ec;
  auto addr = host.empty() ? net::ip::address(net::ip::address_v4::any()) : net::ip::make_address(host, ec);
  if (ec) {
    return false;
  }
  ep = tcp::endpoint(addr, static_cast<uint16_t>(std::atoi(text.substr(colon + 1).c_str())));
  return true;
}

struct Database {
  std::unique_ptr<PGconn, decltype(&PQfinish)> pg{nullptr, PQfinish};
  sqlite3* lite = nullptr;
  std::string problem;  // "" when healthy
};

Result<void> setUpPostgres(Database& db, const std::string& endpoint) {
  // Kine's own parsing: the database is the path (default "kubernetes"), created when missing.
  std::string uri = endpoint;
  std::string query;
  if (auto q = uri.find('?'); q != std::string::npos) {
    query = uri.substr(q);
    uri = uri.substr(0, q);
  }
  auto scheme_end = uri.find("://");
  auto slash = uri.find('/', scheme_end + 3);
  std::string name = slash == std::string::npos || slash + 1 >= uri.size() ? "kubernetes" : uri.substr(slash + 1);
  std::string server = slash == std::string::npos ? uri : uri.substr(0, slash);
  store::PostgresTarget admin{server + "/postgres" + query, ""};
  log::info("Configuring postgres database connection pooling: maxIdleConns=2, maxOpenConns=0, connMaxLifetime=0s");
  if (auto exists = store::databaseExists(admin, name); !exists) {
    return exists.error();
  } else if (!*exists) {
    log::info("creating database " + name);
    if (auto r = store::execute(admin, "CREATE DATABASE " + store::quoteIdentifier(name)); !r) {
      log::warn("failed to create database " + name + ": " + r.error().message);
    }
  }
  std::string target = server + "/" + name + query;
  db.pg.reset(PQconnectdb(target.c_str()));
  if (PQstatus(db.pg.get()) != CONNECTION_OK) {
    return fail(std::string("failed to connect to database: ") + PQerrorMessage(db.pg.get()));
  }
  log::info("Configuring database table schema and indexes, this may take a moment...");
  const char* schema =
      "CREATE TABLE IF NOT EXISTS kine (id BIGSERIAL PRIMARY KEY, name text COLLATE \"C\", created INTEGER, "
      "deleted INTEGER, create_revision BIGINT, prev_revision BIGINT, lease INTEGER, value bytea, old_value bytea);"
      "CREATE INDEX IF NOT EXISTS kine_name_index ON kine (name);"
      "CREATE INDEX IF NOT EXISTS kine_name_id_index ON kine (name,id);"
      "CREATE INDEX IF NOT EXISTS kine_id_deleted_index ON kine (id,deleted);"
      "CREATE INDEX IF NOT EXISTS kine_prev_revision_index ON kine (prev_revision);"
      "CREATE UNIQUE INDEX IF NOT EXISTS kine_name_prev_revision_uindex ON kine (name, prev_revision);";
  std::unique_ptr<PGresult, decltype(&PQclear)> r(PQexec(db.pg.get(), schema), PQclear);
  if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
    return fail(std::string("failed to create the kine table: ") + PQerrorMessage(db.pg.get()));
  }
  log::info("Database tables and indexes are up to date");
  return {};
}

void checkHealth(Database& db) {
  if (db.lite != nullptr) {
    return;
  }
  std::unique_ptr<PGresult, decltype(&PQclear)> r(PQexec(db.pg.get(), "SELECT COUNT(*) FROM kine"), PQclear);
  if (PQresultStatus(r.get()) == PGRES_TUPLES_OK) {
    if (!db.problem.empty()) {
      log::info("database connection restored");
    }
    db.problem.clear();
    return;
  }
  std::string why = PQerrorMessage(db.pg.get());
  while (!why.empty() && why.back() == '\n') {
    why.pop_back();
  }
  if (db.problem.empty()) {
    log::error("database unavailable: " + why);
  }
  db.problem = why.empty() ? "database unavailable" : why;
  PQreset(db.pg.get());
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && (args[0] == "--version" || args[0] == "-v")) {
    std::cout << "kine version v0.13.0 (kflex-standin)\n";
    return 0;
  }
  auto flags = standin::Flags::parse(args, kineFlags());
  if (!flags) {
    std::cerr << "Incorrect Usage: " << flags.error().message << "\n";
    return 1;
  }
  const auto& f = flags.value();
  Database db;
  std::string endpoint = f.get("endpoint");
  if (endpoint.empty() || endpoint.rfind("sqlite://", 0) == 0) {
    std::error_code ec;
    std::filesystem::create_directories("db", ec);
    std::string path = endpoint.empty() ? "./db/state.db" : endpoint.substr(9);
    if (sqlite3_open(path.c_str(), &db.lite) != SQLITE_OK) {
      return fatal("failed to open sqlite database " + path);
    }
  } else if (endpoint.rfind("postgres://", 0) == 0 || endpoint.rfind("postgresql://", 0) == 0) {
    if (auto r = setUpPostgres(db, endpoint); !r) {
      return fatal(r.error().message);
    }
  } else {
    return fatal("storage endpoint \"" + store::redacted(endpoint) + "\" is not supported by this stand-in "
                 "(postgres:// or sqlite://)");
  }
  net::io_context ioc{1};
  std::string listen = f.get("listen-address", "0.0.0.0:2379");
  tcp::endpoint ep;
  if (!parseListen(listen, ep)) {
    return fatal("invalid listen address " + listen);
  }
  tcp::acceptor acceptor(ioc);
  boost::system::error_code ec;
  acceptor.open(ep.protocol(), ec);
  acceptor.set_option(net::socket_base::reuse_address(true), ec);
  acceptor.bind(ep, ec);
  if (!ec) {
    acceptor.listen(64, ec);
  }
  if (ec) {
    return fatal("listen tcp " + listen + ": bind: " + ec.message());
  }
  std::string metrics = f.get("metrics-bind-address", ":8080");
  tcp::acceptor metrics_acceptor(ioc);
  if (metrics != "0") {
    tcp::endpoint mep;
    if (!parseListen(metrics, mep)) {
      return fatal("invalid metrics address " + metrics);
    }
    metrics_acceptor.open(mep.protocol(), ec);
    metrics_acceptor.set_option(net::socket_base::reuse_address(true), ec);
    metrics_acceptor.bind(mep, ec);
    if (!ec) {
      metrics_acceptor.listen(16, ec);
    }
    if (ec) {
      return fatal("error creating the metrics listener: listen tcp " + metrics + ": bind: " + ec.message());
    }
  }
  checkHealth(db);
  log::info("Kine available at http://127.0.0.1:" + std::to_string(acceptor.local_endpoint().port()));

  // The health line protocol, one coroutine per connection.
  auto serve = [&db](tcp::socket s) -> net::awaitable<void> {
    std::string buf;
    while (true) {
      auto [rec, n] = co_await net::async_read_until(s, net::dynamic_buffer(buf), '\n', net::as_tuple(net::use_awaitable));
      if (rec) {
        co_return;
      }
      buf.erase(0, n);
      std::string answer = db.problem.empty() ? "ok\n" : "unhealthy: " + db.problem + "\n";
      auto [wec, wn] = co_await net::async_write(s, net::buffer(answer), net::as_tuple(net::use_awaitable));
      if (wec) {
        co_return;
      }
    }
  };
  std::function<void()> accept = [&] {
    acceptor.async_accept([&](boost::system::error_code e, tcp::socket s) {
      if (e) {
        return;
      }
      net::co_spawn(ioc, serve(std::move(s)), net::detached);
      accept();
    });
  };
  accept();
  std::function<void()> accept_metrics = [&] {
    if (!metrics_acceptor.is_open()) {
      return;
    }
    metrics_acceptor.async_accept([&](boost::system::error_code e, tcp::socket s) {
      if (e) {
        return;
      }
      static const std::string res = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n\r\n# kine stand-in ok\n\n";
      auto sock = std::make_shared<tcp::socket>(std::move(s));
      net::async_write(*sock, net::buffer(res), [sock](boost::system::error_code, size_t) {});
      accept_metrics();
    });
  };
  accept_metrics();
  net::steady_timer health(ioc);
  std::function<void()> tick = [&] {
    health.expires_after(std::chrono::seconds(1));
    health.async_wait([&](boost::system::error_code e) {
      if (!e) {
        checkHealth(db);
        tick();
      }
    });
  };
  tick();
  int rc = standin::runUntilSignalled(ioc, [&] {
    log::info("Waiting up to 2s for graceful shutdown of Kine GRPC server...");
    acceptor.close();
  });
  if (db.lite != nullptr) {
    sqlite3_close(db.lite);
  }
  return rc;
}
