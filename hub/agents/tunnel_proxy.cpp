// SPDX-License-Identifier: Apache-2.0
#include "hub/agents/tunnel_proxy.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>

#include "hub/agents/bootstrap_tokens.hpp"
#include "hub/agents/release_controller.hpp"
#include "hub/api/errors.hpp"
#include "hub/api/router.hpp"
#include "shared/common/log.hpp"
#include "shared/common/util.hpp"
#include "shared/common/version.hpp"
#include "shared/net/https_client.hpp"
#include "shared/model/resource.hpp"
#include "shared/protocol/tunnel.hpp"

namespace kflex::hub {
namespace {

using namespace net::experimental::awaitable_operators;

constexpr std::string_view kHostSuffix = ".controlplanes.kflex";

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c;
  }
  return out;
}

// The control plane a CONNECT authority (`NAME.controlplanes.kflex:PORT`) names, or "".
std::string controlPlaneOf(std::string_view authority) {
  auto colon = authority.rfind(':');
  std::string_view host = colon == std::string_view::npos ? authority : authority.substr(0, colon);
  std::string h = lower(host);
  if (h.size() <= kHostSuffix.size() || !h.ends_with(kHostSuffix)) {
    return "";
  }
  std::string name = h.substr(0, h.size() - kHostSuffix.size());
  return isDns1123Subdomain(name) && protocol::tunnel::tunnelHost(name) == h ? name : "";
}

// The authority (lower-case host:port, port 443 when none) of an https:// URL, or "".
std::string authorityOf(const std::string& url) {
  std::string host;
  std::string port;
  if (!splitHttpsUrl(url, host, port)) {
    return "";
  }
  return lower(joinHostPort(host, port));
}

// A reason phrase carries the message to the user (Go shows only it for a refused CONNECT):
// printable ASCII, one line, bounded.
std::string reasonPhrase(const std::string& message) {
  std::string out;
  for (char c : message.substr(0, 300)) {
    out.push_back(c >= 0x20 && c < 0x7f ? c : ' ');
  }
  return out;
}

net::awaitable<void> answer(HttpStream& stream, unsigned version, unsigned status, const std::string& message) {
  http::response<http::string_body> res{http::status(status), version};
  res.reason(reasonPhrase(message));
  res.set(http::field::server, std::string("kflex-hub/") + kVersion);
  if (status == 407) {
    res.set(http::field::proxy_authenticate, "Basic realm=\"kflex-hub\"");
  }
  res.set(http::field::content_type, "application/json");
  res.keep_alive(false);
  // (The API's Status body: its message may quote a target the client sent that is not UTF-8.)
  const char* reason = status == 403   ? "Forbidden"
                       : status == 404 ? "NotFound"
                       : status == 407 ? "ProxyAuthenticationRequired"
                       : status == 502 ? "BadGateway"
                                       : "ServiceUnavailable";
  res.body() = statusResponse(status, reason, message).body;
  res.prepare_payload();
  beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(10));
  co_await http::async_write(stream, res, net::as_tuple(net::use_awaitable));
}

}  // namespace

TunnelProxy::TunnelProxy(ObjectStore& store, const model::Registry& registry, AgentGateway& gateway,
                         const Clock& clock)
    : store_(store), control_planes_(tenancyType(registry, "controlplanes")), agents_(tenancyType(registry, "agents")),
      tokens_(tenancyType(registry, "bootstraptokens")), gateway_(gateway), clock_(clock) {}

