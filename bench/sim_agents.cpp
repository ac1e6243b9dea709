// SPDX-License-Identifier: Apache-2.0
#include "bench/sim_agents.hpp"

#include <openssl/pem.h>

#include <iostream>
#include <thread>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/beast/websocket.hpp>

#include "shared/config/kubeconfig.hpp"
#include "shared/protocol/link.hpp"
#include "shared/protocol/tunnel.hpp"
#include "shared/tls/lean_stream.hpp"
#include "shared/tls/context.hpp"
#include "shared/tls/pki.hpp"

namespace kflex::bench {
namespace {

namespace websocket = beast::websocket;
using namespace net::experimental::awaitable_operators;
using WsStream = websocket::stream<tls::LeanStream>;  // (as the agent's link)
constexpr const char* kApi = "/apis/tenancy.kflex.kubestellar.org/v1alpha1/";

// Serializes writes on one link: everything goes through a queue drained by one coroutine.
struct Writer {
  std::shared_ptr<WsStream> ws;
  std::deque<std::pair<std::string, bool>> queue;  // (message, binary)
  bool writing = false;
};

net::awaitable<void> drain(std::shared_ptr<Writer> w) {
  while (!w->queue.empty()) {
    auto [m, binary] = std::move(w->queue.front());
    w->queue.pop_front();
    w->ws->binary(binary);
    auto [ec, n] = co_await w->ws->async_write(net::buffer(m), net::as_tuple(net::use_awaitable));
    if (ec) {
      break;
    }
  }
  w->writing = false;
}

void send(const std::shared_ptr<Writer>& w, std::string m, bool binary) {
  w->queue.emplace_back(std::move(m), binary);
  if (!w->writing) {
    w->writing = true;
    net::co_spawn(w->ws->get_executor(), drain(w), net::detached);
  }
}

// One link's life after the welcome: store (here: remember) and acknowledge desired state, renew
// the lease; returns when the link ends.
net::awaitable<void> linkLoop(SimAgent& a, Fleet& fleet, std::shared_ptr<Writer> w, std::chrono::seconds renew) {
  bool first = true;
  uint64_t seq = 1;
  std::unique_ptr<FrameSink> sink =
      fleet.sinks ? fleet.sinks(a, [w](std::string f) { send(w, std::move(f), true); }) : nullptr;
  auto reader = [&]() -> net::awaitable<void> {
    while (true) {
      std::string message;  // (as the agent reads its link)
      auto buf = net::dynamic_buffer(message);
      auto [ec, n] = co_await w->ws->async_read(buf, net::as_tuple(net::use_awaitable));
      if (ec) {
        co_return;
      }
      if (w->ws->got_binary()) {
        if (sink) {
          sink->onFrame(std::move(message));
        }
        continue;
      }
      auto env = protocol::decode(message);
      if (!env) {
        co_return;
      }
      if (env->type != protocol::msg::kSnapshot && env->type != protocol::msg::kDelta) {
        continue;
      }
      if (env->type == protocol::msg::kSnapshot) {
        ++fleet.snapshots;
      }
      const char* list = env->type == protocol::msg::kSnapshot ? "controlPlanes" : "upserts";
      int64_t now = nowNs();
      for (const auto& o : env->body.value(list, Json::array())) {
        std::string cp = o["metadata"].value("name", "");
        if (cp.rfind("fan-", 0) == 0 && a.seen.insert(cp).second) {
          size_t i = std::stoul(cp.substr(4));
          int64_t sent = i < fleet.sent_ns.size() ? fleet.sent_ns[i].load() : 0;
          if (sent > 0) {
            std::lock_guard lock(fleet.mu);
            fleet.fanout_ms.push_back(double(now - sent) / 1e6);
          }
        }
      }
      a.acked = env->revision;
      send(w, protocol::encode(protocol::msg::kAck, std::to_string(++seq), env->revision, Json::object()), false);
      if (first) {
        first = false;
        ++fleet.synced;
      }
    }
  };
  auto ticker = [&]() -> net::awaitable<void> {
    net::steady_timer t(co_await net::this_coro::executor);
    while (true) {
      t.expires_after(renew);
      auto [ec] = co_await t.async_wait(net::as_tuple(net::use_awaitable));
      if (ec) {
        co_return;
      }
      send(w, protocol::encode(protocol::msg::kLease, std::to_string(++seq), 0, Json::object()), false);
    }
  };
  co_await (reader() || ticker());
  if (!first) {
    --fleet.synced;
  }
}

}  // namespace

X509Ptr parseCert(const std::string& pem) {
  std::unique_ptr<BIO, Free<BIO, BIO_free_all>> bio(BIO_new_mem_buf(pem.data(), int(pem.size())));
  return X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

PKeyPtr parseKey(const std::string& pem) {
  std::unique_ptr<BIO, Free<BIO, BIO_free_all>> bio(BIO_new_mem_buf(pem.data(), int(pem.size())));
  return PKeyPtr(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
}

int64_t nowNs() { return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count(); }


net::awaitable<void> runAgent(SimAgent& a, Fleet& fleet, ssl::context& ctx, const std::vector<Replica>& replicas) {
  auto exec = co_await net::this_coro::executor;
  protocol::Backoff backoff(std::chrono::seconds(1), std::chrono::seconds(60), a.index * 7919 + 17);
  net::steady_timer sleep(exec);
  a.at = a.index % replicas.size();
  while (!fleet.stop) {
    net::ip::tcp::endpoint ep = replicas[a.at].ep;
    std::string host = replicas[a.at].host;
    auto w = std::make_shared<Writer>();
    auto handshake = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(exec, ctx);
    SSL* ssl = handshake->native_handle();
    SSL_use_certificate(ssl, a.cert.get());
    SSL_use_PrivateKey(ssl, a.key.get());
    auto& tcp = beast::get_lowest_layer(*handshake);
    tcp.expires_after(std::chrono::seconds(15));
    bool welcomed = false;
    auto [cec] = co_await tcp.async_connect(ep, net::as_tuple(net::use_awaitable));
    boost::system::error_code hec = cec;
    if (!cec) {
      auto [e] = co_await handshake->async_handshake(ssl::stream_base::client, net::as_tuple(net::use_awaitable));
      hec = e;
    }
    if (!hec) {
      tcp.expires_never();
      if (auto lean = tls::LeanStream::adopt(std::move(handshake))) {
        w->ws = std::make_shared<WsStream>(std::move(lean.value()));
      }
    }
    if (w->ws) {
      websocket::stream_base::timeout t{};
      t.handshake_timeout = std::chrono::seconds(15);
      t.idle_timeout = std::chrono::seconds(60);
      t.keep_alive_pings = true;
      w->ws->set_option(t);
      w->ws->write_buffer_bytes(protocol::tunnel::kLinkWriteBuffer);  // (as the agent's link)
      auto [wec] = co_await w->ws->async_handshake(host, protocol::kConnectPath, net::as_tuple(net::use_awaitable));
      if (!wec) {
        Json hello = {{"name", a.name}, {"acknowledgedRevision", a.acked}, {"os", "linux"}, {"arch", "amd64"},
                      {"agentVersion", "bench"}, {"capacity", {{"cpu", "64"}, {"memory", "256Gi"}}}};
        if (fleet.sinks) {
          hello["tunnel"] = protocol::tunnel::kVersion;
        }
        w->ws->text(true);
        std::string m = protocol::encode(protocol::msg::kHello, "1", 0, hello);
        auto [sec, sn] = co_await w->ws->async_write(net::buffer(m), net::as_tuple(net::use_awaitable));
        beast::flat_buffer buf;
        boost::system::error_code rec = sec;
        if (!sec) {
          auto [e, rn] = co_await w->ws->async_read(buf, net::as_tuple(net::use_awaitable));
          rec = e;
        }
        auto env = protocol::decode(rec ? std::string("{}") : beast::buffers_to_string(buf.data()));
        if (env && env->type == protocol::msg::kWelcome) {
          welcomed = true;
          auto renew = std::chrono::seconds(env->body.value("leaseRenewSeconds", int64_t(10)));
          ++fleet.welcomed;
          ++fleet.handshakes;
          backoff.reset();
          co_await linkLoop(a, fleet, w, renew);
          --fleet.welcomed;
        }
      }
    }
    boost::system::error_code ignored;
    if (w->ws) {
      beast::get_lowest_layer(*w->ws).socket().close(ignored);
    } else if (handshake) {
      beast::get_lowest_layer(*handshake).socket().close(ignored);
    }
    if (!welcomed) {
      ++fleet.failures;
    }
    if (fleet.stop) {
      break;
    }
    a.at = (a.at + 1) % replicas.size();
    sleep.expires_after(backoff.next());
    co_await sleep.async_wait(net::as_tuple(net::use_awaitable));
  }
}


HubContexts hubContexts(const fs::path& hub_dir) {
  auto kc = config::Kubeconfig::load(hub_dir / "admin.kubeconfig").value();
  auto access = kc.access().value();
  return {tls::makeClientContext({access.ca_pem, access.client_cert_pem, access.client_key_pem}).value(),
          tls::makeClientContext({access.ca_pem, "", ""}).value()};
}

bool enrollAgents(net::io_context& ioc, ssl::context& admin, ssl::context& anon, net::ip::tcp::endpoint ep,
                  std::vector<SimAgent>& agents, const std::string& prefix, Stats& stats) {
  // A reusable bootstrap token.
  std::string token_id = tls::randomAlnum(6);
  std::string secret = tls::randomAlnum(16);
  Json tok = {{"apiVersion", "tenancy.kflex.kubestellar.org/v1alpha1"}, {"kind", "BootstrapToken"},
              {"metadata", {{"name", token_id}}}, {"spec", {{"secret", secret}, {"usages", {"enroll"}}}}};
  Stats made = runPhase(ioc, admin, ep, 1, 1,
                        [&](Conn& c, size_t) { return c.request(http::verb::post, std::string(kApi) + "bootstraptokens", tok.dump()); },
                        201);
  if (made.errors) {
    std::cerr << "cannot create a bootstrap token\n";
    return false;
  }
  std::string bearer = "Bearer " + token_id + "." + secret;
  std::cerr << "enrolling " << agents.size() << " agents (key, CSR, POST " << protocol::kEnrollPath << ")...\n";
  stats = runPhase(ioc, anon, ep, 16, agents.size(), [&](Conn& c, size_t i) -> net::awaitable<unsigned> {
    SimAgent& a = agents[i];
    a.index = i;
    a.name = prefix + "-" + std::to_string(i);
    std::string key = tls::createPrivateKey().value();
    protocol::EnrollRequest req{a.name, tls::createCsr(key, a.name).value(), {{"bench", "yes"}}};
    unsigned st = co_await c.request(http::verb::post, protocol::kEnrollPath, protocol::toJson(req).dump(),
                                     "application/json", bearer);
    if (st == 200 || st == 201) {
      auto res = protocol::enrollResponseFromJson(Json::parse(c.body(), nullptr, false));
      if (res) {
        a.cert = parseCert(res->certificate_pem);
        a.key = parseKey(key);
      }
    }
    co_return a.cert ? 200u : st;
  }, 200);
  return stats.errors == 0;
}

size_t createPlaced(net::io_context& ioc, ssl::context& admin, net::ip::tcp::endpoint ep, Fleet& fleet,
                    const std::string& prefix, size_t n, size_t agents, size_t stride, double rate, bool timed,
                    size_t offset) {
  size_t errors = 0;
  net::co_spawn(ioc, [&]() -> net::awaitable<void> {
    Conn c(ioc, admin);
    if (!co_await c.connect(ep)) {
      errors = n;
      co_return;
    }
    net::steady_timer pace(ioc);
    auto start = Clock::now();
    for (size_t i = 0; i < n; ++i) {
      pace.expires_at(start + std::chrono::microseconds(int64_t(1e6 * double(i) / rate)));
      co_await pace.async_wait(net::as_tuple(net::use_awaitable));
      std::string target = "sim-" + std::to_string((i * stride) % agents);
      Json cp = {{"apiVersion", "tenancy.kflex.kubestellar.org/v1alpha1"}, {"kind", "ControlPlane"},
                 {"metadata", {{"name", prefix + std::to_string(offset + i)}, {"annotations", {{"kflex.kubestellar.org/agent", target}}}}},
                 {"spec", {{"type", "k3s"}}}};
      if (timed) {
        fleet.sent_ns[offset + i] = nowNs();
      }
      if (co_await c.request(http::verb::post, std::string(kApi) + "controlplanes", cp.dump()) != 201) {
        ++errors;
      }
    }
    c.close();
  }, net::detached);
  ioc.restart();
  ioc.run();
  return errors;
}

bool waitFor(const std::function<bool()>& pred, std::chrono::seconds deadline, const std::function<std::string()>& progress) {
  auto end = Clock::now() + deadline;
  auto next_print = Clock::now() + std::chrono::seconds(5);
  while (!pred()) {
    if (Clock::now() > end) {
      return false;
    }
    if (Clock::now() > next_print) {
      std::cerr << "  ... " << progress() << "\n";
      next_print += std::chrono::seconds(5);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}


}  // namespace kflex::bench
