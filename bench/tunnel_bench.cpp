// SPDX-License-Identifier: Apache-2.0
// Tunnel benchmark (docs/dev/tunnel.md): a real kflex-hub, simulated agents that carry tunnel
// streams with the agent's own code (agent::Tunnels), and a TLS server standing for the control
// planes' API servers. Each figure through the hub is set against the same exchange made directly
// with that server in the same run: one large stream's throughput, a small request's round trip,
// and the hub's memory per idle stream with 1,000 of them open over 100 agents, with the
// desired-state fan-out measured with and without them.
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>

#include "agent/link/tunnels.hpp"
#include "bench/bench_common.hpp"
#include "bench/sim_agents.hpp"
#include "shared/common/util.hpp"
#include "shared/config/kubeconfig.hpp"
#include "shared/protocol/tunnel.hpp"
#include "shared/tls/context.hpp"
#include "shared/tls/pki.hpp"

namespace kflex::bench {
namespace {

constexpr const char* kApi = "/apis/tenancy.kflex.kubestellar.org/v1alpha1/";
using Direct = beast::ssl_stream<beast::tcp_stream>;

// The connection to the hub after its 200, as the next layer of the TLS session inside it.
struct Outer {
  using executor_type = Direct::executor_type;
  using lowest_layer_type = net::ip::tcp::socket;
  std::unique_ptr<Direct> s;
  executor_type get_executor() { return s->get_executor(); }
  lowest_layer_type& lowest_layer() { return beast::get_lowest_layer(*s).socket(); }
  template <class Buffers, class Token>
  auto async_read_some(const Buffers& b, Token&& t) {
    return s->async_read_some(b, std::forward<Token>(t));
  }
  template <class Buffers, class Token>
  auto async_write_some(const Buffers& b, Token&& t) {
    return s->async_write_some(b, std::forward<Token>(t));
  }
};
using Inner = ssl::stream<Outer>;

// The stand-in for a control plane's API server: over TLS, each request is a big-endian u64 N and
// is answered with N bytes.
class Target {
 public:
  explicit Target(std::shared_ptr<ssl::context> ctx) : ctx_(std::move(ctx)), acceptor_(ioc_) {
    net::ip::tcp::endpoint ep(net::ip::make_address("127.0.0.1"), 0);
    acceptor_.open(ep.protocol());
    acceptor_.set_option(net::socket_base::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen();
    net::co_spawn(ioc_, accept(), net::detached);
    thread_ = std::thread([this] { ioc_.run(); });
  }
  ~Target() {
    ioc_.stop();
    thread_.join();
  }
  net::ip::tcp::endpoint endpoint() const { return acceptor_.local_endpoint(); }
  std::thread& thread() { return thread_; }

 private:
  net::awaitable<void> accept() {
    while (true) {
      auto [ec, socket] = co_await acceptor_.async_accept(net::as_tuple(net::use_awaitable));
      if (ec) {
        co_return;
      }
      socket.set_option(net::ip::tcp::no_delay(true));
      net::co_spawn(ioc_, serve(std::make_shared<Direct>(std::move(socket), *ctx_)), net::detached);
    }
  }
  static net::awaitable<void> serve(std::shared_ptr<Direct> s) {
    auto [hec] = co_await s->async_handshake(ssl::stream_base::server, net::as_tuple(net::use_awaitable));
    if (hec) {
      co_return;
    }
    std::string chunk(64 * 1024, 'x');
    while (true) {
      unsigned char head[8];
      auto [rec, rn] = co_await net::async_read(*s, net::buffer(head), net::as_tuple(net::use_awaitable));
      if (rec) {
        co_return;
      }
      uint64_t n = 0;
      for (unsigned char b : head) {
        n = (n << 8) | b;
      }
      while (n > 0) {
        size_t k = size_t(std::min<uint64_t>(n, chunk.size()));
        auto [wec, wn] = co_await net::async_write(*s, net::buffer(chunk.data(), k), net::as_tuple(net::use_awaitable));
        if (wec) {
          co_return;
        }
        n -= k;
      }
    }
  }

  std::shared_ptr<ssl::context> ctx_;
  net::io_context ioc_;
  net::ip::tcp::acceptor acceptor_;
  std::thread thread_;
};

std::string request(uint64_t n) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i) {
    out[size_t(i)] = char(n & 0xff);
    n >>= 8;
  }
  return out;
}

// Sends one request for `n` bytes and reads them all.
template <class Stream>
net::awaitable<bool> exchange(Stream& s, uint64_t n) {
  std::string req = request(n);
  auto [wec, wn] = co_await net::async_write(s, net::buffer(req), net::as_tuple(net::use_awaitable));
  if (wec) {
    co_return false;
  }
  std::vector<char> buf(64 * 1024);
  while (n > 0) {
    auto [rec, rn] = co_await s.async_read_some(net::buffer(buf.data(), size_t(std::min<uint64_t>(n, buf.size()))),
                                                net::as_tuple(net::use_awaitable));
    if (rec) {
      co_return false;
    }
    n -= rn;
  }
  co_return true;
}

// A connection straight to the target.
net::awaitable<std::unique_ptr<Direct>> dialDirect(ssl::context& ctx, net::ip::tcp::endpoint ep) {
  auto s = std::make_unique<Direct>(co_await net::this_coro::executor, ctx);
  auto [cec] = co_await beast::get_lowest_layer(*s).async_connect(ep, net::as_tuple(net::use_awaitable));
  if (cec) {
    co_return nullptr;
  }
  beast::get_lowest_layer(*s).socket().set_option(net::ip::tcp::no_delay(true));
  auto [hec] = co_await s->async_handshake(ssl::stream_base::client, net::as_tuple(net::use_awaitable));
  co_return hec ? nullptr : std::move(s);
}

// A connection to control plane `name` through the hub: TLS to the hub, CONNECT with the tunnel
// token, then TLS with the target inside.
net::awaitable<std::unique_ptr<Inner>> dialTunnel(ssl::context& hub_ctx, ssl::context& target_ctx,
                                                  net::ip::tcp::endpoint hub, std::string name, std::string auth) {
  auto outer_ptr = std::make_unique<Direct>(co_await net::this_coro::executor, hub_ctx);
  Direct& outer = *outer_ptr;
  auto [cec] = co_await beast::get_lowest_layer(outer).async_connect(hub, net::as_tuple(net::use_awaitable));
  if (cec) {
    co_return nullptr;
  }
  beast::get_lowest_layer(outer).socket().set_option(net::ip::tcp::no_delay(true));
  auto [hec] = co_await outer.async_handshake(ssl::stream_base::client, net::as_tuple(net::use_awaitable));
  if (hec) {
    co_return nullptr;
  }
  std::string authority = protocol::tunnel::tunnelHost(name) + ":6443";
  std::string connect = "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\nProxy-Authorization: " + auth +
                        "\r\n\r\n";
  auto [wec, wn] = co_await net::async_write(outer, net::buffer(connect), net::as_tuple(net::use_awaitable));
  if (wec) {
    co_return nullptr;
  }
  // The answer's head, byte by byte: nothing after it may be read here (the inner TLS follows).
  std::string head;
  char c = 0;
  while (head.size() < 4096 && (head.size() < 4 || head.compare(head.size() - 4, 4, "\r\n\r\n") != 0)) {
    auto [rec, rn] = co_await net::async_read(outer, net::buffer(&c, 1), net::as_tuple(net::use_awaitable));
    if (rec) {
      co_return nullptr;
    }
    head.push_back(c);
  }
  if (head.rfind("HTTP/1.1 200", 0) != 0) {
    std::cerr << "CONNECT " << name << ": " << head.substr(0, head.find('\r')) << "\n";
    co_return nullptr;
  }
  auto inner = std::make_unique<Inner>(Outer{std::move(outer_ptr)}, target_ctx);
  SSL_set_tlsext_host_name(inner->native_handle(), protocol::tunnel::tunnelHost(name).c_str());
  auto [iec] = co_await inner->async_handshake(ssl::stream_base::client, net::as_tuple(net::use_awaitable));
  co_return iec ? nullptr : std::move(inner);
}

// Runs a coroutine to its end on `ioc`.
template <class T>
T runOn(net::io_context& ioc, net::awaitable<T> a) {
  auto f = net::co_spawn(ioc, std::move(a), net::use_future);
  ioc.restart();
  ioc.run();
  return f.get();
}

// The CPU time a thread has used (s).
double threadCpuSeconds(pthread_t thread) {
  clockid_t clock = 0;
  timespec ts{};
  if (pthread_getcpuclockid(thread, &clock) != 0 || clock_gettime(clock, &ts) != 0) {
    return 0;
  }
  return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

// The CPU each party of a stream used, read before and after it: the client (this thread), the
// target, the agents (one thread for all) and the hub (its process).
struct PartyCpu {
  double client = 0, target = 0, agents = 0, hub = 0;
  static PartyCpu now(pthread_t target, pthread_t agents, pid_t hub) {
    return {threadCpuSeconds(pthread_self()), threadCpuSeconds(target), threadCpuSeconds(agents), cpuSeconds(hub)};
  }
  PartyCpu since(const PartyCpu& before) const {
    return {client - before.client, target - before.target, agents - before.agents, hub - before.hub};
  }
  double busiest() const { return std::max({client, target, agents, hub}); }
};

// One large stream: MB/s.
template <class Stream>
net::awaitable<double> throughput(Stream& s, uint64_t bytes) {
  auto start = Clock::now();
  bool ok = co_await exchange(s, bytes);
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  co_return ok ? double(bytes) / 1e6 / secs : 0.0;
}

// Round trips of a small request on an open connection.
template <class Stream>
net::awaitable<Stats> roundTrips(Stream& s, size_t n) {
  Stats st;
  auto start = Clock::now();
  for (size_t i = 0; i < n; ++i) {
    auto t = Clock::now();
    if (!co_await exchange(s, 200)) {
      ++st.errors;
      break;
    }
    st.ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t).count());
  }
  st.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  co_return st;
}

