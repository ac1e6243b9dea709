// SPDX-License-Identifier: Apache-2.0
#include "hub/agents/gateway.hpp"

#include "hub/agents/release_controller.hpp"
#include "hub/api/errors.hpp"
#include "hub/api/router.hpp"
#include "shared/common/log.hpp"
#include "shared/common/util.hpp"
#include "shared/common/version.hpp"
#include "shared/model/conditions.hpp"
#include "shared/model/resource.hpp"
#include "shared/tls/lean_stream.hpp"
#include "shared/tls/pki.hpp"

namespace kflex::hub {
namespace {

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
  res.body() = statusResponse(code, reason, message).body;
  res.prepare_payload();
  beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(10));
  co_await http::async_write(stream, res, net::as_tuple(net::use_awaitable));
  log::warn("agent link refused", {{"peer", peer}, {"status", std::to_string(code)}, {"reason", message}});
}

}  // namespace

// One agent's link and what the gateway keeps of it.
struct AgentGateway::Session {
  Session(std::shared_ptr<AgentLink> l, const DesiredViews& views, TunnelLimits limits)
      : link(std::move(l)), feed(link, views), tunnels(std::make_shared<LinkTunnels>(link, limits)) {}
  const std::string& name() const { return link->agent(); }
  std::shared_ptr<AgentLink> link;
  DesiredFeed feed;  // on the link's executor
  const std::shared_ptr<LinkTunnels> tunnels;
  std::atomic<int64_t> tunnel_version{0};  // what the agent's hello said, once accepted
  std::string pin;     // guarded by the gateway's mutex_
  std::string ca_pin;  // the CA the link's certificate chains to
  bool expired_cert = false;
  // Below: on the link's executor.
  bool hello_done = false;
  std::chrono::steady_clock::time_point last_csr{};
  TimePoint persisted_at{};  // the lastHeartbeatTime this link last stored or saw stored
};

AgentGateway::AgentGateway(net::io_context& ioc, ApiClient& api, ApiClient& leader, ObjectStore& store,
                           const model::Registry& registry, EnrollmentService& enrollment, const Clock& clock,
                           GatewayOptions options)
    : api_(api), store_(store), agents_(*registry.find(model::kTenancyGroup, model::kTenancyVersion, "agents")),
      enrollment_(enrollment), clock_(clock), options_(options), strand_(net::make_strand(ioc)),
      views_(store, registry),
      leases_(ioc, api, leader, store, registry, clock, LeaseOptions{options.lease_duration, options.heartbeat_persist}),
      status_(ioc, api, store, registry, clock, options.status_limits) {}

AgentGateway::~AgentGateway() = default;

void AgentGateway::setSecrets(ControlPlaneSecrets* secrets) {
  views_.setSecrets(secrets);
  status_.setSecrets(secrets);
}

void AgentGateway::start() {
  leases_.start();
  status_.start();
  net::co_spawn(strand_, watchLoop(), logFailure("desired state"));
  net::co_spawn(strand_, progressLoop(), logFailure("progress"));
}

void AgentGateway::stop() {
  stopping_ = true;
  forEachSession([](const std::shared_ptr<Session>& s) {
    s->link->close(protocol::code::kShuttingDown, "the hub is shutting down; reconnect later");
  });
  status_.flush();  // the status reports waiting for their turn are written now
  leases_.stop();
  net::post(strand_, [this] {
    if (watch_id_ != 0) {
      store_.unwatch(watch_id_);
    }
  });
}

void AgentGateway::forEachSession(const std::function<void(const std::shared_ptr<Session>&)>& fn) {
  std::vector<std::shared_ptr<Session>> all;
  {
    std::lock_guard lock(mutex_);
    all.reserve(sessions_.size());
    for (auto& [name, s] : sessions_) {
      all.push_back(s);
    }
  }
  for (auto& s : all) {
    net::dispatch(s->link->executor(), [s, fn] { fn(s); });
  }
}

