// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "hub/agents/agent_link.hpp"
#include "hub/agents/desired_feed.hpp"
#include "hub/agents/enrollment.hpp"
#include "hub/agents/lease_controller.hpp"
#include "hub/agents/link_tunnels.hpp"
#include "hub/agents/status_writer.hpp"
#include "hub/api/api_client.hpp"
#include "hub/api/control_plane_secrets.hpp"
#include "hub/api/http_server.hpp"
#include "hub/store/object_store.hpp"
#include "shared/common/time.hpp"
#include "shared/protocol/messages.hpp"

namespace kflex::hub {

/// Timings and limits of agent links.
struct GatewayOptions {
  std::chrono::seconds lease_renew{10};       ///< How often agents renew (told to them in `welcome`).
  std::chrono::seconds lease_duration{50};    ///< No renewal for this long: Ready=False, LeaseExpired.
  std::chrono::seconds heartbeat_persist{40}; ///< status.lastHeartbeatTime is written at most this often.
  std::chrono::seconds idle_timeout{60};      ///< No frame (pings included) for this long closes a link.
  std::chrono::seconds expired_grace{7 * 24 * 3600};  ///< An expired agent certificate still connects this long (to renew).
  size_t max_queue_bytes = 8 * 1024 * 1024;   ///< Unsent bytes per agent before it is disconnected as too slow.
  StatusLimits status_limits;                  ///< How often status reports are written.
  TunnelLimits tunnel;                         ///< Tunnel streams per link (docs/dev/tunnel.md).
  std::string peer_url;                        ///< How other replicas reach this one (an Agent's status.hubPeer).
};

/**
 * The hub's end of agent links, where the parts meet: it authenticates each link by its client
 * certificate against the Agent object (key pin, not revoked), speaks the protocol on it
 * (hello, lease, ack, status, csr), and feeds each agent its desired state.
 * - AgentLink: the connection (frames, write queue, back-pressure, close), one per agent;
 * - DesiredFeed: what an agent is sent, per link, from this gateway's one store watch, which
 *   also closes the link of an agent that is deleted (revoked) or enrolled again;
 * - LeaseController and StatusWriter: controllers on the kit, for leases and status reports.
 * Thread safety: all public methods may be called from any thread.
 */
class AgentGateway {
 public:
  /// `leader`: the controllers' client (lease expiries are the leader's).
  AgentGateway(net::io_context& ioc, ApiClient& api, ApiClient& leader, ObjectStore& store,
               const model::Registry& registry, EnrollmentService& enrollment, const Clock& clock,
               GatewayOptions options);
  ~AgentGateway();
  /// Starts the lease and status controllers and the feeds' watch.
  void start();
  /// Closes every link (hub shutdown), writes the status reports that wait, stops the rest.
  void stop();
  /// The upgrade handler for protocol::kConnectPath.
  net::awaitable<void> serve(std::unique_ptr<HttpStream>& stream, http::request<http::string_body> req,
                             tls::PeerIdentity id, std::string peer);
  /// Links open now.
  size_t connected() const;
  /// The tunnel streams of `agent`'s link to this hub; nullptr when it has none here, or when
  /// its agent speaks no tunnel (`linked` then says which).
  std::shared_ptr<LinkTunnels> tunnels(const std::string& agent, bool& linked) const;
  /// Where the kubeconfigs agents report go and adopted clusters' bootstrap kubeconfigs come
  /// from (before start()); without it reported kubeconfigs are ignored.
  void setSecrets(ControlPlaneSecrets* secrets);

 private:
  struct Session;
  /// Why an agent certificate's name and key are not accepted ("" when they are).
  std::string enrolledKeyProblem(const std::string& name, const std::string& pin) const;
  /// Acts on one message from the agent; false when the link is to end (closed with a reason).
  net::awaitable<bool> onMessage(const std::shared_ptr<Session>& s, const protocol::Envelope& env);
  net::awaitable<bool> onHello(const std::shared_ptr<Session>& s, const protocol::Envelope& env);
  net::awaitable<void> onLease(const std::shared_ptr<Session>& s);
  net::awaitable<bool> onCsr(const std::shared_ptr<Session>& s, const protocol::Envelope& env);
  net::awaitable<bool> onStatus(const std::shared_ptr<Session>& s, const protocol::Envelope& env);
  /// The store watch that feeds every link (and closes revoked ones).
  net::awaitable<void> watchLoop();
  /// Tells idle agents how far the hub has got, now and then.
  net::awaitable<void> progressLoop();
  /// Runs `fn(session)` on each open link's executor.
  void forEachSession(const std::function<void(const std::shared_ptr<Session>&)>& fn);
  std::shared_ptr<Session> find(const std::string& agent) const;
  /// An Agent changed: its link is closed when its enrolled key is no longer the link's.
  void checkKey(const std::string& name, const Json& agent);

  ApiClient& api_;
  ObjectStore& store_;
  const model::ResourceType& agents_;
  EnrollmentService& enrollment_;
  const Clock& clock_;
  GatewayOptions options_;
  net::strand<net::io_context::executor_type> strand_;
  std::atomic<bool> stopping_{false};
  uint64_t watch_id_ = 0;      // strand_
  int64_t processed_rev_ = 0;  // strand_: every event up to here has been dispatched to sessions
  DesiredViews views_;
  LeaseController leases_;
  StatusWriter status_;

  mutable std::mutex mutex_;  // guards sessions_ and Session::pin
  std::unordered_map<std::string, std::shared_ptr<Session>> sessions_;
};

}  // namespace kflex::hub