// agent::Tunnels as a simulated agent's FrameSink: control plane tun-I resolves to the target
// when this is agent I, and to nothing else.
class AgentTunnels : public FrameSink {
 public:
  AgentTunnels(net::any_io_executor ex, size_t index, net::ip::tcp::endpoint target, std::function<void(std::string)> send)
      : tunnels_(std::move(ex),
                 [index, target](const std::string& name) -> Result<agent::Tunnels::Target> {
                   if (name != "tun-" + std::to_string(index)) {
                     return fail(Errc::NotFound, "control plane " + name + " is not on this agent");
                   }
                   return target;
                 },
                 std::move(send)) {}
  void onFrame(std::string frame) override { tunnels_.onMessage(std::move(frame)); }

 private:
  agent::Tunnels tunnels_;
};

// The fan-out delays recorded since the last call, once `n` arrived (or 60 s passed).
Stats takeFanout(Fleet& fleet, size_t n, size_t errors) {
  waitFor([&] { std::lock_guard lock(fleet.mu); return fleet.fanout_ms.size() + errors >= n; }, std::chrono::seconds(60),
          [&] { std::lock_guard lock(fleet.mu); return std::to_string(fleet.fanout_ms.size()) + " delivered"; });
  Stats s;
  std::lock_guard lock(fleet.mu);
  s.ms.swap(fleet.fanout_ms);
  return s;
}

}  // namespace
}  // namespace kflex::bench

