// SPDX-License-Identifier: Apache-2.0
#include "tests/standins/standin.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <iostream>

#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "shared/common/time.hpp"
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

Result<TokenIssuer> TokenIssuer::open(const std::filesystem::path& key_file) {
  TokenIssuer t;
  if (auto existing = readFile(key_file)) {
    t.key_ = existing.value();
    return t;
  }
  unsigned char buf[32];
  RAND_bytes(buf, sizeof buf);
  t.key_.assign(reinterpret_cast<char*>(buf), sizeof buf);
  if (auto w = writeFileAtomic(key_file, t.key_, 0600); !w) {
    return w.error();
  }
  return t;
}

std::string TokenIssuer::mac(const std::string& payload) const {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  HMAC(EVP_sha256(), key_.data(), int(key_.size()), reinterpret_cast<const unsigned char*>(payload.data()),
       payload.size(), out, &n);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned i = 0; i < n; ++i) {
    hex += kHex[out[i] >> 4];
    hex += kHex[out[i] & 15];
  }
  return hex;
}

std::string TokenIssuer::issue(const std::string& ns, const std::string& name, int64_t expires) const {
  std::string payload = base64Encode(nlohmann::json{{"sub", "system:serviceaccount:" + ns + ":" + name},
                                                    {"exp", expires}}.dump());
  return payload + "." + mac(payload);
}

Result<std::string> TokenIssuer::verify(const std::string& token, int64_t now) const {
  auto dot = token.rfind('.');
  if (dot == std::string::npos || mac(token.substr(0, dot)) != token.substr(dot + 1)) {
    return fail("invalid bearer token");
  }
  auto decoded = base64Decode(token.substr(0, dot));
  nlohmann::json claims = decoded ? nlohmann::json::parse(decoded.value(), nullptr, false) : nlohmann::json();
  if (!claims.is_object() || !claims["exp"].is_number_integer() || !claims["sub"].is_string()) {
    return fail("invalid bearer token");
  }
  if (claims["exp"].get<int64_t>() <= now) {
    return fail("token has expired");
  }
  std::string sub = claims["sub"];
  const std::string prefix = "system:serviceaccount:";
  return sub.substr(prefix.size());
}

namespace {

int64_t epochSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Authenticates a bearer token as its service account; cluster-admin through a
// ClusterRoleBinding makes it an administrator (RBAC, reduced to the one role kflex binds).
std::optional<hub::ApiResponse> authenticateToken(hub::ApiRequest& r, const TokenIssuer& tokens,
                                                  const hub::ObjectStore& store) {
  if (r.user.authenticated() || r.authorization.rfind("Bearer ", 0) != 0) {
    return std::nullopt;
  }
  auto sa = tokens.verify(r.authorization.substr(7), epochSeconds());
  if (!sa) {
    return hub::statusResponse(401, "Unauthorized", "Unauthorized");
  }
  auto colon = sa->find(':');
  std::string ns = sa->substr(0, colon);
  std::string name = sa->substr(colon + 1);
  r.auth_error.clear();
  r.user.name = "system:serviceaccount:" + ns + ":" + name;
  r.user.groups = {"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"};
  if (!store.get("/serviceaccounts/" + ns, name)) {
    return hub::statusResponse(401, "Unauthorized", "Unauthorized");  // the account is gone
  }
  for (const auto& rec : store.list("rbac.authorization.k8s.io/clusterrolebindings").first) {
    nlohmann::json b = nlohmann::json::parse(rec->bytes, nullptr, false);
    if (!b.is_object() || b["roleRef"].value("name", "") != "cluster-admin") {
      continue;
    }
    for (const auto& s : b.value("subjects", nlohmann::json::array())) {
      if (s.value("kind", "") == "ServiceAccount" && s.value("name", "") == name && s.value("namespace", "") == ns) {
        r.user.groups.push_back("system:masters");
        return std::nullopt;
      }
    }
  }
  return std::nullopt;
}

// POST /api/v1/namespaces/NS/serviceaccounts/NAME/token (TokenRequest); nullopt for other paths.
std::optional<hub::ApiResponse> tokenRequest(const hub::ApiRequest& r, const TokenIssuer& tokens,
                                             const hub::ObjectStore& store) {
  auto parts = split(r.path, '/');
  if (parts.size() != 8 || parts[1] != "api" || parts[2] != "v1" || parts[3] != "namespaces" ||
      parts[5] != "serviceaccounts" || parts[7] != "token") {
    return std::nullopt;
  }
  if (r.method != http::verb::post) {
    return hub::statusResponse(405, "MethodNotAllowed", "the token subresource only supports create");
  }
  if (!r.user.authenticated()) {
    return hub::statusResponse(401, "Unauthorized", "Unauthorized");
  }
  if (!r.user.isAdmin()) {
    return hub::statusResponse(403, "Forbidden", "serviceaccounts \"" + parts[6] + "\" is forbidden: User \"" +
                                                     r.user.name + "\" cannot create resource \"serviceaccounts/token\"");
  }
  const std::string& ns = parts[4];
  const std::string& name = parts[6];
  if (!store.get("/serviceaccounts/" + ns, name)) {
    return hub::statusResponse(404, "NotFound", "serviceaccounts \"" + name + "\" not found");
  }
  nlohmann::json req = nlohmann::json::parse(r.body.empty() ? "{}" : r.body, nullptr, false);
  if (!req.is_object()) {
    return hub::statusResponse(400, "BadRequest", "the TokenRequest body is not a JSON object");
  }
  nlohmann::json spec = req.value("spec", nlohmann::json::object());
  int64_t seconds = spec.value("expirationSeconds", int64_t(3600));
  if (seconds < 600) {
    return hub::statusResponse(422, "Invalid", "TokenRequest.authentication.k8s.io \"" + name +
                                                   "\" is invalid: spec.expirationSeconds: Invalid value: " +
                                                   std::to_string(seconds) +
                                                   ": may not specify a duration less than 10 minutes");
  }
  int64_t expires = epochSeconds() + seconds;
  spec["expirationSeconds"] = seconds;
  hub::ApiResponse res;
  res.status = 201;
  res.body = nlohmann::json{{"kind", "TokenRequest"},
                            {"apiVersion", "authentication.k8s.io/v1"},
                            {"metadata", {{"name", name}, {"namespace", ns}}},
                            {"spec", spec},
                            {"status", {{"token", tokens.issue(ns, name, expires)},
                                        {"expirationTimestamp",
                                         formatTime(std::chrono::system_clock::time_point(std::chrono::seconds(expires)))}}}}
                 .dump();
  return res;
}

}  // namespace

