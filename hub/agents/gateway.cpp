// SPDX-License-Identifier: Apache-2.0
#include "hub/agents/gateway.hpp"

#include "hub/agents/release_controller.hpp"

#include <deque>
#include <map>
#include <set>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/beast/websocket.hpp>

#include "hub/api/hook_labels.hpp"
#include "shared/common/log.hpp"
#include "shared/common/util.hpp"
#include "shared/common/version.hpp"
#include "shared/kube/hooks.hpp"
#include "shared/model/conditions.hpp"
#include "shared/model/control_plane_types.hpp"
#include "shared/protocol/messages.hpp"
#include "shared/tls/lean_stream.hpp"
#include "shared/tls/pki.hpp"

namespace kflex::hub {
namespace {

// Gives freed pages back to the system.
namespace websocket = beast::websocket;
using namespace net::experimental::awaitable_operators;

std::string seconds(std::chrono::seconds s) { return std::to_string(s.count()) + "s"; }

// Events the gateway's own watch may buffer (a burst of 10,000 agents saying hello).
constexpr size_t kControllerWatchQueue = 1 << 17;
// The agents' reconnect backoff cap (agent/hub_link.hpp): after a hub start, nobody's lease runs
// out before every agent has had the chance to come back (at most one more lease duration).
constexpr std::chrono::seconds kBackoffCap{60};

const Json& certificateOf(const Json& agent) {
  static const Json kEmpty = Json::object();
  auto st = agent.find("status");
  if (st == agent.end() || !st->is_object()) {
    return kEmpty;
  }
  auto c = st->find("certificate");
  return c != st->end() && c->is_object() ? *c : kEmpty;
}

// The key pins the hub accepts for an agent: its current one and a renewed one not yet used.
bool acceptsPin(const Json& agent, const std::string& pin) {
  const Json& c = certificateOf(agent);
  return !pin.empty() && (c.value("publicKeyPin", "") == pin || c.value("pendingPublicKeyPin", "") == pin);
}


// A snapshot or delta frame around the agent's views of control planes.
std::string desiredFrame(bool snapshot, uint64_t id, int64_t revision, const std::vector<std::string>& views,
                         const std::vector<std::string>& deletes) {
  std::vector<const std::string*> objects;
  objects.reserve(views.size());
  for (const auto& v : views) {
    objects.push_back(&v);
  }
  return protocol::encodeDesired(snapshot, id, revision, objects, deletes);
}

// The metadata of a control plane an agent acts on. Its status, resourceVersion and
// managedFields are left out: they change with every status write, and an agent must not be
// sent its own reports back.
constexpr const char* kViewMetadata[] = {"name", "uid", "generation", "creationTimestamp", "deletionTimestamp",
                                         "labels", "annotations"};

// The completion handler of one of the gateway's own tasks: logs how it failed.
auto logFailure(const char* what) {
  return [what](std::exception_ptr e) {
    if (!e) {
      return;
    }
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      log::error("agent gateway task failed", {{"task", what}, {"error", ex.what()}});
    }
  };
}

// Answers a refused upgrade with a Kubernetes Status, so the agent can show the reason.
net::awaitable<void> refuse(HttpStream& stream, const http::request<http::string_body>& req, unsigned code,
                            const char* reason, const std::string& message, const std::string& peer) {
  http::response<http::string_body> res{http::status(code), req.version()};
  res.set(http::field::content_type, "application/json");
  res.keep_alive(false);
  res.body() = Json{{"kind", "Status"}, {"apiVersion", "v1"}, {"metadata", Json::object()}, {"status", "Failure"},
                    {"message", message}, {"reason", reason}, {"code", code}}
                   .dump();
  res.prepare_payload();
  beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(10));
  co_await http::async_write(stream, res, net::as_tuple(net::use_awaitable));
  log::warn("agent link refused", {{"peer", peer}, {"status", std::to_string(code)}, {"reason", message}});
}

}  // namespace

struct AgentGateway::Session {
  explicit Session(tls::LeanStream&& s) : ws(std::move(s)), wake(ws.get_executor()) {}
  websocket::stream<tls::LeanStream> ws;
  net::steady_timer wake;  // the writer sleeps on it; cancel() wakes it
  std::string name;
  std::string peer;
  std::string pin;  // guarded by the gateway's mutex_
  std::string ca_pin;  // the CA the link's certificate chains to
  bool expired_cert = false;
  std::chrono::steady_clock::time_point last_csr{};
  TimePoint persisted_at{};  // the lastHeartbeatTime this link last stored or saw stored
  // Below: only on the connection's strand.
  std::deque<std::string> queue;
  size_t queued = 0;
  bool closing = false;
  bool hello_done = false;
  std::string close_code;
  std::string close_message;
  uint64_t seq = 0;
  int64_t synced = -1;           // highest revision sent; -1 until the first sync
  std::vector<EventPtr> early;   // events that arrived before the first sync
  // Per control plane: a digest of the view last sent, so that a write that changes nothing the
  // agent acts on (its own status report, above all) is not sent.
  std::unordered_map<std::string, size_t> sent;
  int64_t acked = 0;             // the revision the agent last acknowledged
};

AgentGateway::AgentGateway(net::io_context& ioc, ApiClient& api, ObjectStore& store, const model::Registry& registry,
                           EnrollmentService& enrollment, const Clock& clock, GatewayOptions options)
    : ioc_(ioc), api_(api), store_(store),
      agents_(*registry.find(model::kTenancyGroup, model::kTenancyVersion, "agents")),
      cps_(*registry.find(model::kTenancyGroup, model::kTenancyVersion, "controlplanes")),
      hooks_(*registry.find(model::kTenancyGroup, model::kTenancyVersion, "postcreatehooks")), enrollment_(enrollment),
      clock_(clock), options_(options), strand_(net::make_strand(ioc)), started_(clock.now()) {}

AgentGateway::~AgentGateway() = default;

void AgentGateway::start() {
  net::co_spawn(strand_, leaseLoop(), logFailure("leases"));
  net::co_spawn(strand_, watchLoop(), logFailure("revocations"));
}