std::shared_ptr<AgentGateway::Session> AgentGateway::find(const std::string& agent) const {
  std::lock_guard lock(mutex_);
  auto it = sessions_.find(agent);
  return it != sessions_.end() ? it->second : nullptr;
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

std::shared_ptr<LinkTunnels> AgentGateway::tunnels(const std::string& agent, bool& linked) const {
  auto s = find(agent);
  linked = s != nullptr;
  return s && s->tunnel_version.load() > 0 ? s->tunnels : nullptr;
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
  auto link = std::make_shared<AgentLink>(std::move(lean.value()), id.common_name, peer,
                                          LinkOptions{options_.idle_timeout, options_.max_queue_bytes});
  auto s = std::make_shared<Session>(link, views_, options_.tunnel);
  s->pin = id.public_key_pin;
  s->ca_pin = id.ca_pin;
  s->expired_cert = !id.verified;
  if (!co_await link->accept(std::move(req))) {
    co_return;
  }
  req = {};  // not needed any more, and this frame lives as long as the link
  std::shared_ptr<Session> replaced;
  {
    std::lock_guard lock(mutex_);
    auto& slot = sessions_[link->agent()];
    replaced = slot;
    slot = s;
  }
  if (replaced) {
    replaced->link->close(protocol::code::kReplaced, "a newer link of this agent took over");
  }
  log::info("agent connected", {{"agent", link->agent()}, {"peer", peer}, {"expired_certificate", s->expired_cert ? "true" : "false"}});
  // (Named, not temporaries in the co_await: GCC 12 destroys such temporaries twice, and these
  // hold the session.)
  AgentLink::MessageHandler on_message = [this, s](const protocol::Envelope& env) { return onMessage(s, env); };
  AgentLink::FrameHandler on_frame = [s](std::string frame) {
    if (s->tunnel_version.load() > 0) {
      s->tunnels->onFrame(std::move(frame));
    }
  };
  co_await link->run(std::move(on_message), std::move(on_frame));
  s->tunnels->closeAll("the link of agent " + link->agent() + " ended" +
                       (link->closeCode().empty() ? std::string() : " (" + link->closeCode() + ")") +
                       "; new connections go over its next link");
  {
    std::lock_guard lock(mutex_);
    auto it = sessions_.find(link->agent());
    if (it != sessions_.end() && it->second == s) {
      sessions_.erase(it);
    }
  }
  const std::string& reason = link->closeCode();
  log::info("agent disconnected", {{"agent", link->agent()}, {"peer", peer},
                                   {"reason", reason.empty() ? "link closed" : reason}});
}

net::awaitable<bool> AgentGateway::onMessage(const std::shared_ptr<Session>& s, const protocol::Envelope& env) {
  const std::string& type = env.type;
  if (!s->hello_done && type != protocol::msg::kHello) {
    s->link->close(protocol::code::kProtocol, "the first message must be hello, not " + type);
    co_return false;
  }
  if (type == protocol::msg::kHello) {
    if (s->hello_done) {
      s->link->close(protocol::code::kProtocol, "hello was already sent on this link");
      co_return false;
    }
    co_return co_await onHello(s, env);
  }
  if (type == protocol::msg::kLease) {
    co_await onLease(s);
    co_return true;
  }
  if (type == protocol::msg::kAck) {
    if (!s->feed.acknowledge(env.revision)) {
      s->link->close(protocol::code::kProtocol, "acknowledged revision " + std::to_string(env.revision) +
                                                    " was never sent (last sent: " + std::to_string(s->feed.sent()) + ")");
      co_return false;
    }
    co_return true;
  }
  if (type == protocol::msg::kStatus) {
    co_return co_await onStatus(s, env);
  }
  if (type == protocol::msg::kCsr) {
    co_return co_await onCsr(s, env);
  }
  s->link->close(protocol::code::kProtocol, "message type " + type + " is not expected from an agent by this hub");
  co_return false;
}

net::awaitable<void> AgentGateway::onLease(const std::shared_ptr<Session>& s) {
  bool was_not_ready = co_await leases_.renew(s->name(), s->feed.acknowledged(), s->persisted_at);
  if (was_not_ready && s->feed.started()) {
    // Back from a lease expiry on the same link: its control planes were marked Unknown, so
    // resync in full (a snapshot makes the agent report every control plane again).
    s->feed.sync(0);
  }
}

net::awaitable<bool> AgentGateway::onHello(const std::shared_ptr<Session>& s, const protocol::Envelope& env) {
  auto decoded = protocol::bodyOf<protocol::Hello>(env);
  if (!decoded) {
    log::warn("agent protocol error", {{"agent", s->name()}, {"error", decoded.error().message}});
    s->link->close(protocol::code::kProtocol, decoded.error().message);
    co_return false;
  }
  const protocol::Hello& hello = decoded.value();
  if (!hello.name.empty() && hello.name != s->name()) {
    s->link->close(protocol::code::kUnauthorized,
                   "the hello names agent \"" + hello.name + "\" but the certificate is for \"" + s->name() + "\"");
    co_return false;
  }
  auto now = clock_.now();
  std::string stamp = formatTime(now);
  leases_.renewed(s->name(), now);
  std::string peer_host = s->link->peer().substr(0, s->link->peer().rfind(':'));
  Json cap_clean = hello.capacity;
  bool has_types = hello.control_plane_types.has_value();
  Json types = has_types ? Json(*hello.control_plane_types) : Json::array();
  int64_t acked = hello.acknowledged_revision;
  int64_t tunnel = hello.tunnel;
  std::string s_pin;
  {
    std::lock_guard lock(mutex_);
    s_pin = s->pin;
  }
  Result<void> st = co_await api_.changeStatus(agents_, s->name(), [&](Json& obj) {
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
    if (tunnel > 0) {
      status["tunnelVersion"] = tunnel;
    } else {
      status.erase("tunnelVersion");  // an agent without the tunnel
    }
    // Which replica holds its link: where another replica passes a tunnel's CONNECT on to.
    if (!options_.peer_url.empty()) {
      status["hubPeer"] = options_.peer_url;
    } else {
      status.erase("hubPeer");
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
    s->link->close(protocol::code::kUnauthorized, "the hub cannot record this agent: " + st.error().message);
    co_return false;
  }
  s->persisted_at = now;
  s->tunnel_version = std::min<int64_t>(tunnel, protocol::tunnel::kVersion);
  protocol::Welcome welcome{options_.lease_renew.count(), options_.lease_duration.count(), kVersion, s->expired_cert};
  s->link->send(welcome, store_.revision());
  // After a CA rotation: the agent learns the new bundle, and renews at once when its
  // certificate comes from another CA than the current one.
  std::string bundle = enrollment_.caBundle();
  bool renew = !s->ca_pin.empty() && s->ca_pin != enrollment_.caPin();
  if (renew || hello.ca_bundle_hash != tls::sha256Hex(bundle)) {
    log::info("sending the agent the hub's CA bundle", {{"agent", s->name()}, {"renew_certificate", renew ? "true" : "false"}});
    s->link->send(protocol::CaBundle{bundle, renew});
  }
  s->hello_done = true;
  if (store_.shared() && acked > store_.revision()) {
    // The agent comes from another replica, which it heard from last: this one first takes in
    // what it has not yet, so that the agent resumes by deltas instead of a full snapshot.
    // (Without the datastore, the feed falls back on what this replica has: a full resync.)
    co_await store_.fresh(net::use_awaitable);
  }
  s->feed.sync(acked);
  co_return true;
}

net::awaitable<bool> AgentGateway::onCsr(const std::shared_ptr<Session>& s, const protocol::Envelope& env) {
  auto now = std::chrono::steady_clock::now();
  if (s->last_csr != std::chrono::steady_clock::time_point{} && now - s->last_csr < std::chrono::seconds(10)) {
    s->link->close(protocol::code::kProtocol, "certificate requests are limited to one per 10 seconds");
    co_return false;
  }
  s->last_csr = now;
  auto decoded = protocol::bodyOf<protocol::Csr>(env);
  if (!decoded) {
    s->link->close(protocol::code::kProtocol, decoded.error().message);
    co_return false;
  }
  const std::string& csr_pem = decoded->csr_pem;
  auto csr = tls::inspectCsr(csr_pem);
  if (!csr) {
    s->link->close(protocol::code::kProtocol, "the certificate signing request is not usable: " + csr.error().message);
    co_return false;
  }
  auto cert = enrollment_.issue(s->name(), csr_pem);
  if (!cert) {
    log::error("cannot renew an agent certificate", {{"agent", s->name()}, {"error", cert.error().message}});
    co_return true;  // the agent retries later
  }
  auto info = tls::inspectCertificate(cert.value());
  std::string not_after = info ? formatTime(info->not_after) : "";
  std::string pin = csr->public_key_pin;
  Result<void> st = co_await api_.changeStatus(agents_, s->name(), [&](Json& obj) {
    Json& c = obj["status"]["certificate"];
    c["pendingPublicKeyPin"] = pin;
    c["pendingNotAfter"] = not_after;
    return true;
  });
  if (!st) {
    log::warn("cannot record a renewed agent certificate", {{"agent", s->name()}, {"error", st.error().message}});
    co_return true;
  }
  log::info("agent certificate renewed", {{"agent", s->name()}, {"not_after", not_after}});
  s->link->send(protocol::Certificate{cert.value(), enrollment_.caBundle()}, store_.revision());
  co_return true;
}

net::awaitable<bool> AgentGateway::onStatus(const std::shared_ptr<Session>& s, const protocol::Envelope& env) {
  auto decoded = protocol::bodyOf<protocol::StatusReport>(env);
  if (!decoded) {
    log::warn("agent protocol error", {{"agent", s->name()}, {"error", decoded.error().message}});
    s->link->close(protocol::code::kProtocol, decoded.error().message);
    co_return false;
  }
  const protocol::StatusReport& report = decoded.value();
  if (report.kubeconfig && !ControlPlaneSecrets::validSecret(report.kubeconfig->secret_name, report.kubeconfig->data)) {
    s->link->close(protocol::code::kProtocol,
                   "a status report's kubeconfig must be {secretName: admin-kubeconfig|k3s-config|vc-vcluster, data: "
                   "{<key>, <in-cluster key>}} of at most 64 KiB each");
    co_return false;
  }
  std::weak_ptr<AgentLink> link = s->link;
  int64_t seq = report.seq;
  status_.offer(s->name(), std::move(decoded.value()), [link, seq] {
    if (auto l = link.lock()) {
      l->send(protocol::StatusAck{seq});  // (a link that is gone: the agent sends it again on its next one)
    }
  });
  co_return true;
}

void AgentGateway::checkKey(const std::string& name, const Json& agent) {
  auto s = find(name);
  if (!s) {
    return;
  }
  std::string pin;
  {
    std::lock_guard lock(mutex_);
    pin = s->pin;
  }
  if (!acceptsPin(agent, pin)) {
    s->link->close(protocol::code::kUnauthorized, "the agent's enrolled key changed; this link's certificate is no longer valid");
  }
}

net::awaitable<void> AgentGateway::progressLoop() {
  // Now and then (at least every 10 s, or 2 lease durations when shorter).
  auto period = std::clamp<std::chrono::milliseconds>(std::chrono::milliseconds(options_.lease_duration) * 2,
                                                      std::chrono::seconds(1), std::chrono::seconds(10));
  net::steady_timer timer(strand_);
  while (!stopping_) {
    timer.expires_after(period);
    co_await timer.async_wait(net::as_tuple(net::use_awaitable));
    if (stopping_) {
      break;
    }
    int64_t rev = processed_rev_;
    forEachSession([rev](const std::shared_ptr<Session>& s) { s->feed.progress(rev); });
  }
}

net::awaitable<void> AgentGateway::watchLoop() {
  const std::string key = resourceKey(agents_);
  const std::string& cp_key = views_.controlPlanes();
  bool first = true;
  while (!stopping_) {
    auto sub = store_.watch(store_.revision(), strand_, ControllerOptions{}.watch_queue);
    if (!sub) {
      log::error("agent gateway cannot watch the store", {{"error", sub.error().message}});
      co_return;
    }
    watch_id_ = sub->id;
    processed_rev_ = sub->revision;
    if (!first) {
      // We fell behind and events were dropped: every linked agent gets a full snapshot.
      forEachSession([](const std::shared_ptr<Session>& sess) {
        if (sess->feed.started()) {
          sess->feed.sync(0);
        }
      });
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
        if (auto target = agent.empty() ? nullptr : find(agent)) {
          net::dispatch(target->link->executor(), [target, ev = ev] { target->feed.deliver(ev); });
        }
        continue;
      }
      if (ev->object->resource == views_.hooks()) {
        // A hook changed, appeared or went: the control planes using it get it again.
        forEachSession([ev = ev](const std::shared_ptr<Session>& sess) { sess->feed.deliver(ev); });
        continue;
      }
      if (ev->object->resource != key) {
        continue;
      }
      const std::string& name = ev->object->name;
      if (ev->type == EventType::Deleted) {
        log::info("agent revoked", {{"agent", name}});
        if (auto s = find(name)) {
          s->link->close(protocol::code::kUnauthorized, "the agent was revoked (deleted on the hub)");
        }
        status_.forget(name);  // its waiting reports go unwritten
        continue;  // (its lease is the lease controller's, its control planes the release controller's)
      }
      Json obj = Json::parse(ev->object->bytes, nullptr, false);
      if (!obj.is_object()) {
        continue;
      }
      checkKey(name, obj);
    }
    store_.unwatch(sub->id);
    watch_id_ = 0;
  }
}

}  // namespace kflex::hub