std::variant<std::string, TunnelProxy::Refusal> TunnelProxy::authorize(const http::request<http::string_body>& req,
                                                                      std::string& token_id) const {
  const std::string how =
      "; kflex ctx NAME writes a kubeconfig whose proxy-url carries a token for the control plane";
  std::string auth(req[http::field::proxy_authorization]);
  std::string credentials;
  if (auth.size() > 6 && lower(auth.substr(0, 6)) == "basic ") {
    if (auto decoded = base64Decode(trim(std::string_view(auth).substr(6)))) {
      credentials = std::move(decoded.value());
    }
  }
  std::string token;
  if (credentials.rfind("tunnel:", 0) == 0) {
    token = credentials.substr(7);
  }
  if (!model::isBootstrapToken(token)) {
    return Refusal{407, "the hub's tunnel needs Proxy-Authorization with user tunnel and a tunnel token" + how};
  }
  token_id = token.substr(0, 6);
  const std::string bad = "the tunnel token " + token_id + " is unknown, expired or not for the tunnel" + how;
  ObjectPtr rec = store_.get(resourceKey(tokens_), token_id);
  if (!rec) {
    return Refusal{407, bad};
  }
  Json tok = Json::parse(rec->bytes, nullptr, false);
  if (std::string why = tokenProblem(tok, token.substr(7), "tunnel", clock_.now()); !why.empty()) {
    log::warn("tunnel refused", {{"reason", why}, {"token_id", token_id}});
    return Refusal{407, bad};
  }
  std::string name = controlPlaneOf(req.target());
  if (name.empty()) {
    // An adopted cluster keeps its own server name (its certificate names that, not ours): the
    // authority must be the server of a cluster the token lists that an agent adopted.
    const std::string wanted = lower(req.target());
    for (const auto& listed : tok.value("spec", Json::object()).value("controlPlanes", Json::array())) {
      ObjectPtr cp_rec = listed.is_string() ? store_.get(resourceKey(control_planes_), listed.get<std::string>())
                                            : nullptr;
      Json cp = cp_rec ? Json::parse(cp_rec->bytes, nullptr, false) : Json();
      if (cp.is_object() && model::isAdopted(cp["spec"].value("type", "")) && model::servedByAgent(cp) &&
          !wanted.empty() && authorityOf(cp.value("status", Json::object()).value("endpoint", "")) == wanted) {
        name = listed.get<std::string>();
      }
    }
  }
  if (name.empty()) {
    return Refusal{403, "the hub's tunnel reaches only control planes, as NAME" + std::string(kHostSuffix) +
                            ":PORT (or an adopted cluster's own server, with a token for it), not " +
                            std::string(req.target().substr(0, 100))};
  }
  if (!tokenCoversControlPlane(tok, name)) {
    return Refusal{403, "the tunnel token " + token_id + " is not for control plane " + name};
  }
  return name;
}

bool TunnelProxy::reaches(const Json& cp) const {
  const Json status = cp.value("status", Json::object());
  const std::string agent = status.is_object() ? status.value("agent", "") : "";
  if (!model::servedByAgent(cp) || agent.empty()) {
    return false;
  }
  ObjectPtr rec = store_.get(resourceKey(agents_), agent);
  Json obj = rec ? Json::parse(rec->bytes, nullptr, false) : Json();
  return obj.is_object() && obj.value("status", Json::object()).value("tunnelVersion", 0) >= 1;
}

bool TunnelProxy::opens(const std::string& token, const std::string& name) const {
  if (!model::isBootstrapToken(token)) {
    return false;
  }
  ObjectPtr rec = store_.get(resourceKey(tokens_), token.substr(0, 6));
  Json tok = rec ? Json::parse(rec->bytes, nullptr, false) : Json();
  return tok.is_object() && tokenProblem(tok, token.substr(7), "tunnel", clock_.now()).empty() &&
         tokenCoversControlPlane(tok, name);
}

std::variant<std::string, TunnelProxy::Refusal> TunnelProxy::placement(const std::string& name) const {
  ObjectPtr rec = store_.get(resourceKey(control_planes_), name);
  if (!rec) {
    return Refusal{404, "control plane " + name + " does not exist"};
  }
  Json cp = Json::parse(rec->bytes, nullptr, false);
  if (!model::servedByAgent(cp)) {
    return Refusal{503, "control plane " + name + " is not served by an agent: reach it directly (kflex ctx " + name +
                            " --direct)"};
  }
  std::string agent = placedOn(*rec);
  if (agent.empty()) {
    return Refusal{503, "control plane " + name + " is not placed on an agent yet"};
  }
  return agent;
}

TunnelProxy::Refusal TunnelProxy::unavailable(const std::string& agent, bool linked) const {
  ObjectPtr rec = store_.get(resourceKey(agents_), agent);
  Json obj = rec ? Json::parse(rec->bytes, nullptr, false) : Json();
  const Json status = obj.is_object() ? obj.value("status", Json::object()) : Json::object();
  if (linked) {
    return Refusal{503, "agent " + agent + " (kflex-agent " + status.value("agentVersion", "?") +
                            ") has no tunnel; upgrade it to reach its control planes through the hub"};
  }
  std::string seen = status.value("lastHeartbeatTime", "");
  std::string when = "never seen";
  if (auto t = parseTime(seen)) {
    auto ago = std::chrono::duration_cast<std::chrono::seconds>(clock_.now() - *t);
    when = "last seen " + seen + ", " + humanDuration(std::max(ago, std::chrono::seconds(0))) + " ago";
  }
  if (!status.value("tunnelVersion", Json()).is_null() || !rec) {
    return Refusal{503, "agent " + agent + " is not connected to this hub (" + when + ")"};
  }
  return Refusal{503, "agent " + agent + " is not connected to this hub (" + when + "), and its version has no tunnel"};
}