void AgentGateway::stop() {
  stopping_ = true;
  std::vector<std::shared_ptr<Session>> all;
  {
    std::lock_guard lock(mutex_);
    for (auto& [n, s] : sessions_) {
      all.push_back(s);
    }
  }
  for (auto& s : all) {
    close(s, protocol::code::kShuttingDown, "the hub is shutting down; reconnect later");
  }
  {
    // Status reports waiting for their turn are written now.
    std::lock_guard lock(reports_mutex_);
    for (const auto& [agent, entry] : reports_) {
      wakeStatusWriter(agent);
    }
  }
  net::post(strand_, [this] {
    if (watch_id_ != 0) {
      store_.unwatch(watch_id_);
    }
  });
}

std::string AgentGateway::enrolledKeyProblem(const std::string& name, const std::string& pin) const {
  ObjectPtr rec = store_.get(resourceKey(agents_), name);
  if (!rec) {
    return "agent \"" + name + "\" is not enrolled or was revoked; enroll it again with a new bootstrap token";
  }
  if (!acceptsPin(Json::parse(rec->bytes, nullptr, false), pin)) {
    return "this certificate's key is not the one agent \"" + name +
           "\" enrolled with (the agent was revoked or enrolled again elsewhere)";
  }
  return "";
}

size_t AgentGateway::connected() const {
  std::lock_guard lock(mutex_);
  return sessions_.size();
}

net::awaitable<void> AgentGateway::serve(std::unique_ptr<HttpStream>& http_stream, http::request<http::string_body> req,
                                         tls::PeerIdentity id, std::string peer) {
  HttpStream& stream = *http_stream;
  if (stopping_) {
    co_await refuse(stream, req, 503, "ServiceUnavailable", "the hub is shutting down; reconnect later", peer);
    co_return;
  }
  auto now = clock_.now();
  if (!id.presented) {
    co_await refuse(stream, req, 401, "Unauthorized",
                    "an agent link needs the agent's client certificate; enroll first with a bootstrap token", peer);
    co_return;
  }
  bool in_grace = id.expired_only && now - id.not_after < options_.expired_grace;
  if (!id.verified && !in_grace) {
    std::string msg = "the client certificate is rejected: " + id.verify_error;
    if (id.expired_only) {
      msg += " (more than " + humanDuration(options_.expired_grace) +
             " ago, beyond the renewal grace window); enroll again with a new bootstrap token";
    }
    co_await refuse(stream, req, 401, "Unauthorized", msg, peer);
    co_return;
  }
  if (std::find(id.organizations.begin(), id.organizations.end(), model::kAgentGroup) == id.organizations.end()) {
    co_await refuse(stream, req, 403, "Forbidden",
                    "the certificate of \"" + id.common_name + "\" is not an agent certificate (O=" +
                        model::kAgentGroup + ")", peer);
    co_return;
  }
  // (Checked outside this coroutine, so that its frame, which lives as long as the link, holds
  // neither the Agent object nor its parsed JSON.)
  if (std::string why = enrolledKeyProblem(id.common_name, id.public_key_pin); !why.empty()) {
    co_await refuse(stream, req, 401, "Unauthorized", why, peer);
    co_return;
  }

  // The link lives long and is mostly idle: move it off Asio's buffered TLS stream.
  auto lean = tls::LeanStream::adopt(std::move(http_stream));
  if (!lean) {
    log::warn("agent link dropped", {{"agent", id.common_name}, {"peer", peer}, {"error", lean.error().message}});
    co_return;
  }
  auto s = std::make_shared<Session>(std::move(lean.value()));
  s->name = id.common_name;
  s->peer = peer;
  s->pin = id.public_key_pin;
  s->ca_pin = id.ca_pin;
  s->expired_cert = !id.verified;
  websocket::stream_base::timeout t{};
  t.handshake_timeout = std::chrono::seconds(10);
  t.idle_timeout = options_.idle_timeout;
  t.keep_alive_pings = true;
  s->ws.set_option(t);
  s->ws.read_message_max(protocol::kMaxFrameBytes);
  s->ws.set_option(websocket::stream_base::decorator(
      [](websocket::response_type& res) { res.set(http::field::server, std::string("kflex-hub/") + kVersion); }));
  s->ws.write_buffer_bytes(2048);  // link messages are small; the default is 4 KiB per link
  auto [aec] = co_await s->ws.async_accept(req, net::as_tuple(net::use_awaitable));
  req = {};  // not needed any more, and this frame lives as long as the link
  if (aec) {
    log::warn("agent link handshake failed", {{"agent", s->name}, {"peer", peer}, {"error", aec.message()}});
    co_return;
  }
  std::shared_ptr<Session> replaced;
  {
    std::lock_guard lock(mutex_);
    auto& slot = sessions_[s->name];
    replaced = slot;
    slot = s;
  }
  if (replaced) {
    close(replaced, protocol::code::kReplaced, "a newer link of this agent took over");
  }
  log::info("agent connected", {{"agent", s->name}, {"peer", peer}, {"expired_certificate", s->expired_cert ? "true" : "false"}});
  try {
    co_await (readLoop(s) && writeLoop(s));
  } catch (const std::exception& e) {
    // (The read loop answers a message it cannot handle; this is for anything else.) The link
    // ends here and is unregistered below, whatever went wrong.
    log::error("agent link failed", {{"agent", s->name}, {"peer", peer}, {"error", e.what()}});
    s->closing = true;
    boost::system::error_code ec;
    beast::get_lowest_layer(s->ws.next_layer()).socket().close(ec);
  }
  {
    std::lock_guard lock(mutex_);
    auto it = sessions_.find(s->name);
    if (it != sessions_.end() && it->second == s) {
      sessions_.erase(it);
    }
  }
  log::info("agent disconnected", {{"agent", s->name}, {"peer", peer},
                                   {"reason", s->close_code.empty() ? "link closed" : s->close_code}});
}

void AgentGateway::send(const std::shared_ptr<Session>& s, std::string message) {
  net::dispatch(s->ws.get_executor(), [this, s, m = std::move(message)]() mutable {
    if (s->closing) {
      return;
    }
    if (s->queued > 0 && s->queued + m.size() > options_.max_queue_bytes) {
      // A slow agent is disconnected, not buffered without end. (One message alone may be larger:
      // a snapshot of control planes with their hooks.)
      log::warn("agent too slow; disconnecting", {{"agent", s->name}, {"queued_bytes", std::to_string(s->queued)}});
      s->closing = true;
      s->close_code = protocol::code::kTooSlow;
      boost::system::error_code ec;
      beast::get_lowest_layer(s->ws.next_layer()).socket().close(ec);
      s->wake.cancel();
      return;
    }
    s->queued += m.size();
    s->queue.push_back(std::move(m));
    s->wake.cancel();
  });
}

