// SPDX-License-Identifier: Apache-2.0
#include "agent/link/hub_link.hpp"

#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <deque>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/beast/websocket.hpp>

#include "shared/common/log.hpp"
#include "shared/common/util.hpp"
#include "shared/common/version.hpp"
#include "shared/net/https_client.hpp"
#include "shared/protocol/messages.hpp"
#include "shared/tls/context.hpp"
#include "shared/tls/lean_stream.hpp"
#include "shared/tls/pki.hpp"

namespace kflex::agent {
namespace {

namespace websocket = beast::websocket;
using namespace net::experimental::awaitable_operators;
using Json = nlohmann::json;

std::string goArch(const std::string& machine) {
  if (machine == "x86_64") {
    return "amd64";
  }
  if (machine == "aarch64") {
    return "arm64";
  }
  if (machine.rfind("armv7", 0) == 0) {
    return "arm";
  }
  return machine;
}

}  // namespace

// One link's connection: Asio's TLS stream for the handshake, then the WebSocket over a
// tls::LeanStream, where OpenSSL reads and writes the socket itself (no copy of every record
// through a BIO pair, as with the hub's end of the link).
struct HubLink::Conn {
  Conn(net::io_context& ioc, ssl::context& ctx) : tls(std::make_unique<net_client::TlsStream>(ioc, ctx)) {}
  std::unique_ptr<net_client::TlsStream> tls;            // until the TLS handshake is done
  std::optional<websocket::stream<tls::LeanStream>> ws;  // from then on
};

HubLink::HubLink(net::io_context& ioc, Identity identity, AgentState& state, const std::filesystem::path& data_dir,
                 LinkOptions options)
    : ioc_(ioc), identity_(std::move(identity)), state_(state), data_dir_(data_dir), options_(options), sleep_(ioc) {
  auto ctx = tls::makeClientContext({identity_.ca_bundle_pem, identity_.cert_pem, identity_.key_pem});
  if (!ctx) {
    throw std::runtime_error("cannot set up TLS for the hub link: " + ctx.error().message);
  }
  tls_ = ctx.value();
}

HubLink::~HubLink() = default;

Json HubLink::hostFacts(const std::filesystem::path& data_dir) {
  Json facts = Json::object();
  utsname u{};
  if (::uname(&u) == 0) {
    facts["os"] = std::string(u.sysname) == "Linux" ? "linux" : std::string(u.sysname);
    facts["arch"] = goArch(u.machine);
    facts["kernelVersion"] = u.release;
    facts["hostname"] = u.nodename;
  }
  Json cap = Json::object();
  cap["cpu"] = std::to_string(std::max(1u, std::thread::hardware_concurrency()));
  long pages = ::sysconf(_SC_PHYS_PAGES);
  long page = ::sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) {
    cap["memory"] = std::to_string((uint64_t(pages) * uint64_t(page)) / 1024) + "Ki";
  }
  struct statvfs fs {};
  if (::statvfs(data_dir.c_str(), &fs) == 0) {
    cap["disk"] = std::to_string((uint64_t(fs.f_blocks) * fs.f_frsize) / 1024) + "Ki";
  }
  facts["capacity"] = cap;
  facts["agentVersion"] = kVersion;
  return facts;
}

void HubLink::record(const std::string& state, const std::string& detail) {
  auto r = state_.set({{"link_state", state}, {"link_since", formatTime(std::chrono::system_clock::now())},
                       {"link_detail", detail}});
  if (!r) {
    log::warn("cannot record the link state in agent.db", {{"error", r.error().message}});
  }
}

void HubLink::stop() {
  stopping_ = true;
  sleep_.cancel();
  if (auto c = conn_) {
    if (c->ws) {
      c->ws->async_close(websocket::close_reason(websocket::close_code::going_away, "agent stopping"),
                         [c](boost::system::error_code) {});
    } else if (c->tls) {
      beast::get_lowest_layer(*c->tls).close();  // (the TLS handshake ends with an error)
    }
  }
}

bool HubLink::renewalDue() const {
  auto info = tls::inspectCertificate(identity_.cert_pem);
  if (!info) {
    return true;
  }
  auto renew_at = info->not_before + (info->not_after - info->not_before) * 2 / 3;
  return std::chrono::system_clock::now() >= renew_at;
}

