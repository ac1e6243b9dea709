// SPDX-License-Identifier: Apache-2.0
#include "tests/standins/standin.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <iostream>

#include "shared/common/util.hpp"

namespace kflex::standin {

Result<Flags> Flags::parse(const std::vector<std::string>& args, const std::vector<FlagSpec>& specs, bool pflag) {
  Flags out;
  auto find = [&](const std::string& n) -> const FlagSpec* {
    for (const auto& s : specs) {
      if (s.name == n || std::find(s.aliases.begin(), s.aliases.end(), n) != s.aliases.end()) {
        return &s;
      }
    }
    return nullptr;
  };
  for (const auto& s : specs) {
    if (!s.env.empty()) {
      if (const char* v = std::getenv(s.env.c_str()); v != nullptr && *v != '\0') {
        out.values_[s.name].push_back(v);
      }
    }
  }
  std::map<std::string, bool> from_env;
  for (const auto& [k, v] : out.values_) {
    from_env[k] = true;
  }
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.size() < 2 || a[0] != '-') {
      return fail("positional arguments are not accepted: \"" + a + "\"");
    }
    std::string body = a.substr(a[1] == '-' ? 2 : 1);
    std::string name = body;
    std::optional<std::string> value;
    if (auto eq = body.find('='); eq != std::string::npos) {
      name = body.substr(0, eq);
      value = body.substr(eq + 1);
    }
    const FlagSpec* spec = find(name);
    if (spec == nullptr) {
      // (Go's flag package and urfave/cli, or spf13/pflag as Kubernetes' programs use.)
      return fail(pflag ? "unknown flag: --" + name : "flag provided but not defined: -" + name);
    }
    if (spec->is_bool) {
      if (value && *value != "true" && *value != "false") {
        return fail("invalid boolean value \"" + *value + "\" for -" + name);
      }
      value = value.value_or("true");
    } else if (!value) {
      if (i + 1 >= args.size()) {
        return fail("flag needs an argument: -" + name);
      }
      value = args[++i];
    }
    if (from_env[spec->name]) {
      out.values_[spec->name].clear();  // the command line wins over the environment
      from_env[spec->name] = false;
    }
    out.values_[spec->name].push_back(*value);
  }
  return out;
}

std::string Flags::get(const std::string& name, const std::string& def) const {
  auto it = values_.find(name);
  return it == values_.end() || it->second.empty() ? def : it->second.back();
}

std::vector<std::string> Flags::all(const std::string& name) const {
  std::vector<std::string> out;
  auto it = values_.find(name);
  if (it != values_.end()) {
    for (const auto& v : it->second) {
      for (const auto& part : split(v, ',')) {
        if (!part.empty()) {
          out.push_back(part);
        }
      }
    }
  }
  return out;
}

bool Flags::flag(const std::string& name) const { return get(name, "false") == "true"; }

std::chrono::milliseconds startupDelay(std::chrono::milliseconds def) {
  if (const char* v = std::getenv("KFLEX_STANDIN_STARTUP_MS"); v != nullptr && *v != '\0') {
    return std::chrono::milliseconds(std::strtoll(v, nullptr, 10));
  }
  return def;
}

Result<void> holdPort(const std::string& address, uint16_t port, std::vector<int>& held) {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, address.c_str(), &a.sin_addr);
  if (s < 0 || ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(s, 16) != 0) {
    int err = errno;
    if (s >= 0) {
      ::close(s);
    }
    // Go's wording, which the real programs print.
    return fail("listen tcp " + address + ":" + std::to_string(port) + ": bind: " + std::strerror(err));
  }
  held.push_back(s);
  return {};
}

