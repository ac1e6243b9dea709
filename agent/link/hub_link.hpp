// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/link/tunnels.hpp"
#include "agent/state/agent_state.hpp"
#include "agent/link/enroll.hpp"
#include "shared/common/result.hpp"
#include "shared/common/time.hpp"
#include "shared/net/asio.hpp"

namespace kflex::agent {

/// Timings of the link.
struct LinkOptions {
  std::chrono::milliseconds backoff_base{1000};   ///< First reconnect waits up to this (full jitter).
  std::chrono::milliseconds backoff_cap{60000};   ///< Reconnect waits never exceed this.
  std::chrono::seconds connect_timeout{15};       ///< TCP + TLS + WebSocket handshake.
  std::chrono::seconds idle_timeout{60};          ///< No frame (pings included) for this long: reconnect.
  /// Where the API server of a control plane this agent runs is, for the tunnel's streams
  /// (docs/dev/tunnel.md); unset: the agent offers no tunnel.
  Tunnels::Resolve resolve_api;
};

/**
 * The agent's end of the hub link: one mutual-TLS WebSocket, reconnected with capped exponential
 * backoff and full jitter across the hub URLs; says hello, renews its lease at the interval the
 * hub asks for, and records the link's state in agent.db for `kflex-agent status`. It stores the
 * desired state the hub sends in AgentState (which tells the reconciler) before acknowledging it,
 * and sends what the reconciler put in the outbox. It never calls a runtime.
 * Thread safety: run() and stop() on the io_context's thread.
 */
class HubLink {
 public:
  HubLink(net::io_context& ioc, Identity identity, AgentState& state, const std::filesystem::path& data_dir,
          LinkOptions options);
  ~HubLink();
  /// Runs until stop(): connect, serve, reconnect.
  net::awaitable<void> run();
  /// Closes the link politely and ends run().
  void stop();
  /// What the agent offers instead of the host's measured capacity (YAML `capacity`), by key.
  void setCapacity(std::map<std::string, std::string> capacity) { capacity_ = std::move(capacity); }
  /// The control plane types this agent can run, told to the hub in hello.
  void setControlPlaneTypes(std::vector<std::string> types) { types_ = std::move(types); }
  /// The facts sent in hello (also shown by status).
  static nlohmann::json hostFacts(const std::filesystem::path& data_dir);

 private:
  struct Conn;
  /// How a session with the hub ended.
  struct SessionEnd {
    bool welcomed = false;  ///< The hub welcomed this agent (the link was up) before it ended.
    /// Why it ended: Refused (the hub refused the credentials), Invalid (a malformed URL), else
    /// Unavailable.
    Error error;
  };
  /// Connects to `url`, says hello and serves the link until it ends.
  net::awaitable<SessionEnd> session(const std::string& url);
  void record(const std::string& state, const std::string& detail);
  /// True when the certificate has reached 2/3 of its lifetime (or expired).
  bool renewalDue() const;
  /// Stores a renewed certificate for the pending key and uses it from the next connection on.
  /// Stores a CA bundle the hub sent (after a CA rotation) for this and later connections.
  void installCaBundle(const std::string& bundle_pem);
  void installCertificate(const std::string& cert_pem, const std::string& ca_bundle_pem);

  net::io_context& ioc_;
  Identity identity_;
  AgentState& state_;
  std::filesystem::path data_dir_;
  LinkOptions options_;
  std::shared_ptr<ssl::context> tls_;
  std::shared_ptr<Conn> conn_;
  std::string pending_key_;  // the key of a requested, not yet received, certificate
  net::steady_timer sleep_;
  bool stopping_ = false;
  std::map<std::string, std::string> capacity_;
  std::vector<std::string> types_;
};

}  // namespace kflex::agent
