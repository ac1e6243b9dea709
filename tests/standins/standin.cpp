// SPDX-License-Identifier: Apache-2.0
#include "tests/standins/standin.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "shared/common/util.hpp"

namespace kflex::standin {

Result<Flags> Flags::parse(const std::vector<std::string>& args, const std::vector<FlagSpec>& specs) {
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
      return fail("flag provided but not defined: -" + name);
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
  s->server_->addRoute("/", [api, ready_at, always](hub::ApiRequest r) -> net::awaitable<hub::ApiResponse> {
    if (auto it = always.find(r.path); it != always.end()) {
      hub::ApiResponse res;
      res.content_type = "text/plain";
      res.body = it->second;
      co_return res;
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