void HubLink::installCertificate(const std::string& cert_pem, const std::string& ca_bundle_pem) {
  if (pending_key_.empty() || !tls::checkKeyMatches(cert_pem, pending_key_)) {
    log::warn("ignoring a certificate from the hub that is not for the key this agent asked for");
    return;
  }
  auto info = tls::inspectCertificate(cert_pem);
  if (!info || info->common_name != identity_.name) {
    log::warn("ignoring a certificate from the hub for another name");
    return;
  }
  Identity next = identity_;
  next.key_pem = pending_key_;
  next.cert_pem = cert_pem;
  if (!ca_bundle_pem.empty()) {
    next.ca_bundle_pem = ca_bundle_pem;
  }
  auto ctx = tls::makeClientContext({next.ca_bundle_pem, next.cert_pem, next.key_pem});
  if (!ctx) {
    log::error("cannot use the renewed certificate", {{"error", ctx.error().message}});
    return;
  }
  if (auto r = saveRenewed(data_dir_, next); !r) {
    log::error("cannot store the renewed certificate; keeping the current one", {{"error", r.error().message}});
    return;
  }
  identity_ = std::move(next);
  tls_ = ctx.value();
  pending_key_.clear();
  log::info("certificate renewed", {{"agent", identity_.name}, {"valid_until", formatTime(info->not_after)}});
}

void HubLink::installCaBundle(const std::string& bundle_pem) {
  if (bundle_pem == identity_.ca_bundle_pem) {
    return;
  }
  // Usable as a trust store with this agent's own certificate, or it is not taken.
  bool parses = bundle_pem.find("-----BEGIN CERTIFICATE-----") != std::string::npos &&
                tls::inspectCertificate(bundle_pem).has_value();
  auto ctx = parses ? tls::makeClientContext({bundle_pem, identity_.cert_pem, identity_.key_pem})
                    : Result<std::shared_ptr<ssl::context>>(fail("no certificate in it"));
  if (!ctx) {
    log::warn("ignoring a CA bundle from the hub that is not usable", {{"error", ctx.error().message}});
    return;
  }
  if (auto r = writeFileAtomic(caPath(data_dir_), bundle_pem, 0644); !r) {
    log::error("cannot store the hub's new CA bundle; keeping the current one", {{"error", r.error().message}});
    return;
  }
  identity_.ca_bundle_pem = bundle_pem;
  tls_ = ctx.value();
  log::info("stored the hub's new CA bundle (CA rotation)", {{"file", caPath(data_dir_).string()}});
}

net::awaitable<void> HubLink::run() {
  protocol::Backoff backoff(options_.backoff_base, options_.backoff_cap, std::random_device{}());
  size_t attempt = 0;
  std::string last_error;
  while (!stopping_) {
    const std::string& url = identity_.hub_urls[attempt % identity_.hub_urls.size()];
    ++attempt;
    auto [welcomed, ended] = co_await session(url);
    const std::string& why = ended.message;
    // Refused credentials or a malformed URL: retrying alone will not help, so it is an error.
    const bool refused = ended.code == Errc::Refused || ended.code == Errc::Invalid;
    conn_.reset();
    if (stopping_) {
      break;
    }
    if (welcomed) {
      backoff.reset();
      attempt = 0;  // start again from the preferred URL
    }
    auto wait = backoff.next();
    record("disconnected", why);
    // Say it once per distinct failure, not on every retry.
    if (why != last_error || welcomed) {
      (refused ? log::error : log::warn)("hub link down; reconnecting",
                                         {{"hub", url}, {"error", why}, {"retry_in", std::to_string(wait.count()) + "ms"}});
      last_error = why;
    } else {
      log::debug("hub still unreachable", {{"hub", url}, {"retry_in", std::to_string(wait.count()) + "ms"}});
    }
    sleep_.expires_after(wait);
    co_await sleep_.async_wait(net::as_tuple(net::use_awaitable));
  }
  record("stopped", "the agent stopped");
}