void AgentGateway::close(const std::shared_ptr<Session>& s, std::string code, std::string message) {
  net::dispatch(s->ws.get_executor(), [s, code = std::move(code), message = std::move(message)]() mutable {
    if (s->closing) {
      return;
    }
    std::string err = protocol::encode(protocol::ErrorBody{code, message}, ++s->seq);
    s->queued += err.size();
    s->queue.push_back(std::move(err));
    s->close_code = std::move(code);
    s->close_message = std::move(message);
    s->closing = true;
    s->wake.cancel();
  });
}

void AgentGateway::closeByName(const std::string& name, const std::string& code, const std::string& message) {
  std::shared_ptr<Session> s;
  {
    std::lock_guard lock(mutex_);
    auto it = sessions_.find(name);
    if (it != sessions_.end()) {
      s = it->second;
    }
  }
  if (s) {
    close(s, code, message);
  }
}

net::awaitable<void> AgentGateway::writeLoop(std::shared_ptr<Session> s) {
  while (true) {
    if (s->queue.empty()) {
      if (s->closing) {
        break;
      }
      s->wake.expires_at(net::steady_timer::time_point::max());
      co_await s->wake.async_wait(net::as_tuple(net::use_awaitable));
      continue;
    }
    std::string m = std::move(s->queue.front());
    s->queue.pop_front();
    s->queued -= m.size();
    s->ws.text(true);
    auto [ec, n] = co_await s->ws.async_write(net::buffer(m), net::as_tuple(net::use_awaitable));
    if (ec) {
      s->closing = true;
      co_return;
    }
  }
  if (s->ws.is_open()) {
    websocket::close_reason why(s->close_code == protocol::code::kShuttingDown ? websocket::close_code::going_away
                                : s->close_code.empty()                          ? websocket::close_code::normal
                                                                                 : websocket::close_code::policy_error,
                                s->close_code);
    co_await s->ws.async_close(why, net::as_tuple(net::use_awaitable));
  }
}

net::awaitable<void> AgentGateway::readLoop(std::shared_ptr<Session> s) {
  beast::flat_buffer buffer;
  while (!s->closing) {
    auto [ec, n] = co_await s->ws.async_read(buffer, net::as_tuple(net::use_awaitable));
    if (ec) {
      if (ec == websocket::error::message_too_big) {
        log::warn("agent sent an oversized frame", {{"agent", s->name}, {"limit", std::to_string(protocol::kMaxFrameBytes)}});
        s->close_code = protocol::code::kProtocol;
      }
      break;
    }
    std::string text = beast::buffers_to_string(buffer.data());
    buffer.consume(buffer.size());
    auto env = protocol::decode(text);
    if (!env) {
      log::warn("agent protocol error", {{"agent", s->name}, {"error", env.error().message}});
      close(s, protocol::code::kProtocol, env.error().message);
      break;
    }
    const std::string& type = env->type;
    if (!s->hello_done && type != protocol::msg::kHello) {
      close(s, protocol::code::kProtocol, "the first message must be hello, not " + type);
      break;
    }
    // Messages are decoded field by field and never throw; should a handler throw all the same,
    // the link ends as after a protocol error (an error frame, then a close and clean-up)
    // instead of the exception ending the read loop with the link still registered.
    bool handled = false;
    try {
      handled = co_await onMessage(s, env.value());
    } catch (const std::exception& e) {
      log::error("cannot handle an agent message; closing the link",
                 {{"agent", s->name}, {"type", type}, {"error", e.what()}});
      close(s, protocol::code::kProtocol, "the hub cannot handle this " + type + " message");
    }
    if (!handled) {
      break;
    }
  }
  s->closing = true;
  s->wake.cancel();
}

net::awaitable<bool> AgentGateway::onMessage(const std::shared_ptr<Session>& s, const protocol::Envelope& env) {
  const std::string& type = env.type;
  if (type == protocol::msg::kHello) {
    if (s->hello_done) {
      close(s, protocol::code::kProtocol, "hello was already sent on this link");
      co_return false;
    }
    co_return co_await onHello(s, env);
  }
  if (type == protocol::msg::kLease) {
    co_await onLease(s);
    co_return true;
  }
  if (type == protocol::msg::kAck) {
    if (env.revision > s->synced) {
      close(s, protocol::code::kProtocol, "acknowledged revision " + std::to_string(env.revision) +
                                              " was never sent (last sent: " + std::to_string(s->synced) + ")");
      co_return false;
    }
    s->acked = std::max(s->acked, env.revision);
    co_return true;
  }
  if (type == protocol::msg::kStatus) {
    co_return co_await onStatus(s, env);
  }
  if (type == protocol::msg::kCsr) {
    co_return co_await onCsr(s, env);
  }
  close(s, protocol::code::kProtocol, "message type " + type + " is not expected from an agent by this hub");
  co_return false;
}

net::awaitable<void> AgentGateway::onLease(const std::shared_ptr<Session>& s) {
  auto now = clock_.now();
  {
    std::lock_guard lock(mutex_);
    renewed_[s->name] = now;
  }
  if (s->persisted_at != TimePoint{} && now - s->persisted_at < options_.heartbeat_persist) {
    // Nothing to store yet: a lease that ran out would be older than the persist interval.
    co_return;
  }
  std::string stamp = formatTime(now);
  int64_t acked = s->acked;
  auto persist = options_.heartbeat_persist;
  bool was_not_ready = false;
  TimePoint recorded{};  // the heartbeat time stored after this
  co_await api_.changeStatus(agents_, s->name, [&](Json& obj) {
    Json& status = obj["status"];
    auto last = parseTime(status.value("lastHeartbeatTime", ""));
    bool stale = !last || now - *last >= persist;
    bool not_ready = model::conditionStatus(obj, "Ready") != "True";
    was_not_ready = not_ready;
    if (!stale && !not_ready) {
      recorded = *last;
      return false;
    }
    recorded = now;
    status["lastHeartbeatTime"] = stamp;
    status["acknowledgedRevision"] = acked;
    model::setCondition(status, "Ready", "True", "AgentReady", "the agent's lease is current", stamp);
    return true;
  });
  s->persisted_at = recorded;
  if (was_not_ready && s->synced >= 0) {
    // Back from a lease expiry on the same link: its control planes were marked Unknown, so
    // resync in full (a snapshot makes the agent report every control plane again).
    initialSync(s, 0);
  }
}

