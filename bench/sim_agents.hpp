// SPDX-License-Identifier: Apache-2.0
// Simulated agents for the benchmarks: each enrolled through the real enrollment API with its own
// key and certificate, holding a real mutual-TLS WebSocket link to a kflex-hub, renewing its
// lease and acknowledging desired state like the real agent, and (with a FrameSink) carrying
// tunnel streams.
#pragma once

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "bench/bench_common.hpp"

namespace kflex::bench {

template <typename T, void (*F)(T*)>
struct Free {
  void operator()(T* p) const { F(p); }
};
using X509Ptr = std::unique_ptr<X509, Free<X509, X509_free>>;
using PKeyPtr = std::unique_ptr<EVP_PKEY, Free<EVP_PKEY, EVP_PKEY_free>>;

/// A certificate or key from PEM (null when it does not parse).
X509Ptr parseCert(const std::string& pem);
PKeyPtr parseKey(const std::string& pem);

struct SimAgent;

/// What an agent does with the binary (tunnel) messages of one link; made per link, destroyed
/// when the link ends.
struct FrameSink {
  virtual ~FrameSink() = default;
  virtual void onFrame(std::string frame) = 0;
};
/// Makes a link's FrameSink; `send_binary` queues a binary message on the link.
using SinkFactory = std::function<std::unique_ptr<FrameSink>(SimAgent& a, std::function<void(std::string)> send_binary)>;

// What the fleet has seen, shared between the agents' thread and the driver.
struct Fleet {
  std::atomic<size_t> welcomed{0};      // agents with a live, welcomed link
  std::atomic<size_t> synced{0};        // agents that acknowledged their first desired state on a link
  std::atomic<size_t> handshakes{0};    // successful link set-ups in all
  std::atomic<size_t> failures{0};      // failed attempts
  std::atomic<size_t> snapshots{0};     // full desired-state snapshots received (a first sync, or a full resync)
  std::atomic<bool> stop{false};
  std::vector<std::atomic<int64_t>> sent_ns;  // fan-out: when create i was sent (steady clock), 0 = not yet
  std::mutex mu;
  std::vector<double> fanout_ms;
  /// With one, the agents say they speak the tunnel and hand it their binary messages.
  SinkFactory sinks;
  explicit Fleet(size_t fanout) : sent_ns(fanout) {}
};

struct SimAgent {
  size_t index = 0;
  std::string name;
  X509Ptr cert;
  PKeyPtr key;
  int64_t acked = 0;  // like agent.db's acknowledged revision, in memory
  std::unordered_set<std::string> seen;
  std::atomic<size_t> at{0};  // the replica it links to (or tries)
};

// One replica's address, as an agent's hub_urls entry.
struct Replica {
  net::ip::tcp::endpoint ep;
  std::string host;  // HOST:PORT
};

/// TLS contexts for a hub started in `hub_dir`, from its admin.kubeconfig: as its admin, and
/// anonymous (its CA only: enrollment, agents that present their own certificate).
struct HubContexts {
  std::shared_ptr<ssl::context> admin;
  std::shared_ptr<ssl::context> anon;
};
HubContexts hubContexts(const fs::path& hub_dir);

/// The steady clock now, in nanoseconds.
int64_t nowNs();

/// An agent: connect, hello, welcome, then store and acknowledge desired state and renew the
/// lease until the link ends; reconnect with the agent's own backoff. Like the real agent with
/// several hub URLs, agent i starts on replica i % N and moves to the next one whenever a link
/// ends or an attempt fails.
net::awaitable<void> runAgent(SimAgent& a, Fleet& fleet, ssl::context& ctx, const std::vector<Replica>& replicas);

/// Enrolls `agents` (named PREFIX-i) through the hub's enrollment API with a bootstrap token it
/// makes first; false (with what failed on stderr) when any fails.
bool enrollAgents(net::io_context& ioc, ssl::context& admin, ssl::context& anon, net::ip::tcp::endpoint ep,
                  std::vector<SimAgent>& agents, const std::string& prefix, Stats& stats);

/// Creates ControlPlanes PREFIX(offset+i), i < n, each placed on agent sim-(i*stride % agents), at
/// `rate` per second; with `timed`, records when each was sent in fleet.sent_ns[offset+i] (the
/// fan-out delay is measured from there to the agent's acknowledgement). Returns how many failed.
size_t createPlaced(net::io_context& ioc, ssl::context& admin, net::ip::tcp::endpoint ep, Fleet& fleet,
                    const std::string& prefix, size_t n, size_t agents, size_t stride, double rate, bool timed,
                    size_t offset = 0);

/// Waits until pred() holds or the deadline passes, printing progress every few seconds.
bool waitFor(const std::function<bool()>& pred, std::chrono::seconds deadline, const std::function<std::string()>& progress);

}  // namespace kflex::bench
