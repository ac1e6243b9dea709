// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "agent/host/netns.hpp"
#include "shared/common/result.hpp"
#include "shared/net/asio.hpp"

namespace kflex::agent::runtime {

/**
 * Relays TCP from ADDRESS:PORT on the host to a port on the loopback of a control plane's
 * network namespace: how a control plane isolated in its own namespace is reached from outside.
 * Bytes pass through untouched (TLS ends at the control plane, whose certificate names ADDRESS).
 * Thread safety: the io_context's thread.
 */
class PortForward : public std::enable_shared_from_this<PortForward> {
 public:
  /// Binds ADDRESS:PORT (port 0: any free one) and starts accepting; code Conflict when another
  /// program holds the port.
  static Result<std::shared_ptr<PortForward>> open(net::any_io_executor ex, const std::string& address, uint16_t port,
                                                   std::shared_ptr<const NetNamespace> ns, uint16_t target_port);
  ~PortForward();
  /// The bound port.
  uint16_t port() const { return port_; }
  /// Stops accepting and closes every relayed connection.
  void close();
  /// Connections relayed so far.
  uint64_t accepted() const { return accepted_; }

 private:
  PortForward(net::any_io_executor ex, std::shared_ptr<const NetNamespace> ns, uint16_t target_port);
  net::awaitable<void> acceptLoop();
  net::awaitable<void> relay(net::ip::tcp::socket client);
  net::ip::tcp::acceptor acceptor_;
  std::shared_ptr<const NetNamespace> ns_;
  uint16_t target_port_ = 0;
  uint16_t port_ = 0;
  uint64_t accepted_ = 0;
  bool closed_ = false;
  std::shared_ptr<int> generation_ = std::make_shared<int>(0);  // connections watch it to end on close()
};

}  // namespace kflex::agent::runtime