net::awaitable<bool> AgentGateway::onHello(const std::shared_ptr<Session>& s, const protocol::Envelope& env) {
  auto decoded = protocol::bodyOf<protocol::Hello>(env);
  if (!decoded) {
    log::warn("agent protocol error", {{"agent", s->name}, {"error", decoded.error().message}});
    close(s, protocol::code::kProtocol, decoded.error().message);
    co_return false;
  }
  const protocol::Hello& hello = decoded.value();
  if (!hello.name.empty() && hello.name != s->name) {
    close(s, protocol::code::kUnauthorized,
          "the hello names agent \"" + hello.name + "\" but the certificate is for \"" + s->name + "\"");
    co_return false;
  }
  auto now = clock_.now();
  std::string stamp = formatTime(now);
  {
    std::lock_guard lock(mutex_);
    renewed_[s->name] = now;
  }
  std::string peer_host = s->peer.substr(0, s->peer.rfind(':'));
  Json cap_clean = hello.capacity;
  bool has_types = hello.control_plane_types.has_value();
  Json types = has_types ? Json(*hello.control_plane_types) : Json::array();
  int64_t acked = hello.acknowledged_revision;
  std::string s_pin;
  {
    std::lock_guard lock(mutex_);
    s_pin = s->pin;
  }
  Result<void> st = co_await api_.changeStatus(agents_, s->name, [&](Json& obj) {
    Json& status = obj["status"];
    if (!status.is_object()) {
      status = Json::object();
    }
    status["address"] = peer_host;
    for (const auto& [key, value] : hello.facts) {
      status[key] = value;
    }
    status["capacity"] = cap_clean;
    if (has_types) {
      status["controlPlaneTypes"] = types;
    } else {
      status.erase("controlPlaneTypes");  // an agent from before they were told: it may run any
    }
    status["lastHeartbeatTime"] = stamp;
    // A renewed certificate is in use now: its key becomes the agent's key.
    Json& cert = status["certificate"];
    if (cert.is_object() && cert.value("pendingPublicKeyPin", "") == s_pin) {
      cert["publicKeyPin"] = s_pin;
      cert["notAfter"] = cert.value("pendingNotAfter", cert.value("notAfter", ""));
      cert.erase("pendingPublicKeyPin");
      cert.erase("pendingNotAfter");
    }
    status["acknowledgedRevision"] = acked;
    model::setCondition(status, "Ready", "True", "AgentReady", "the agent's lease is current", stamp);
    return true;
  });
  if (!st) {
    close(s, protocol::code::kUnauthorized, "the hub cannot record this agent: " + st.error().message);
    co_return false;
  }
  s->persisted_at = now;
  protocol::Welcome welcome{options_.lease_renew.count(), options_.lease_duration.count(), kVersion, s->expired_cert};
  send(s, protocol::encode(welcome, ++s->seq, store_.revision()));
  // After a CA rotation: the agent learns the new bundle, and renews at once when its
  // certificate comes from another CA than the current one.
  std::string bundle = enrollment_.caBundle();
  bool renew = !s->ca_pin.empty() && s->ca_pin != enrollment_.caPin();
  if (renew || hello.ca_bundle_hash != tls::sha256Hex(bundle)) {
    log::info("sending the agent the hub's CA bundle", {{"agent", s->name}, {"renew_certificate", renew ? "true" : "false"}});
    send(s, protocol::encode(protocol::CaBundle{bundle, renew}, ++s->seq));
  }
  s->hello_done = true;
  initialSync(s, acked);
  co_return true;
}

net::awaitable<bool> AgentGateway::onCsr(const std::shared_ptr<Session>& s, const protocol::Envelope& env) {
  auto now = std::chrono::steady_clock::now();
  if (s->last_csr != std::chrono::steady_clock::time_point{} && now - s->last_csr < std::chrono::seconds(10)) {
    close(s, protocol::code::kProtocol, "certificate requests are limited to one per 10 seconds");
    co_return false;
  }
  s->last_csr = now;
  auto decoded = protocol::bodyOf<protocol::Csr>(env);
  if (!decoded) {
    close(s, protocol::code::kProtocol, decoded.error().message);
    co_return false;
  }
  const std::string& csr_pem = decoded->csr_pem;
  auto csr = tls::inspectCsr(csr_pem);
  if (!csr) {
    close(s, protocol::code::kProtocol, "the certificate signing request is not usable: " + csr.error().message);
    co_return false;
  }
  auto cert = enrollment_.issue(s->name, csr_pem);
  if (!cert) {
    log::error("cannot renew an agent certificate", {{"agent", s->name}, {"error", cert.error().message}});
    co_return true;  // the agent retries later
  }
  auto info = tls::inspectCertificate(cert.value());
  std::string not_after = info ? formatTime(info->not_after) : "";
  std::string pin = csr->public_key_pin;
  Result<void> st = co_await api_.changeStatus(agents_, s->name, [&](Json& obj) {
    Json& c = obj["status"]["certificate"];
    c["pendingPublicKeyPin"] = pin;
    c["pendingNotAfter"] = not_after;
    return true;
  });
  if (!st) {
    log::warn("cannot record a renewed agent certificate", {{"agent", s->name}, {"error", st.error().message}});
    co_return true;
  }
  log::info("agent certificate renewed", {{"agent", s->name}, {"not_after", not_after}});
  send(s, protocol::encode(protocol::Certificate{cert.value(), enrollment_.caBundle()}, ++s->seq, store_.revision()));
  co_return true;
}