Result<std::unique_ptr<ApiServer>> ApiServer::start(net::io_context& ioc, std::shared_ptr<ssl::context> tls,
                                                    const std::filesystem::path& db, const std::string& host,
                                                    uint16_t port, std::chrono::steady_clock::time_point ready_at,
                                                    std::map<std::string, std::string> always) {
  std::unique_ptr<ApiServer> s(new ApiServer());
  s->registry_ = model::kflexRegistry();
  auto store = hub::ObjectStore::open(db, hub::StoreOptions{});
  if (!store) {
    return fail(db.string() + ": " + store.error().message);
  }
  s->store_ = std::move(store.value());
  s->api_ = std::make_unique<hub::ApiService>(*s->store_, s->registry_, s->clock_, hub::ApiOptions{});
  auto server = hub::HttpServer::create(ioc, std::move(tls), *s->api_, host, port, hub::HttpOptions{});
  if (!server) {
    return server.error();
  }
  s->server_ = std::move(server.value());
  hub::ApiService* api = s->api_.get();
  auto readiness = s->readiness_;
  s->server_->addRoute("/", [api, ready_at, always, readiness](hub::ApiRequest r) -> net::awaitable<hub::ApiResponse> {
    if (auto it = always.find(r.path); it != always.end()) {
      hub::ApiResponse res;
      res.content_type = "text/plain";
      res.body = it->second;
      co_return res;
    }
    bool health = r.path.rfind("/readyz", 0) == 0 || r.path.rfind("/healthz", 0) == 0;
    if (health && std::chrono::steady_clock::now() >= ready_at && *readiness) {
      std::string body;
      if (!(*readiness)(body)) {
        hub::ApiResponse res;
        res.status = r.path.rfind("/healthz", 0) == 0 ? 500 : 503;
        res.content_type = "text/plain";
        res.body = body;
        co_return res;
      }
    }
    if (std::chrono::steady_clock::now() < ready_at) {
      hub::ApiResponse res;
      res.status = 503;
      res.content_type = "text/plain";
      res.body = r.path.rfind("/readyz", 0) == 0 || r.path.rfind("/livez", 0) == 0
                     ? "[-]poststarthook/rbac/bootstrap-roles failed: not finished\nreadyz check failed\n"
                     : "apiserver not ready\n";
      co_return res;
    }
    co_return co_await api->handle(std::move(r));
  });
  s->server_->start();
  return s;
}

uint16_t ApiServer::port() const { return server_->endpoint().port(); }

void ApiServer::stop() {
  server_->stop();
  api_->shutdown();
}

std::string etcdHealth(const std::string& endpoint, std::chrono::milliseconds timeout) {
  // http://HOST:PORT or unix://PATH (as --etcd-servers gives it)
  std::string rest = endpoint;
  for (const char* scheme : {"http://", "https://"}) {
    if (rest.rfind(scheme, 0) == 0) {
      rest = rest.substr(std::strlen(scheme));
    }
  }
  auto colon = rest.rfind(':');
  if (colon == std::string::npos) {
    return "bad etcd endpoint " + endpoint;
  }
  net::io_context ioc;
  net::ip::tcp::socket s(ioc);
  boost::system::error_code ec;
  std::string answer;
  net::ip::tcp::resolver resolver(ioc);
  auto eps = resolver.resolve(rest.substr(0, colon), rest.substr(colon + 1), ec);
  if (ec) {
    return "cannot resolve " + endpoint;
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  net::async_connect(s, eps, [&](boost::system::error_code e, const auto&) {
    if (e) {
      answer = "dial " + endpoint + ": " + e.message();
      return;
    }
    static const std::string req = "health\n";
    net::async_write(s, net::buffer(req), [&](boost::system::error_code we, size_t) {
      if (we) {
        answer = "write: " + we.message();
        return;
      }
      auto buf = std::make_shared<std::string>();
      net::async_read_until(s, net::dynamic_buffer(*buf), '\n', [&, buf](boost::system::error_code re, size_t n) {
        answer = re ? "read: " + re.message() : buf->substr(0, n - 1);
      });
    });
  });
  ioc.run_until(deadline);
  if (answer.empty()) {
    return "etcd at " + endpoint + " did not answer in time";
  }
  return answer == "ok" ? "" : answer;
}

int commandError(const std::string& msg) {
  std::cerr << "Error: " << msg << "\n";
  return 1;
}

int runUntilSignalled(net::io_context& ioc, const std::function<void()>& on_stop) {
  net::signal_set signals(ioc, SIGTERM, SIGINT);
  signals.async_wait([&](boost::system::error_code ec, int) {
    if (!ec) {
      on_stop();
      ioc.stop();
    }
  });
  ioc.run();
  return 0;
}

}  // namespace kflex::standin