int main(int argc, char** argv) {
  using namespace kflex;
  using namespace kflex::bench;
  CLI::App app{"kflex-bench-tunnel: streams to control planes through a real kflex-hub and simulated agents, "
               "against direct connections in the same run"};
  size_t agents = 100;
  size_t idle_streams = 1000;
  size_t fanout = 200;
  double rate = 50;
  uint64_t megabytes = 256;
  size_t round_trips = 2000;
  std::string hub_bin = (fs::path(argv[0]).parent_path() / "kflex-hub").string();
  std::string work;
  std::string json_out;
  app.add_option("--agents", agents, "Simulated agents, each with one control plane")->capture_default_str();
  app.add_option("--idle-streams", idle_streams, "Idle streams held open, spread over the agents")->capture_default_str();
  app.add_option("--fanout", fanout, "ControlPlanes created for each fan-out measurement")->capture_default_str();
  app.add_option("--megabytes", megabytes, "Size of the large stream (MB)")->capture_default_str();
  app.add_option("--round-trips", round_trips, "Small requests on one connection")->capture_default_str();
  app.add_option("--hub", hub_bin, "kflex-hub binary")->capture_default_str();
  size_t hub_threads = 0;
  app.add_option("--hub-threads", hub_threads, "The hub's network threads (0: its default, one per core)");
  app.add_option("--work-dir", work, "Directory for the hub's data (default: a new temp dir)");
  app.add_option("--json", json_out, "Also write the figures as JSON to this file");
  CLI11_PARSE(app, argc, argv);
  if (agents == 0) {
    std::cerr << "--agents must be at least 1\n";
    return 2;
  }

  raiseFdLimit();
  fs::path dir = workDir(work, "kflex-bench-tunnel");
  HubProcess hub;
  std::cerr << "starting " << hub_bin << "...\n";
  std::vector<std::string> hub_args;
  if (hub_threads > 0) {
    std::ofstream(dir / "hub.yaml") << "threads: " << hub_threads << "\n";
    hub_args = {"--config", (dir / "hub.yaml").string()};
  }
  if (!hub.start(hub_bin, dir / "hub", "127.0.0.1:0", dir / "hub.log", hub_args)) {
    std::cerr << "the hub did not start; see " << (dir / "hub.log") << "\n";
    return 1;
  }
  auto [admin, anon] = hubContexts(dir / "hub");
  auto ep = hub.endpoint();
  net::io_context ioc;

  // The target, with a CA of its own (the control plane's, which the hub never sees).
  SystemClock clock;
  auto target_ca = tls::createCa({"bench-target-ca", {}, {}, {}, true}, clock).value();
  tls::CertRequest serving{"bench-target", {}, {"localhost"}, {"127.0.0.1"}};
  serving.server_auth = true;
  auto target_cert = tls::issueCertificate(target_ca, serving, clock).value();
  Target target(tls::makeServerContext({target_ca.cert_pem, target_cert.cert_pem, target_cert.key_pem}).value());
  auto target_ctx = tls::makeClientContext({target_ca.cert_pem, "", ""}).value();

  std::vector<SimAgent> fleet_agents(agents);
  Stats enroll;
  if (!enrollAgents(ioc, *admin, *anon, ep, fleet_agents, "sim", enroll)) {
    hub.stop();
    return 1;
  }
  Fleet fleet(2 * fanout);  // (two rounds of fan-out, without and with idle streams)
  net::io_context agent_ioc;
  auto work_guard = net::make_work_guard(agent_ioc);
  fleet.sinks = [&](SimAgent& a, std::function<void(std::string)> send) -> std::unique_ptr<FrameSink> {
    return std::make_unique<AgentTunnels>(agent_ioc.get_executor(), a.index, target.endpoint(), std::move(send));
  };
  std::vector<Replica> addresses = {{hub.endpoint(), hub.hostPort()}};
  for (auto& a : fleet_agents) {
    net::co_spawn(agent_ioc, runAgent(a, fleet, *anon, addresses), net::detached);
  }
  std::thread fleet_thread([&] { agent_ioc.run(); });
  auto stop_all = [&] {
    fleet.stop = true;
    hub.stop();
    work_guard.reset();
    agent_ioc.stop();
    fleet_thread.join();
  };
  auto progress = [&] { return std::to_string(fleet.synced.load()) + " synced"; };
  if (!waitFor([&] { return fleet.synced.load() == agents; }, std::chrono::seconds(300), progress)) {
    std::cerr << "the agents did not all link\n";
    stop_all();
    return 1;
  }
  // One control plane per agent, and a tunnel token for all of them.
  size_t placed_errors = createPlaced(ioc, *admin, ep, fleet, "tun-", agents, agents, 1, 200, false);
  Json cps = Json::array();
  for (size_t i = 0; i < agents; ++i) {
    cps.push_back("tun-" + std::to_string(i));
  }
  std::string token_id = tls::randomAlnum(6);
  std::string secret = tls::randomAlnum(16);
  Json tok = {{"apiVersion", "tenancy.kflex.kubestellar.org/v1alpha1"}, {"kind", "BootstrapToken"},
              {"metadata", {{"name", token_id}}},
              {"spec", {{"secret", secret}, {"usages", {"tunnel"}}, {"controlPlanes", cps}}}};
  Stats made = runPhase(ioc, *admin, ep, 1, 1,
                        [&](Conn& c, size_t) { return c.request(http::verb::post, std::string(kApi) + "bootstraptokens", tok.dump()); },
                        201);
  if (placed_errors > 0 || made.errors > 0) {
    std::cerr << "cannot create the control planes or the tunnel token\n";
    stop_all();
    return 1;
  }
  std::string auth = "Basic " + base64Encode("tunnel:" + token_id + "." + secret);
  std::this_thread::sleep_for(std::chrono::seconds(1));  // (placement)

  // 1. One large stream, direct and through the hub, twice each, alternating.
  const uint64_t bytes = megabytes * 1000 * 1000;
  double direct_mbs = 0;
  double tunnel_mbs = 0;
  double hub_cores = 0;     // during the fastest stream through the hub
  double others_cores = 0;
  // Each party on a core of its own (as on separate machines), a stream goes as fast as the
  // busiest party's CPU lets it: the bytes over that party's CPU seconds, best of the rounds.
  double direct_bound = 0;
  double tunnel_bound = 0;
  PartyCpu direct_cpu;
  PartyCpu tunnel_cpu;
  pthread_t target_thread = target.thread().native_handle();
  pthread_t agents_thread = fleet_thread.native_handle();
  for (int round = 0; round < 2; ++round) {
    auto d = runOn(ioc, dialDirect(*target_ctx, target.endpoint()));
    auto t = runOn(ioc, dialTunnel(*anon, *target_ctx, ep, "tun-0", auth));
    if (!d || !t) {
      std::cerr << "cannot open the streams (see " << (dir / "hub.log") << ")\n";
      stop_all();
      return 1;
    }
    auto d0 = PartyCpu::now(target_thread, agents_thread, hub.pid());
    direct_mbs = std::max(direct_mbs, runOn(ioc, throughput(*d, bytes)));
    auto dcpu = PartyCpu::now(target_thread, agents_thread, hub.pid()).since(d0);
    if (double b = double(bytes) / 1e6 / dcpu.busiest(); b > direct_bound) {
      direct_bound = b;
      direct_cpu = dcpu;
    }
    double all_cpu0 = cpuSeconds(getpid());
    auto t_cpu0 = PartyCpu::now(target_thread, agents_thread, hub.pid());
    auto t0 = bench::Clock::now();
    double mbs = runOn(ioc, throughput(*t, bytes));
    double wall = std::chrono::duration<double>(bench::Clock::now() - t0).count();
    auto tcpu = PartyCpu::now(target_thread, agents_thread, hub.pid()).since(t_cpu0);
    if (double b = double(bytes) / 1e6 / tcpu.busiest(); b > tunnel_bound) {
      tunnel_bound = b;
      tunnel_cpu = tcpu;
    }
    if (mbs > tunnel_mbs) {
      tunnel_mbs = mbs;
      hub_cores = tcpu.hub / wall;
      others_cores = (cpuSeconds(getpid()) - all_cpu0) / wall;
    }
  }
  std::printf("large stream (%llu MB): direct %.0f MB/s, through the hub %.0f MB/s: %.0f%% of direct; meanwhile the hub "
              "used %.2f cores, the bench (client, agents, target) %.2f\n",
              (unsigned long long)megabytes, direct_mbs, tunnel_mbs, 100 * tunnel_mbs / direct_mbs, hub_cores,
              others_cores);
  auto ms_per_mb = [&](double secs) { return 1000 * secs / (double(bytes) / 1e6); };
  std::printf("  CPU per MB (ms): direct: client %.2f, target %.2f; through the hub: client %.2f, hub %.2f, agent %.2f, "
              "target %.2f\n",
              ms_per_mb(direct_cpu.client), ms_per_mb(direct_cpu.target), ms_per_mb(tunnel_cpu.client),
              ms_per_mb(tunnel_cpu.hub), ms_per_mb(tunnel_cpu.agents), ms_per_mb(tunnel_cpu.target));
  std::printf("  with a core for each party, the busiest one's CPU bounds a stream at: direct %.0f MB/s, through the hub "
              "%.0f MB/s: %.0f%% of direct\n",
              direct_bound, tunnel_bound, 100 * tunnel_bound / direct_bound);

  // 2. Small requests on an open connection, and opening one.
  auto d = runOn(ioc, dialDirect(*target_ctx, target.endpoint()));
  auto t = runOn(ioc, dialTunnel(*anon, *target_ctx, ep, "tun-1", auth));
  Stats direct_rt = runOn(ioc, roundTrips(*d, round_trips));
  Stats tunnel_rt = runOn(ioc, roundTrips(*t, round_trips));
  std::printf("small request round trip: direct p50 %.3f ms p99 %.3f ms; through the hub p50 %.3f ms p99 %.3f ms "
              "(+%.3f ms p50)\n",
              direct_rt.pct(0.5), direct_rt.pct(0.99), tunnel_rt.pct(0.5), tunnel_rt.pct(0.99),
              tunnel_rt.pct(0.5) - direct_rt.pct(0.5));
  Stats direct_open;
  Stats tunnel_open;
  for (size_t i = 0; i < 100; ++i) {
    auto t0 = bench::Clock::now();
    auto dd = runOn(ioc, dialDirect(*target_ctx, target.endpoint()));
    auto t1 = bench::Clock::now();
    auto tt = runOn(ioc, dialTunnel(*anon, *target_ctx, ep, "tun-" + std::to_string(i % agents), auth));
    auto t2 = bench::Clock::now();
    direct_open.ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    tunnel_open.ms.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
    direct_open.errors += dd ? 0 : 1;
    tunnel_open.errors += tt ? 0 : 1;
  }
  std::printf("opening a connection (TCP + TLS; through the hub: + TLS to the hub and CONNECT): direct p50 %.2f ms, "
              "through the hub p50 %.2f ms (%zu errors)\n",
              direct_open.pct(0.5), tunnel_open.pct(0.5), direct_open.errors + tunnel_open.errors);
  d.reset();
  t.reset();

  // 3. Fan-out without idle streams, then with them.
  size_t e1 = createPlaced(ioc, *admin, ep, fleet, "fan-", fanout, agents, 7, rate, true);
  Stats fan_before = takeFanout(fleet, fanout, e1);
  // (Past the hub's housekeeping, every 10 s, which gives freed memory back to the system: what
  // the large stream and the fan-out freed is not counted as before.)
  std::this_thread::sleep_for(std::chrono::seconds(11));
  long rss_before = rssKb(hub.pid());
  std::vector<std::unique_ptr<Inner>> idle;
  idle.reserve(idle_streams);
  for (size_t i = 0; i < idle_streams; ++i) {
    auto s = runOn(ioc, dialTunnel(*anon, *target_ctx, ep, "tun-" + std::to_string(i % agents), auth));
    if (s && runOn(ioc, exchange(*s, 200))) {
      idle.push_back(std::move(s));
    }
  }
  std::this_thread::sleep_for(std::chrono::seconds(3));
  long rss_idle = rssKb(hub.pid());
  // Again once the hub's housekeeping (every 10 s) has given back what the openings freed (each
  // connection's handshake buffers): what the streams themselves hold.
  std::this_thread::sleep_for(std::chrono::seconds(11));
  long rss_settled = rssKb(hub.pid());
  double kb_per_stream = idle.empty() ? 0 : double(rss_idle - rss_before) / double(idle.size());
  double kb_settled = idle.empty() ? 0 : double(rss_settled - rss_before) / double(idle.size());
  std::printf("%zu idle streams over %zu agents: hub RSS %.1f MB -> %.1f MB, %.1f KB per stream; %.1f MB, %.1f KB per "
              "stream 11 s later (after the hub's housekeeping)\n",
              idle.size(), agents, double(rss_before) / 1024, double(rss_idle) / 1024, kb_per_stream,
              double(rss_settled) / 1024, kb_settled);
  size_t e2 = createPlaced(ioc, *admin, ep, fleet, "fan-", fanout, agents, 7, rate, true, fanout);
  Stats fan_idle = takeFanout(fleet, fanout, e2);
  std::printf("desired-state fan-out of %zu creates: p50 %.1f ms p99 %.1f ms without streams; p50 %.1f ms p99 %.1f ms "
              "with %zu idle streams open\n",
              fanout, fan_before.pct(0.5), fan_before.pct(0.99), fan_idle.pct(0.5), fan_idle.pct(0.99), idle.size());
  idle.clear();
  stop_all();
  if (!json_out.empty()) {
    Json j = {{"agents", agents},
              {"large_stream_mb", megabytes},
              {"direct_mb_per_s", direct_mbs},
              {"tunnel_mb_per_s", tunnel_mbs},
              {"tunnel_share_of_direct", tunnel_mbs / direct_mbs},
              {"direct_cpu_bound_mb_per_s", direct_bound},
              {"tunnel_cpu_bound_mb_per_s", tunnel_bound},
              {"tunnel_cpu_bound_share_of_direct", tunnel_bound / direct_bound},
              {"hub_cores_during_stream", hub_cores},
              {"bench_cores_during_stream", others_cores},
              {"direct_round_trip_p50_ms", direct_rt.pct(0.5)},
              {"direct_round_trip_p99_ms", direct_rt.pct(0.99)},
              {"tunnel_round_trip_p50_ms", tunnel_rt.pct(0.5)},
              {"tunnel_round_trip_p99_ms", tunnel_rt.pct(0.99)},
              {"direct_open_p50_ms", direct_open.pct(0.5)},
              {"tunnel_open_p50_ms", tunnel_open.pct(0.5)},
              {"idle_streams", idle_streams},
              {"hub_kb_per_idle_stream", kb_per_stream},
              {"hub_kb_per_idle_stream_settled", kb_settled},
              {"fanout_p99_ms_without_streams", fan_before.pct(0.99)},
              {"fanout_p99_ms_with_idle_streams", fan_idle.pct(0.99)}};
    std::ofstream(json_out) << j.dump(2) << "\n";
  }
  return 0;
}