void AgentGateway::initialSync(const std::shared_ptr<Session>& s, int64_t acknowledged) {
  const std::string key = resourceKey(cps_);
  bool snapshot = acknowledged <= 0 || acknowledged > store_.revision();
  if (acknowledged > store_.revision()) {
    // The hub's store is older than what the agent saw (restored from a backup): a full resync,
    // never an inference that everything was deleted.
    log::warn("agent is ahead of the hub's store; sending a full snapshot",
              {{"agent", s->name}, {"agent_revision", std::to_string(acknowledged)},
               {"hub_revision", std::to_string(store_.revision())}});
  }
  std::vector<EventPtr> replay;
  int64_t at = 0;
  if (!snapshot) {
    auto sub = store_.watch(acknowledged, s->ws.get_executor());
    if (sub) {
      replay = std::move(sub->replay);
      at = sub->revision;
      store_.unwatch(sub->id);
    } else {
      snapshot = true;  // compacted: the events since then are gone
    }
  }
  if (snapshot) {
    auto [objects, rev] = store_.list(key);
    std::vector<ObjectPtr> mine;
    for (const auto& o : objects) {
      if (placedOn(*o) == s->name) {
        mine.push_back(o);
      }
    }
    at = rev;
    s->sent.clear();
    std::vector<std::string> views;
    views.reserve(mine.size());
    for (const auto& o : mine) {
      views.push_back(viewOf(*o));
      remember(*s, o->name, views.back());
    }
    send(s, desiredFrame(true, ++s->seq, at, views, {}));
  } else {
    // Collapse the replay to the last state per control plane.
    std::map<std::string, EventPtr> last;
    std::set<std::string> hooks_changed;
    for (const auto& ev : replay) {
      if (ev->object->resource == key && placedOn(*ev->object) == s->name) {
        last[ev->object->name] = ev;
      } else if (ev->object->resource == resourceKey(hooks_)) {
        hooks_changed.insert(ev->object->name);
      }
    }
    std::vector<ObjectPtr> upserts;
    std::vector<std::string> deletes;
    for (const auto& [name, ev] : last) {
      if (ev->type == EventType::Deleted) {
        deletes.push_back(name);
      } else {
        upserts.push_back(ev->object);
      }
    }
    // Control planes whose hooks changed meanwhile: their current state (with the hooks as now).
    for (const auto& hook : hooks_changed) {
      for (auto& o : usersOfHook(s->name, hook)) {
        if (!last.count(o->name)) {
          last[o->name] = nullptr;
          upserts.push_back(std::move(o));
        }
      }
    }
    std::vector<std::string> views;
    views.reserve(upserts.size());
    for (const auto& o : upserts) {
      views.push_back(viewOf(*o));
      remember(*s, o->name, views.back());  // (sent whether or not it changed: the agent was away)
    }
    for (const auto& name : deletes) {
      s->sent.erase(name);
    }
    send(s, desiredFrame(false, ++s->seq, at, views, deletes));
  }
  s->synced = at;
  auto early = std::move(s->early);
  s->early.clear();
  for (const auto& ev : early) {
    deliver(s, ev);
  }
}

void AgentGateway::deliver(const std::shared_ptr<Session>& s, const EventPtr& ev) {
  if (s->synced < 0) {
    if (s->early.size() >= 100000) {
      close(s, protocol::code::kTooSlow, "too many changes before the first sync");
      return;
    }
    s->early.push_back(ev);
    return;
  }
  if (ev->revision <= s->synced) {
    return;  // already part of what was sent
  }
  std::vector<std::string> views;
  std::vector<std::string> deletes;
  if (ev->object->resource == resourceKey(hooks_)) {
    for (const auto& o : usersOfHook(s->name, ev->object->name)) {  // they get the hook as it is now
      std::string view = viewOf(*o);
      if (remember(*s, o->name, view)) {
        views.push_back(std::move(view));
      }
    }
  } else if (ev->type == EventType::Deleted) {
    deletes.push_back(ev->object->name);
    s->sent.erase(ev->object->name);
  } else if (std::string view = viewOf(*ev->object); remember(*s, ev->object->name, view)) {
    views.push_back(std::move(view));
  }
  if (views.empty() && deletes.empty()) {
    return;  // nothing it acts on changed (the periodic progress mark tells it the revision)
  }
  send(s, desiredFrame(false, ++s->seq, ev->revision, views, deletes));
  s->synced = ev->revision;
}

bool AgentGateway::remember(Session& s, const std::string& name, const std::string& view) {
  const size_t digest = std::hash<std::string>{}(view);
  auto [it, added] = s.sent.try_emplace(name, digest);
  if (!added && it->second == digest) {
    return false;
  }
  it->second = digest;
  return true;
}

std::string AgentGateway::viewOf(const ObjectRecord& rec) const {
  Json cp = Json::parse(rec.bytes, nullptr, false);
  if (!cp.is_object() || !cp.contains("metadata") || !cp["metadata"].is_object()) {
    return rec.bytes;  // (not expected of a stored object)
  }
  Json view = Json::object();
  for (const char* k : {"apiVersion", "kind", "spec"}) {
    if (auto it = cp.find(k); it != cp.end()) {
      view[k] = std::move(*it);
    }
  }
  Json& meta = cp["metadata"];
  Json& view_meta = view["metadata"] = Json::object();
  for (const char* k : kViewMetadata) {
    if (auto it = meta.find(k); it != meta.end()) {
      view_meta[k] = std::move(*it);
    }
  }
  if (view_meta.contains("deletionTimestamp")) {
    return view.dump();  // being deleted: it needs neither credentials nor hooks any more
  }
  // What it carries beyond the stored object: the bootstrap kubeconfig of an external control
  // plane it adopts (until adopted), and the PostCreateHooks it uses.
  const Json spec = view.value("spec", Json::object());
  const Json ref = spec.value("bootstrapSecretRef", Json::object());
  if (secrets_ != nullptr && ref.is_object() && !ref.empty() && model::isAdopted(spec.value("type", "")) &&
      model::servedByAgent(view)) {
    auto data = secrets_->bootstrap(ref.value("name", ""));
    std::string key = ref.value("inClusterKey", "kubeconfig-incluster");
    if (data && data->count(key)) {
      // The agent adopts the cluster with it (over the link's mutual TLS), then reports the
      // kubeconfig it made; the hub then deletes the bootstrap secret.
      view["kflexBootstrap"] = {{"kubeconfig", data->at(key)}};
    }
  }
  if (rec.bytes.find("postCreateHook") != std::string::npos) {
    Json delivered = Json::object();
    for (const auto& use : kube::hookUses(view)) {
      ObjectPtr hook_rec = store_.get(resourceKey(hooks_), use.hook);
      Json hook = hook_rec ? Json::parse(hook_rec->bytes, nullptr, false) : Json();
      if (!hook.is_object()) {
        continue;  // (the agent says it waits for it)
      }
      const Json hook_meta = hook["metadata"];
      Json slim_meta = Json::object();
      for (const char* k : {"name", "uid", "generation", "labels", "annotations"}) {
        if (hook_meta.contains(k)) {
          slim_meta[k] = hook_meta[k];
        }
      }
      delivered[use.hook] = {{"metadata", slim_meta}, {"spec", hook.value("spec", Json::object())}};
    }
    view[kube::kDeliveredHooksField] = std::move(delivered);
  }
  return view.dump();
}