net::awaitable<void> TunnelProxy::serve(std::unique_ptr<HttpStream>& stream, http::request<http::string_body> req,
                                        tls::PeerIdentity, std::string peer) {
  auto started = std::chrono::steady_clock::now();
  const unsigned version = req.version();
  std::string token_id;
  auto authorized = authorize(req, token_id);
  if (std::holds_alternative<Refusal>(authorized) && std::get<Refusal>(authorized).status == 407 &&
      !token_id.empty() && store_.shared()) {
    // The token may have been made on another replica a moment ago.
    co_await store_.fresh(net::use_awaitable);
    authorized = authorize(req, token_id);
  }
  std::string name;
  std::string agent;
  std::optional<Refusal> refused;
  if (auto* r = std::get_if<Refusal>(&authorized)) {
    refused = *r;
  } else {
    name = std::get<std::string>(authorized);
    auto placed = placement(name);
    if (auto* pr = std::get_if<Refusal>(&placed)) {
      refused = *pr;
    } else {
      agent = std::get<std::string>(placed);
    }
  }
  auto logged = [&](unsigned status, const std::string& why) {
    log::info("tunnel", {{"controlPlane", name.empty() ? "-" : name}, {"agent", agent.empty() ? "-" : agent},
                         {"token_id", token_id.empty() ? "-" : token_id}, {"peer", peer},
                         {"status", std::to_string(status)}, {"error", why}});
  };
  std::shared_ptr<LinkTunnels> tunnels;
  if (!refused) {
    bool linked = false;
    tunnels = gateway_.tunnels(agent, linked);
    std::string peer_url = tunnels || linked || req.count(kForwardedHeader) > 0 ? "" : peerOf(agent);
    if (!peer_url.empty()) {
      // The agent's link is on another replica: the CONNECT goes there (once), as it came.
      std::string answer_line;
      if (co_await forward(stream, req, peer_url, answer_line)) {
        log::info("tunnel", {{"controlPlane", name}, {"agent", agent}, {"token_id", token_id}, {"peer", peer},
                             {"status", answer_line}, {"forwarded_to", peer_url}});
        co_return;
      }
      refused = Refusal{503, "agent " + agent + " is linked to hub replica " + peer_url +
                                 ", which this replica cannot reach: " + answer_line};
    } else if (!tunnels) {
      refused = unavailable(agent, linked);
    }
  }
  if (refused) {
    logged(refused->status, refused->message);
    co_await answer(*stream, version, refused->status, refused->message);
    co_return;
  }
  req = {};
  // The OPEN and the stream's life run on the agent link's loop (its frames arrive there).
  auto opening = tunnels->open(name);
  auto opened = co_await net::co_spawn(tunnels->executor(), std::move(opening), net::use_awaitable);
  if (!opened) {
    std::string why = "agent " + agent + " cannot reach control plane " + name + ": " + opened.error().message;
    logged(502, why);
    co_await answer(*stream, version, 502, why);
    co_return;
  }
  const uint32_t id = opened.value();
  http::response<http::empty_body> ok{http::status::ok, version};
  ok.reason("Connection established");
  beast::get_lowest_layer(*stream).expires_after(std::chrono::seconds(10));
  auto [ec, n] = co_await http::async_write(*stream, ok, net::as_tuple(net::use_awaitable));
  if (ec) {
    tunnels->abandon(id, "the client went away");
    co_return;
  }
  beast::get_lowest_layer(*stream).expires_never();
  // The stream lives long and is mostly idle: off Asio's buffered TLS stream, as agent links.
  auto lean = tls::LeanStream::adopt(std::move(stream));
  if (!lean) {
    tunnels->abandon(id, "the client's connection cannot be carried: " + lean.error().message);
    co_return;
  }
  auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  log::info("tunnel", {{"controlPlane", name}, {"agent", agent}, {"token_id", token_id}, {"peer", peer},
                       {"status", "200"}, {"stream", std::to_string(id)}, {"open_ms", std::to_string(int(ms))}});
  tunnels->attach(id, std::move(lean.value()));
}

