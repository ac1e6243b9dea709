// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "shared/common/result.hpp"
#include "shared/net/tunnel_stream.hpp"

namespace kflex::agent {

/**
 * The agent's end of the tunnel (docs/dev/tunnel.md): streams the hub opens on the link, each to
 * the API server of a control plane this agent runs, named by the control plane and never by an
 * address (what `resolve` answers for a name is the only place a stream can go: no SSRF through
 * the agent). OPEN: the name is checked, resolved and dialled (10 s at most), then OPENED, or
 * RESET with the reason. Every other frame goes to its stream. At most `max_streams` at once.
 * Thread safety: on the link's executor only.
 */
class Tunnels {
 public:
  /// Where a stream goes: an address, or a name this host resolves (an adopted cluster's server).
  struct Target {
    Target(std::string h, uint16_t p) : host(std::move(h)), port(p) {}
    Target(const net::ip::tcp::endpoint& ep) : host(ep.address().to_string()), port(ep.port()) {}  // NOLINT
    std::string host;
    uint16_t port = 0;
  };
  /// The API server of control plane `name` here, or why there is none.
  using Resolve = std::function<Result<Target>(const std::string& name)>;
  /// Queues one binary frame on the link.
  using Send = std::function<void(std::string frame)>;

  Tunnels(net::any_io_executor executor, Resolve resolve, Send send, size_t max_streams = 1024);
  ~Tunnels();
  Tunnels(const Tunnels&) = delete;
  Tunnels& operator=(const Tunnels&) = delete;

  /// One binary message from the hub.
  void onMessage(std::string message);
  /// The link is over: every stream ends (its local connection closes); nothing is sent.
  void closeAll();
  /// Streams open or being dialled.
  size_t size() const { return streams_.size() + dialling_.size(); }

 private:
  using Stream = net_tunnel::TunnelStream<net::ip::tcp::socket>;
  net::awaitable<void> open(uint32_t id, std::string name, std::shared_ptr<bool> alive);
  void reset(uint32_t id, const std::string& why);

  net::any_io_executor executor_;
  Resolve resolve_;
  Send send_;
  size_t max_streams_;
  std::map<uint32_t, std::shared_ptr<Stream>> streams_;
  std::map<uint32_t, std::string> dialling_;  // id -> control plane
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // false once destroyed or closed
};

}  // namespace kflex::agent