std::vector<ObjectPtr> AgentGateway::usersOfHook(const std::string& agent, const std::string& hook) const {
  std::vector<ObjectPtr> out;
  for (const auto& rec : store_.list(resourceKey(cps_)).first) {
    if (rec->bytes.find(hook) == std::string::npos || placedOn(*rec) != agent) {
      continue;
    }
    for (const auto& use : kube::hookUses(Json::parse(rec->bytes, nullptr, false))) {
      if (use.hook == hook) {
        out.push_back(rec);
        break;
      }
    }
  }
  return out;
}

void AgentGateway::progress(const std::shared_ptr<Session>& s, int64_t revision) {
  if (s->synced < 0 || revision <= s->synced) {
    return;
  }
  send(s, desiredFrame(false, ++s->seq, revision, std::vector<std::string>{}, {}));
  s->synced = revision;
}

net::awaitable<bool> AgentGateway::onStatus(const std::shared_ptr<Session>& s, const protocol::Envelope& env) {
  auto decoded = protocol::bodyOf<protocol::StatusReport>(env);
  if (!decoded) {
    log::warn("agent protocol error", {{"agent", s->name}, {"error", decoded.error().message}});
    close(s, protocol::code::kProtocol, decoded.error().message);
    co_return false;
  }
  const protocol::StatusReport& report = decoded.value();
  if (report.kubeconfig && !ControlPlaneSecrets::validSecret(report.kubeconfig->secret_name, report.kubeconfig->data)) {
    close(s, protocol::code::kProtocol,
          "a status report's kubeconfig must be {secretName: admin-kubeconfig|k3s-config|vc-vcluster, data: "
          "{<key>, <in-cluster key>}} of at most 64 KiB each");
    co_return false;
  }
  offerStatus(s, std::move(decoded.value()));
  co_return true;
}

void AgentGateway::offerStatus(const std::shared_ptr<Session>& s, protocol::StatusReport&& report) {
  std::string control_plane = report.control_plane;
  std::optional<PendingReport> replaced;
  std::shared_ptr<net::steady_timer> start;
  {
    std::lock_guard lock(reports_mutex_);
    auto& entry = reports_[s->name];
    if (!entry) {
      entry = std::make_unique<AgentReports>(options_.status_limits, std::chrono::steady_clock::now());
      entry->wake = start = std::make_shared<net::steady_timer>(s->ws.get_executor());
    }
    replaced = entry->limiter.offer(control_plane, PendingReport{std::move(report), s});
    if (!start) {
      wakeStatusWriter(s->name);
    }
  }
  if (replaced) {
    // The newer report is the one that will be stored: the agent may forget this one.
    ackStatus(replaced->link, replaced->report.seq);
  }
  if (start) {
    net::co_spawn(s->ws.get_executor(), statusWriter(s->name, std::move(start)), logFailure("status writer"));
  }
}

void AgentGateway::wakeStatusWriter(const std::string& agent) {
  if (auto it = reports_.find(agent); it != reports_.end()) {
    // (Posted: the timer is the writer's, on its executor. The writer never waits between
    // looking at its reports and starting to wait, so a report cannot slip in unnoticed.)
    net::post(it->second->wake->get_executor(), [wake = it->second->wake] { wake->cancel(); });
  }
}

net::awaitable<void> AgentGateway::statusWriter(std::string agent, std::shared_ptr<net::steady_timer> wake) {
  while (true) {
    std::optional<std::pair<std::string, PendingReport>> ready;
    std::optional<std::chrono::steady_clock::time_point> until;
    {
      std::lock_guard lock(reports_mutex_);
      auto it = reports_.find(agent);
      if (it == reports_.end() || it->second->wake != wake) {
        co_return;  // the agent was deleted
      }
      StatusLimiter<PendingReport>& limiter = it->second->limiter;
      auto now = std::chrono::steady_clock::now();
      if (stopping_) {
        ready = limiter.takeAny();  // what waits is written at once
      } else {
        auto next = limiter.next(now);
        ready = std::move(next.ready);
        until = next.at;
      }
      if (!ready && !until) {
        if (stopping_ || limiter.settledAt() <= now) {
          reports_.erase(it);
          co_return;
        }
        until = limiter.settledAt();  // then forget the agent, unless a report comes first
      }
    }
    if (!ready) {
      wake->expires_at(*until);
      co_await wake->async_wait(net::as_tuple(net::use_awaitable));
      continue;
    }
    try {
      co_await writeStatus(agent, ready->second.report);
    } catch (const std::exception& e) {
      // (Not expected; the writer must go on for the agent's other control planes.)
      log::error("cannot write an agent's status report",
                 {{"agent", agent}, {"controlPlane", ready->first}, {"error", e.what()}});
    }
    ackStatus(ready->second.link, ready->second.report.seq);
  }
}

void AgentGateway::ackStatus(const std::weak_ptr<Session>& link, int64_t seq) {
  auto s = link.lock();
  if (!s) {
    return;  // that link is gone; the agent sends the report again on its next one
  }
  net::dispatch(s->ws.get_executor(), [this, s, seq] {
    send(s, protocol::encode(protocol::StatusAck{seq}, ++s->seq));
  });
}