std::string TunnelProxy::peerOf(const std::string& agent) const {
  if (!peer_tls_) {
    return "";
  }
  ObjectPtr rec = store_.get(resourceKey(agents_), agent);
  Json obj = rec ? Json::parse(rec->bytes, nullptr, false) : Json();
  std::string url = obj.is_object() ? obj.value("status", Json::object()).value("hubPeer", "") : "";
  return url.rfind("https://", 0) == 0 && url != self_peer_ ? url : "";
}

namespace {

// Bytes from one stream to the other until either ends; then both are shut.
template <class From, class To>
net::awaitable<void> pass(From& from, To& to, std::shared_ptr<bool> done) {
  std::vector<char> buf(16 * 1024);
  while (!*done) {
    auto [rec, n] = co_await from.async_read_some(net::buffer(buf), net::as_tuple(net::use_awaitable));
    if (n > 0) {
      auto [wec, wn] = co_await net::async_write(to, net::buffer(buf.data(), n), net::as_tuple(net::use_awaitable));
      if (wec) {
        break;
      }
    }
    if (rec) {
      break;
    }
  }
  if (!*done) {
    *done = true;
    boost::system::error_code ignored;
    beast::get_lowest_layer(from).socket().close(ignored);
    beast::get_lowest_layer(to).socket().close(ignored);
  }
}

}  // namespace

net::awaitable<bool> TunnelProxy::forward(std::unique_ptr<HttpStream>& stream,
                                          const http::request<http::string_body>& req, std::string peer_url,
                                          std::string& answer_line) {
  std::string host;
  std::string port;
  if (auto r = splitHttpsUrl(peer_url, host, port); !r) {
    answer_line = r.error().message;
    co_return false;
  }
  auto ex = stream->get_executor();
  auto upstream = std::make_unique<HttpStream>(ex, *peer_tls_);
  net::ip::tcp::resolver resolver(ex);
  beast::get_lowest_layer(*upstream).expires_after(std::chrono::seconds(10));
  auto [rec, found] = co_await resolver.async_resolve(host, port, net::as_tuple(net::use_awaitable));
  if (rec) {
    answer_line = "cannot resolve it: " + rec.message();
    co_return false;
  }
  auto [cec, ep] =
      co_await beast::get_lowest_layer(*upstream).async_connect(found, net::as_tuple(net::use_awaitable));
  if (cec) {
    answer_line = "cannot connect: " + cec.message();
    co_return false;
  }
  auto [hec] = co_await upstream->async_handshake(ssl::stream_base::client, net::as_tuple(net::use_awaitable));
  if (hec) {
    answer_line = "TLS: " + hec.message();
    co_return false;
  }
  http::request<http::empty_body> out{http::verb::connect, req.target(), 11};
  out.set(http::field::host, req.target());
  out.set(http::field::proxy_authorization, req[http::field::proxy_authorization]);
  out.set(kForwardedHeader, self_peer_.empty() ? "1" : self_peer_);
  auto [wec, wn] = co_await http::async_write(*upstream, out, net::as_tuple(net::use_awaitable));
  if (wec) {
    answer_line = "cannot send: " + wec.message();
    co_return false;
  }
  // Its answer, read without reading past it (after a 200 the client's bytes follow).
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.skip(true);  // a CONNECT's 2xx answer has no body
  parser.body_limit(64 * 1024);
  auto [rdec, rn] = co_await http::async_read_header(*upstream, buffer, parser, net::as_tuple(net::use_awaitable));
  if (rdec) {
    answer_line = "no answer: " + rdec.message();
    co_return false;
  }
  auto res = parser.release();
  answer_line = std::to_string(res.result_int());
  beast::get_lowest_layer(*upstream).expires_never();
  http::response<http::empty_body> back{res.result(), req.version()};
  back.reason(res.reason());
  if (res.result_int() != 200) {
    back.set(http::field::content_length, "0");
    back.keep_alive(false);
  }
  if (res.count(http::field::proxy_authenticate) > 0) {
    back.set(http::field::proxy_authenticate, res[http::field::proxy_authenticate]);
  }
  auto [bec, bn] = co_await http::async_write(*stream, back, net::as_tuple(net::use_awaitable));
  if (bec || res.result_int() != 200) {
    co_return true;
  }
  if (buffer.size() > 0) {  // (what the replica sent right after its answer: the agent's first bytes)
    co_await net::async_write(*stream, buffer.data(), net::as_tuple(net::use_awaitable));
  }
  auto done = std::make_shared<bool>(false);
  HttpStream& client = *stream;
  HttpStream& replica = *upstream;
  co_await (pass(client, replica, done) && pass(replica, client, done));
  co_return true;
}

}  // namespace kflex::hub