Result<std::unique_ptr<ApiServer>> ApiServer::start(net::io_context& ioc, std::shared_ptr<ssl::context> tls,
                                                    const std::filesystem::path& db, const std::string& host,
                                                    uint16_t port, std::chrono::steady_clock::time_point ready_at,
                                                    std::map<std::string, std::string> always) {
  std::unique_ptr<ApiServer> s(new ApiServer());
  s->registry_ = clusterRegistry();
  auto tokens = TokenIssuer::open(db.string() + ".token-key");
  if (!tokens) {
    return fail("token signing key: " + tokens.error().message);
  }
  s->tokens_ = std::make_unique<TokenIssuer>(std::move(tokens.value()));
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
  auto admission = s->admission_;
  const TokenIssuer* issuer = s->tokens_.get();
  const hub::ObjectStore* store_ptr = s->store_.get();
  s->server_->addRoute("/", [api, ready_at, always, readiness, admission, issuer,
                             store_ptr](hub::ApiRequest r) -> net::awaitable<hub::ApiResponse> {
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
    if (auto denied = authenticateToken(r, *issuer, *store_ptr)) {
      co_return *denied;
    }
    if (auto answered = tokenRequest(r, *issuer, *store_ptr)) {
      co_return *answered;
    }
    if (*admission) {
      if (auto refused = (*admission)(r)) {
        co_return *refused;
      }
    }
    co_return co_await api->handle(std::move(r));
  });
  auto pod_streams = s->pod_streams_;
  s->server_->addStreamRoute(
      [pod_streams](std::string_view path) { return *pod_streams != nullptr && PodStreams::matches(path); },
      [pod_streams](std::unique_ptr<hub::HttpStream>& stream, http::request<http::string_body> req,
                    tls::PeerIdentity id, std::string peer) {
        return (*pod_streams)->serve(stream, std::move(req), std::move(id), std::move(peer));
      });
  s->server_->start();
  return s;
}

uint16_t ApiServer::port() const { return server_->endpoint().port(); }

void ApiServer::stop() {
  server_->stop();
  api_->shutdown();
}

namespace {

// One "health" exchange on a connected socket, within the deadline.
template <class Socket>
std::string askHealth(net::io_context& ioc, Socket& s, const std::string& endpoint,
                      std::chrono::steady_clock::time_point deadline) {
  std::string answer;
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
  ioc.run_until(deadline);
  if (answer.empty()) {
    return "etcd at " + endpoint + " did not answer in time";
  }
  return answer == "ok" ? "" : answer;
}

}  // namespace

std::string etcdHealth(const std::string& endpoint, std::chrono::milliseconds timeout) {
  // http://HOST:PORT or unix://PATH (as --etcd-servers gives it)
  auto deadline = std::chrono::steady_clock::now() + timeout;
  net::io_context ioc;
  boost::system::error_code ec;
  if (endpoint.rfind("unix://", 0) == 0) {
    net::local::stream_protocol::socket s(ioc);
    s.connect(net::local::stream_protocol::endpoint(endpoint.substr(7)), ec);
    if (ec) {
      return "dial unix " + endpoint.substr(7) + ": " + ec.message();
    }
    return askHealth(ioc, s, endpoint, deadline);
  }
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
  net::ip::tcp::socket s(ioc);
  net::ip::tcp::resolver resolver(ioc);
  auto eps = resolver.resolve(rest.substr(0, colon), rest.substr(colon + 1), ec);
  if (ec) {
    return "cannot resolve " + endpoint;
  }
  bool connected = false;
  net::async_connect(s, eps, [&](boost::system::error_code e, const auto&) {
    ec = e;
    connected = !e;
  });
  ioc.run_until(deadline);  // (a connect that hangs ends at the deadline)
  if (!connected) {
    return "dial " + endpoint + ": " + (ec ? ec.message() : std::string("timed out"));
  }
  ioc.restart();
  return askHealth(ioc, s, endpoint, deadline);
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