net::awaitable<void> AgentGateway::writeStatus(std::string agent, const protocol::StatusReport& report) {
  const std::string& name = report.control_plane;
  std::string stamp = formatTime(clock_.now());
  // The control plane's kubeconfig: sealed into the store, then referenced from status.secretRef.
  Json secret_ref;
  if (report.kubeconfig && secrets_ != nullptr) {
    const std::string& secret_name = report.kubeconfig->secret_name;
    const auto& data = report.kubeconfig->data;
    auto rec = store_.get(resourceKey(cps_), name);
    Json cp = rec ? Json::parse(rec->bytes, nullptr, false) : Json();
    if (cp.is_object() && cp.value("status", Json::object()).value("agent", "") == agent) {
      auto stored = co_await secrets_->put(name, cp["metadata"].value("uid", ""), secret_name, data);
      if (stored && model::isAdopted(cp["spec"].value("type", ""))) {
        // Adopted by the agent: the bootstrap credential has served its purpose.
        std::string bootstrap = cp["spec"].value("bootstrapSecretRef", Json::object()).value("name", "");
        if (!bootstrap.empty() && secrets_->bootstrap(bootstrap)) {
          co_await secrets_->removeBootstrap(bootstrap);
          log::info("an agent adopted a cluster; its bootstrap secret was deleted",
                    {{"controlPlane", name}, {"agent", agent}, {"secret", bootstrap}});
        }
      }
      if (stored) {
        bool admin = secret_name == "admin-kubeconfig";
        secret_ref = {{"namespace", name + "-system"}, {"name", secret_name},
                      {"inClusterKey", admin ? "kubeconfig-incluster" : "config-incluster"}};
        if (data.count(admin ? "kubeconfig" : "config")) {
          secret_ref["key"] = admin ? "kubeconfig" : "config";
        }
      } else {
        log::error("cannot store a control plane's kubeconfig", {{"controlPlane", name}, {"error", stored.error().message}});
      }
    }
  }
  const std::string agents_key = resourceKey(agents_);
  const Json endpoint = protocol::orNull(report.endpoint);
  const Json components = report.componentsJson();
  const Json hook_states = protocol::orNull(report.hook_states);
  const Json hooks_done = protocol::orNull(report.hooks_done);
  co_await api_.changeStatus(cps_, name, [&](Json& obj) {
    Json& status = obj["status"];
    if (!status.is_object() || status.value("agent", "") != agent || !store_.get(agents_key, agent)) {
      return false;  // not (or no longer) this agent's, or the agent was deleted
    }
    bool changed = false;
    for (const auto& c : report.conditions) {
      changed |= model::setCondition(status, c.type, c.status, c.reason, c.message, stamp, true);
    }
    if (status.value("observedGeneration", int64_t(-1)) != report.observed_generation) {
      status["observedGeneration"] = report.observed_generation;
      changed = true;
    }
    for (const auto& [key, value] : {std::pair<const char*, const Json*>{"endpoint", &endpoint},
                                     {"components", &components}, {"secretRef", &secret_ref},
                                     {"postCreateHooks", &hook_states},
                                     {"postCreateHookCompleted", &hooks_done}}) {
      if (!value->is_null() && status.value(key, Json()) != *value) {
        status[key] = *value;
        changed = true;
      }
    }
    if (!report.hook_states && status.contains("postCreateHooks")) {
      // It uses no hooks (any more).
      status.erase("postCreateHooks");
      status.erase("postCreateHookCompleted");
      if (status.contains("conditions") && status["conditions"].is_array()) {
        Json kept = Json::array();
        for (const auto& c : status["conditions"]) {
          if (c.value("type", "") != "PostCreateHooks") {
            kept.push_back(c);
          }
        }
        status["conditions"] = kept;
      }
      changed = true;
    }
    return changed;
  });
  // As upstream, a hook's labels go onto the control plane once it ran.
  // (A named value, not a temporary in the co_await's arguments: GCC 12 miscompiles those.)
  Json hook_labels = protocol::orNull(report.hook_labels);
  co_await copyHookLabels(api_, store_, cps_, name, std::move(hook_labels));
  // The agent has stopped it and removed its data: the deletion can finish.
  if (report.removed) {
    auto rec = store_.get(resourceKey(cps_), name);
    Json cp = rec ? Json::parse(rec->bytes, nullptr, false) : Json();
    if (cp.is_object() && cp["metadata"].contains("deletionTimestamp") &&
        cp.value("status", Json::object()).value("agent", "") == agent) {
      co_await releaseControlPlane(api_, cps_, name, "agent " + agent + " stopped it and removed its data");
    }
  }
}

net::awaitable<void> AgentGateway::markControlPlanesUnknown(const std::string& agent, const std::string& stamp) {
  const std::string quoted = "\"" + agent + "\"";
  for (const auto& rec : store_.list(resourceKey(cps_)).first) {
    // (A cheap test first: most control planes are not this agent's, and parsing them all for
    // every agent whose lease ran out would be quadratic.)
    if (rec->bytes.find(quoted) == std::string::npos || placedOn(*rec) != agent) {
      continue;
    }
    co_await api_.changeStatus(cps_, rec->name, [&](Json& obj) {
      return model::setCondition(obj["status"], "Ready", "Unknown", "AgentUnreachable",
                                 "agent " + agent + " has not renewed its lease; the control plane's state is unknown",
                                 stamp, true);
    });
  }
}

net::awaitable<void> AgentGateway::leaseLoop() {
  net::steady_timer timer(strand_);
  auto tick = std::clamp<std::chrono::milliseconds>(std::chrono::milliseconds(options_.lease_duration) / 5,
                                                    std::chrono::milliseconds(100), std::chrono::seconds(1));
  int ticks = 0;
  while (!stopping_) {
    timer.expires_after(tick);
    co_await timer.async_wait(net::as_tuple(net::use_awaitable));
    if (stopping_) {
      break;
    }
    co_await checkLeases();
    // Tell idle agents how far the hub has got, so a reconnect replays little.
    if (++ticks % 10 == 0) {
      std::vector<std::shared_ptr<Session>> all;
      {
        std::lock_guard lock(mutex_);
        for (auto& [n, sess] : sessions_) {
          all.push_back(sess);
        }
      }
      int64_t rev = processed_rev_;
      for (auto& sess : all) {
        net::dispatch(sess->ws.get_executor(), [this, sess, rev] { progress(sess, rev); });
      }
    }
  }
}