net::awaitable<HubLink::SessionEnd> HubLink::session(const std::string& url) {
  bool welcomed = false;
  bool refused = false;
  // How it ended: why, whether the hub had welcomed this agent, and whether it refused it.
  auto ended = [&](std::string why) {
    return SessionEnd{welcomed, fail(refused ? Errc::Refused : Errc::Unavailable, std::move(why))};
  };
  std::string host;
  std::string port;
  if (auto r = splitHttpsUrl(url, host, port); !r) {
    co_return SessionEnd{false, fail(Errc::Invalid, r.error().message)};
  }
  auto conn = std::make_shared<Conn>(ioc_, *tls_);
  conn_ = conn;
  auto& tcp = beast::get_lowest_layer(*conn->tls);
  tcp.expires_after(options_.connect_timeout);
  if (std::string err = co_await net_client::openTls(*conn->tls, host, port, url); !err.empty()) {
    co_return ended(err);
  }
  tcp.expires_never();
  if (stopping_) {
    co_return ended("the agent is stopping");
  }
  auto lean = tls::LeanStream::adopt(std::move(conn->tls));
  if (!lean) {
    co_return ended("cannot carry the link to " + url + ": " + lean.error().message);
  }
  auto& ws = conn->ws.emplace(std::move(lean.value()));
  websocket::stream_base::timeout t{};
  t.handshake_timeout = options_.connect_timeout;
  t.idle_timeout = options_.idle_timeout;
  t.keep_alive_pings = true;
  ws.set_option(t);
  ws.read_message_max(protocol::kMaxDesiredFrameBytes);
  ws.write_buffer_bytes(protocol::tunnel::kLinkWriteBuffer);
  ws.set_option(websocket::stream_base::decorator(
      [](websocket::request_type& req) { req.set(http::field::user_agent, std::string("kflex-agent/") + kVersion); }));
  websocket::response_type res;
  std::string host_header = url.substr(8);
  host_header = host_header.substr(0, host_header.find('/'));
  auto [hec] = co_await ws.async_handshake(res, host_header, protocol::kConnectPath, net::as_tuple(net::use_awaitable));
  if (hec) {
    if (hec == websocket::error::upgrade_declined) {
      Json st = Json::parse(res.body(), nullptr, false);
      std::string msg = st.is_object() ? st.value("message", "") : "";
      refused = res.result_int() == 401 || res.result_int() == 403;
      co_return ended("the hub refused the link (HTTP " + std::to_string(res.result_int()) + ")" +
                      (msg.empty() ? "" : ": " + msg));
    }
    co_return ended("WebSocket handshake with " + url + " failed: " + hec.message());
  }
  ws.text(true);
  protocol::Hello hello;
  const Json facts = hostFacts(data_dir_);
  for (const auto& [key, value] : facts.items()) {
    if (value.is_string()) {
      hello.facts[key] = value.get<std::string>();
    }
  }
  const Json measured = facts.value("capacity", Json::object());  // (a temporary would not outlive the loop)
  for (const auto& [key, value] : measured.items()) {
    hello.capacity[key] = value.get<std::string>();
  }
  for (const auto& [key, value] : capacity_) {
    hello.capacity[key] = value;
  }
  if (!types_.empty()) {
    hello.control_plane_types = types_;
  }
  hello.name = identity_.name;
  if (options_.resolve_api) {
    hello.tunnel = protocol::tunnel::kVersion;
  }
  hello.acknowledged_revision = state_.acknowledgedRevision();
  hello.ca_bundle_hash = tls::sha256Hex(identity_.ca_bundle_pem);
  std::string hello_msg = protocol::encode(hello, 1);
  auto [wec, wn] = co_await ws.async_write(net::buffer(hello_msg), net::as_tuple(net::use_awaitable));
  if (wec) {
    co_return ended("cannot send hello: " + wec.message());
  }
  beast::flat_buffer buffer;
  auto [rec, rn] = co_await ws.async_read(buffer, net::as_tuple(net::use_awaitable));
  if (rec) {
    co_return ended(rec == websocket::error::closed
                        ? "the hub closed the link: " + std::string(ws.reason().reason.c_str())
                        : "no welcome from the hub: " + rec.message());
  }
  auto welcome = protocol::decode(beast::buffers_to_string(buffer.data()));
  buffer.consume(buffer.size());
  if (!welcome) {
    co_return ended("protocol error from the hub: " + welcome.error().message);
  }
  if (auto refusal = protocol::bodyOf<protocol::ErrorBody>(welcome.value())) {
    refused = refusal->code == protocol::code::kUnauthorized;
    co_return ended("the hub refused the link: " + refusal->message);
  }
  auto welcome_body = protocol::bodyOf<protocol::Welcome>(welcome.value());
  if (!welcome_body) {
    co_return ended("protocol error from the hub: " + welcome_body.error().message);
  }
  welcomed = true;
  auto renew = std::chrono::seconds(welcome_body->lease_renew_seconds);
  record("connected", url);
  (void)state_.set("lease_renew_seconds", std::to_string(renew.count()));
  log::info("connected to the hub", {{"hub", url}, {"agent", identity_.name}, {"lease_renew", std::to_string(renew.count()) + "s"}});

  std::string reason;
  // Everything after hello goes through one queue and one writer; the reader and the ticker
  // only queue.
  std::deque<std::string> outq;
  net::steady_timer wake(co_await net::this_coro::executor);
  net::steady_timer tick(co_await net::this_coro::executor);  // the ticker sleeps on it
  bool renew_now = false;       // the hub asked for a certificate from its current CA
  std::set<int64_t> in_flight;  // outbox entries sent and not yet acknowledged on this link
  bool done = false;            // the reader has finished: the link is over
  auto queue = [&](std::string m) {
    outq.push_back(std::move(m));
    wake.cancel();
  };
  // The tunnel's stream frames (binary) wait in their own queue: the writer sends the link's own
  // messages first, so no stream holds up a delta, a lease or an acknowledgement. Each stream is
  // at most one window ahead of its peer, which bounds this queue.
  std::deque<std::string> frames;
  Tunnels::Resolve resolve = options_.resolve_api;
  if (!resolve) {
    resolve = [](const std::string&) -> Result<Tunnels::Target> {
      return fail(Errc::Unavailable, "this agent offers no tunnel");
    };
  }
  auto link_executor = co_await net::this_coro::executor;
  Tunnels tunnels(link_executor, std::move(resolve), [&](std::string frame) {
    frames.push_back(std::move(frame));
    wake.cancel();
  });
  uint64_t seq = 1;
  auto queueReports = [&] {
    for (const auto& r : state_.outbox().pending(256)) {
      if (!in_flight.insert(r.seq).second) {
        continue;
      }
      Json body = Json::parse(r.body, nullptr, false);
      if (body.is_object()) {
        body["seq"] = r.seq;
      }
      auto report = protocol::StatusReport::fromJson(body);
      if (!report) {
        // (Not expected: the reconciler stores only reports it made within bounds.)
        log::error("dropping a status report the hub would refuse", {{"error", report.error().message}});
        (void)state_.outbox().ack(r.seq);
        continue;
      }
      queue(protocol::encode(report.value(), ++seq));
    }
  };
  // A fresh link: report everything again (the hub may have marked it Unknown meanwhile). The
  // reconciler refills the outbox at once; from then on the outbox tells this link of new reports.
  (void)state_.clearReported();
  queueReports();
  state_.outbox().setOnQueued(queueReports);
  struct Clear {
    Outbox& outbox;
    ~Clear() { outbox.setOnQueued(nullptr); }
  } clear_on_exit{state_.outbox()};

  auto onDesired = [&](const protocol::Envelope& env) -> bool {
    std::vector<std::pair<std::string, std::string>> upserts;
    std::vector<std::string> deletes;
    const bool snapshot = env.type == protocol::Snapshot::kType;
    auto toPairs = [&](std::vector<protocol::DesiredObject>& objects) {
      upserts.reserve(objects.size());
      for (auto& o : objects) {
        upserts.emplace_back(std::move(o.name), std::move(o.json));
      }
    };
    if (snapshot) {
      auto body = protocol::bodyOf<protocol::Snapshot>(env);
      if (!body) {
        return false;
      }
      toPairs(body->control_planes);
    } else {
      auto body = protocol::bodyOf<protocol::Delta>(env);
      if (!body) {
        return false;
      }
      toPairs(body->upserts);
      deletes = std::move(body->deletes);
    }
    // Stored (durably) before it is acknowledged; a snapshot (a full resync) is reported again in
    // full.
    auto stored = snapshot ? state_.applySnapshot(env.revision, upserts) : state_.applyDelta(env.revision, upserts, deletes);
    if (!stored) {
      log::error("cannot store desired state; not acknowledging it", {{"error", stored.error().message}});
      return true;
    }
    if (snapshot || !upserts.empty() || !deletes.empty()) {
      log::info("desired state stored", {{"kind", env.type}, {"revision", std::to_string(env.revision)},
                                         {"changed", std::to_string(upserts.size() + deletes.size())}});
    }
    queue(protocol::encode(protocol::Ack{}, ++seq, env.revision));
    return true;
  };

  auto reader = [&]() -> net::awaitable<void> {
    while (true) {
      std::string message;  // (a tunnel frame's payload is written on from here, not copied)
      auto buf = net::dynamic_buffer(message);
      auto [ec, n] = co_await ws.async_read(buf, net::as_tuple(net::use_awaitable));
      if (ec) {
        if (reason.empty()) {
          reason = ec == websocket::error::closed
                       ? "the hub closed the link" + (ws.reason().reason.empty() ? std::string() : ": " + std::string(ws.reason().reason.c_str()))
                       : "link lost: " + ec.message();
        }
        done = true;
        co_return;
      }
      if (ws.got_binary()) {
        tunnels.onMessage(std::move(message));  // a tunnel stream's frame
        continue;
      }
      auto env = protocol::decode(message);
      bool ok = env.has_value();
      if (ok && (env->type == protocol::Snapshot::kType || env->type == protocol::Delta::kType)) {
        ok = onDesired(env.value());
      } else if (ok && env->type == protocol::StatusAck::kType) {
        auto ack = protocol::bodyOf<protocol::StatusAck>(env.value());
        ok = ack.has_value();
        if (ok) {
          in_flight.erase(ack->seq);
          (void)state_.outbox().ack(ack->seq);
        }
      } else if (ok && env->type == protocol::CaBundle::kType) {
        auto bundle = protocol::bodyOf<protocol::CaBundle>(env.value());
        ok = bundle.has_value();
        if (ok) {
          installCaBundle(bundle->ca_bundle_pem);
          if (bundle->renew_certificate) {
            renew_now = true;  // the certificate is from a CA being retired: renew at once
            tick.cancel();
          }
        }
      } else if (ok && env->type == protocol::Certificate::kType) {
        auto cert = protocol::bodyOf<protocol::Certificate>(env.value());
        ok = cert.has_value();
        if (ok) {
          installCertificate(cert->certificate_pem, cert->ca_bundle_pem);
        }
      } else if (ok && env->type == protocol::ErrorBody::kType) {
        auto error = protocol::bodyOf<protocol::ErrorBody>(env.value());
        ok = error.has_value();
        if (ok) {
          reason = "the hub closed the link: " + error->code + ": " + error->message;
          refused = error->code == protocol::code::kUnauthorized;
        }
      } else if (ok) {
        log::debug("message from the hub not handled by this agent", {{"type", env->type}});
      }
      if (!ok) {
        reason = "protocol error from the hub: " + (env ? "malformed " + env->type : env.error().message);
        log::warn("protocol error from the hub", {{"error", reason}});
        boost::system::error_code ignored;
        beast::get_lowest_layer(ws).socket().close(ignored);
        done = true;
        co_return;
      }
    }
  };
  // Lease renewals, and a certificate request when one is due (right away when the certificate
  // expired while the agent was away); unacknowledged reports are sent again.
  bool cert_expired = welcome_body->certificate_expired;
  auto ticker = [&]() -> net::awaitable<void> {
    auto last_csr = std::chrono::steady_clock::time_point{};
    while (true) {
      if (renew_now) {
        renew_now = false;
        cert_expired = true;
        last_csr = {};
      }
      if ((cert_expired || renewalDue()) &&
          (last_csr == std::chrono::steady_clock::time_point{} ||
           std::chrono::steady_clock::now() - last_csr > std::chrono::seconds(60))) {
        auto key = tls::createPrivateKey();
        auto csr = key ? tls::createCsr(key.value(), identity_.name) : Result<std::string>(key.error());
        if (csr) {
          pending_key_ = key.value();
          last_csr = std::chrono::steady_clock::now();
          cert_expired = false;
          log::info("requesting a new certificate", {{"agent", identity_.name}});
          queue(protocol::encode(protocol::Csr{csr.value()}, ++seq));
        }
      }
      tick.expires_after(renew);
      auto [tec] = co_await tick.async_wait(net::as_tuple(net::use_awaitable));
      if (tec && renew_now && !done) {
        continue;  // woken to renew now
      }
      if (tec) {
        co_return;
      }
      queue(protocol::encode(protocol::Lease{}, ++seq));
      queueReports();
    }
  };
  auto writer = [&]() -> net::awaitable<void> {
    while (true) {
      if (outq.empty() && frames.empty()) {
        wake.expires_at(net::steady_timer::time_point::max());
        co_await wake.async_wait(net::as_tuple(net::use_awaitable));
        if (done) {
          co_return;
        }
        continue;
      }
      bool binary = outq.empty();
      std::deque<std::string>& from = binary ? frames : outq;
      std::string m = std::move(from.front());
      from.pop_front();
      ws.binary(binary);
      auto [ec, n] = co_await ws.async_write(net::buffer(m), net::as_tuple(net::use_awaitable));
      if (ec) {
        reason = "cannot write to the hub: " + ec.message();
        boost::system::error_code ignored;
        beast::get_lowest_layer(ws).socket().close(ignored);
        co_return;
      }
    }
  };
  co_await (reader() || ticker() || writer());
  co_return ended(reason.empty() ? "link closed" : reason);
}

}  // namespace kflex::agent
