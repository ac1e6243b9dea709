// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "hub/agents/agent_link.hpp"
#include "shared/common/result.hpp"
#include "shared/net/tunnel_stream.hpp"
#include "shared/tls/lean_stream.hpp"

namespace kflex::hub {

/// Limits of the tunnel streams on one agent link.
struct TunnelLimits {
  size_t max_streams = 256;                          ///< Open or opening at once, per agent link.
  std::chrono::seconds open_timeout{15};             ///< For the agent's OPENED or RESET.
  std::chrono::seconds idle_timeout{10 * 60};        ///< No DATA either way for this long: reset.
};

/**
 * The hub's end of the tunnel streams on one agent link (docs/dev/tunnel.md): it numbers the
 * streams, sends OPEN for a control plane and waits for the agent's answer, then carries each
 * stream between the client's connection (a kubectl behind a CONNECT) and the link. A stream's
 * work runs on its client connection's executor; frames from the agent arrive on the link's and
 * are posted there.
 *
 * Made with std::make_shared. Thread safety: every public method may be called from any thread;
 * open() and attach() from the client connection's executor.
 */
class LinkTunnels : public std::enable_shared_from_this<LinkTunnels> {
 public:
  using Stream = net_tunnel::TunnelStream<tls::LeanStream>;

  LinkTunnels(std::shared_ptr<AgentLink> link, TunnelLimits limits);
  LinkTunnels(const LinkTunnels&) = delete;
  LinkTunnels& operator=(const LinkTunnels&) = delete;

  /// The link's event loop, where a stream's work runs: run open() there (a frame from the agent
  /// then reaches its stream without a hop between threads).
  AgentLink::Executor executor() const { return link_->executor(); }
  /// Opens a stream to control plane `name` on the agent: its id once the agent answers OPENED,
  /// or why not (the agent's RESET reason, no answer in time, the link ended, the limit).
  net::awaitable<Result<uint32_t>> open(std::string name);
  /// Carries stream `id` (opened, and its client told 200) over `client` from now on; `client`
  /// moves onto the link's event loop.
  void attach(uint32_t id, tls::LeanStream client);
  /// Gives up stream `id` before attach (its client went away): RESET to the agent.
  void abandon(uint32_t id, const std::string& why);
  /// A binary message from the agent (on the link's executor).
  void onFrame(std::string message);
  /// The link ended: every stream ends with `why`, and no stream opens any more.
  void closeAll(const std::string& why);
  /// Streams open or opening.
  size_t size() const;

 private:
  struct Entry;
  /// attach() on the link's executor.
  void start(uint32_t id, tls::LeanStream client);
  std::shared_ptr<Entry> find(uint32_t id) const;
  void erase(uint32_t id);

  const std::shared_ptr<AgentLink> link_;
  const TunnelLimits limits_;
  mutable std::mutex mutex_;
  std::map<uint32_t, std::shared_ptr<Entry>> entries_;
  uint32_t last_id_ = 0;
  bool closed_ = false;
  std::string closed_why_;
};

}  // namespace kflex::hub