void AgentGateway::observeLease(const std::string& name, const Json& agent) {
  LeaseView v;
  v.ready = model::conditionStatus(agent, "Ready") == "True";
  if (auto t = parseTime(agent.value("status", Json::object()).value("lastHeartbeatTime", ""))) {
    v.last_heartbeat = *t;
  }
  for (const auto& c : agent.value("status", Json::object()).value("conditions", Json::array())) {
    if (c.is_object() && c.value("type", "") == "Ready" && c.value("status", "") == "False" &&
        c.value("reason", "") == "LeaseExpired") {
      if (auto t = parseTime(c.value("lastTransitionTime", ""))) {
        v.lost_since = *t;
      }
    }
  }
  leases_[name] = v;
}

net::awaitable<void> AgentGateway::checkLeases() {
  auto now = clock_.now();
  std::vector<std::pair<std::string, TimePoint>> expired;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [name, v] : leases_) {
      if (!v.ready) {
        continue;
      }
      // A hub that just started gives every agent a full lease, plus the longest reconnect
      // backoff, from its start: the whole fleet is coming back at once.
      TimePoint last = std::max(started_ + std::min(kBackoffCap, options_.lease_duration), v.last_heartbeat);
      if (auto it = renewed_.find(name); it != renewed_.end() && it->second > last) {
        last = it->second;
      }
      if (now - last > options_.lease_duration) {
        expired.emplace_back(name, last);
      }
    }
  }
  for (const auto& [name, last] : expired) {
    auto silent = std::chrono::duration_cast<std::chrono::seconds>(now - last);
    std::string stamp = formatTime(now);
    std::string msg = "the agent has not renewed its lease for " + seconds(silent) + " (lease duration " +
                      seconds(options_.lease_duration) + ")";
    log::warn("agent lease expired", {{"agent", name}, {"silent", seconds(silent)}});
    leases_[name].ready = false;  // the watch confirms it
    co_await api_.changeStatus(agents_, name, [&](Json& o) {
      if (model::conditionStatus(o, "Ready") != "True") {
        return false;
      }
      model::setCondition(o["status"], "Ready", "False", "LeaseExpired", msg, stamp);
      return true;
    });
    co_await markControlPlanesUnknown(name, stamp);
  }
}

net::awaitable<void> AgentGateway::watchLoop() {
  const std::string key = resourceKey(agents_);
  const std::string cp_key = resourceKey(cps_);
  bool first = true;
  while (!stopping_) {
    auto sub = store_.watch(store_.revision(), strand_, kControllerWatchQueue);
    if (!sub) {
      log::error("agent gateway cannot watch the store", {{"error", sub.error().message}});
      co_return;
    }
    watch_id_ = sub->id;
    processed_rev_ = sub->revision;
    leases_.clear();
    for (const auto& rec : store_.list(key).first) {
      observeLease(rec->name, Json::parse(rec->bytes, nullptr, false));
    }
    if (!first) {
      // We fell behind and events were dropped: every linked agent gets a full snapshot.
      std::vector<std::shared_ptr<Session>> all;
      {
        std::lock_guard lock(mutex_);
        for (auto& [n, sess] : sessions_) {
          all.push_back(sess);
        }
      }
      for (auto& sess : all) {
        net::dispatch(sess->ws.get_executor(), [this, sess] {
          if (sess->synced >= 0) {
            initialSync(sess, 0);
          }
        });
      }
    }
    first = false;
    while (true) {
      auto [ec, ev] = co_await sub->channel->async_receive(net::as_tuple(net::use_awaitable));
      if (ec || !ev) {
        break;  // closed (shutdown, or we fell behind: subscribe again)
      }
      processed_rev_ = ev->revision;
      if (ev->object->resource == cp_key) {
        std::string agent = placedOn(*ev->object);
        std::shared_ptr<Session> target;
        if (!agent.empty()) {
          std::lock_guard lock(mutex_);
          if (auto it = sessions_.find(agent); it != sessions_.end()) {
            target = it->second;
          }
        }
        if (target) {
          net::dispatch(target->ws.get_executor(), [this, target, ev = ev] { deliver(target, ev); });
        }
        continue;
      }
      if (ev->object->resource == resourceKey(hooks_)) {
        // A hook changed, appeared or went: the control planes using it get it again.
        std::vector<std::shared_ptr<Session>> all;
        {
          std::lock_guard lock(mutex_);
          for (auto& [n, sess] : sessions_) {
            all.push_back(sess);
          }
        }
        for (auto& sess : all) {
          net::dispatch(sess->ws.get_executor(), [this, sess, ev = ev] { deliver(sess, ev); });
        }
        continue;
      }
      if (ev->object->resource != key) {
        continue;
      }
      const std::string& name = ev->object->name;
      if (ev->type == EventType::Deleted) {
        log::info("agent revoked", {{"agent", name}});
        closeByName(name, protocol::code::kUnauthorized, "the agent was revoked (deleted on the hub)");
        {
          std::lock_guard lock(mutex_);
          renewed_.erase(name);
          leases_.erase(name);
        }
        {
          // Its waiting reports go unwritten (its writer ends when it sees that).
          std::lock_guard lock(reports_mutex_);
          wakeStatusWriter(name);
          reports_.erase(name);
        }
        continue;  // (its control planes are the release controller's)
      }
      Json obj = Json::parse(ev->object->bytes, nullptr, false);
      if (!obj.is_object()) {
        continue;
      }
      observeLease(name, obj);
      std::shared_ptr<Session> s;
      {
        std::lock_guard lock(mutex_);
        if (auto it = sessions_.find(name); it != sessions_.end()) {
          s = it->second;
        }
      }
      if (s) {
        std::string pin;
        {
          std::lock_guard lock(mutex_);
          pin = s->pin;
        }
        if (!acceptsPin(obj, pin)) {
          close(s, protocol::code::kUnauthorized, "the agent's enrolled key changed; this link's certificate is no longer valid");
        }
      }
    }
    store_.unwatch(sub->id);
    watch_id_ = 0;
  }
}

}  // namespace kflex::hub
