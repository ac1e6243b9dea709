// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "hub/agents/enrollment.hpp"
#include "hub/agents/status_limiter.hpp"
#include "hub/api/api_service.hpp"
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
};

/**
 * The hub's end of agent links: authenticates each WebSocket by its client certificate against
 * the Agent object (key pin, not revoked), keeps the agents' leases, marks agents whose lease ran
 * out Ready=False, and closes the link of an agent that is deleted (revoked). Status reports are
 * written as `status_limits` allow (per control plane the latest wins; per agent a token bucket).
 * Thread safety: all public methods may be called from any thread.
 */
class AgentGateway {
 public:
  AgentGateway(net::io_context& ioc, ApiClient& api, ObjectStore& store, const model::Registry& registry,
               EnrollmentService& enrollment, const Clock& clock, GatewayOptions options);
  ~AgentGateway();
  /// Starts the lease controller and the revocation watch.
  void start();
  /// Closes every link (hub shutdown) and stops the controllers.
  void stop();
  /// The upgrade handler for protocol::kConnectPath.
  net::awaitable<void> serve(std::unique_ptr<HttpStream>& stream, http::request<http::string_body> req,
                             tls::PeerIdentity id, std::string peer);
  /// Links open now.
  size_t connected() const;
  /// Where the kubeconfigs agents report go (before start()); without it they are ignored.
  void setSecrets(ControlPlaneSecrets* secrets) { secrets_ = secrets; }

 private:
  struct Session;
  /// Why an agent certificate's name and key are not accepted ("" when they are).
  std::string enrolledKeyProblem(const std::string& name, const std::string& pin) const;
  net::awaitable<void> leaseLoop();
  net::awaitable<void> watchLoop();
  net::awaitable<void> checkLeases();
  /// Records an Agent's Ready condition and last stored heartbeat (strand_ only).
  void observeLease(const std::string& name, const Json& agent);
  net::awaitable<void> readLoop(std::shared_ptr<Session> s);
  net::awaitable<void> writeLoop(std::shared_ptr<Session> s);
  /// Acts on one message from the agent; false when the link is to end (closed with a reason).
  net::awaitable<bool> onMessage(const std::shared_ptr<Session>& s, const protocol::Envelope& env);
  net::awaitable<bool> onHello(const std::shared_ptr<Session>& s, const protocol::Envelope& env);
  net::awaitable<void> onLease(const std::shared_ptr<Session>& s);
  net::awaitable<bool> onCsr(const std::shared_ptr<Session>& s, const protocol::Envelope& env);
  net::awaitable<bool> onStatus(const std::shared_ptr<Session>& s, const protocol::Envelope& env);
  /// Hands a checked report to its agent's status writer (started when none runs).
  void offerStatus(const std::shared_ptr<Session>& s, protocol::StatusReport&& report);
  /// Writes the reports of one agent as its StatusLimiter allows, until none waits and the
  /// limiter has nothing left to remember; then it forgets the agent. Runs on the executor of
  /// the link that started it; `wake` is cancelled when a report arrives.
  net::awaitable<void> statusWriter(std::string agent, std::shared_ptr<net::steady_timer> wake);
  /// Stores what `agent` reported on a control plane placed on it (nothing when it is not).
  net::awaitable<void> writeStatus(std::string agent, const protocol::StatusReport& report);
  /// Sends status-ack for report `seq` on `link`, if it is still open.
  void ackStatus(const std::weak_ptr<Session>& link, int64_t seq);
  /// Wakes `agent`'s status writer, if one runs (reports_mutex_ held).
  void wakeStatusWriter(const std::string& agent);
  // Desired state (on the session's strand): the first sync after hello, then live events.
  void initialSync(const std::shared_ptr<Session>& s, int64_t acknowledged);
  void deliver(const std::shared_ptr<Session>& s, const EventPtr& ev);
  void progress(const std::shared_ptr<Session>& s, int64_t revision);
  /// What an agent is sent of a control plane: what it acts on (spec, the metadata it uses,
  /// deletion) and what it carries beyond the stored object: the bootstrap kubeconfig of an
  /// external control plane it adopts (until adopted), and the PostCreateHooks it uses
  /// (kube::kDeliveredHooksField). Never its status: an agent is not sent its own reports back.
  std::string viewOf(const ObjectRecord& rec) const;
  /// Records `view` as the last sent of control plane `name` on link `s`; false when it was
  /// already (nothing the agent acts on changed).
  static bool remember(Session& s, const std::string& name, const std::string& view);
  /// The control planes on `agent` that use PostCreateHook `hook` (a hook changed or appeared).
  std::vector<ObjectPtr> usersOfHook(const std::string& agent, const std::string& hook) const;
  net::awaitable<void> markControlPlanesUnknown(const std::string& agent, const std::string& stamp);
  void send(const std::shared_ptr<Session>& s, std::string message);
  void close(const std::shared_ptr<Session>& s, std::string code, std::string message);
  void closeByName(const std::string& name, const std::string& code, const std::string& message);

  net::io_context& ioc_;
  ControlPlaneSecrets* secrets_ = nullptr;
  ApiClient& api_;
  ObjectStore& store_;
  const model::ResourceType& agents_;
  const model::ResourceType& cps_;
  const model::ResourceType& hooks_;
  EnrollmentService& enrollment_;
  const Clock& clock_;
  GatewayOptions options_;
  net::strand<net::io_context::executor_type> strand_;
  TimePoint started_;
  std::atomic<bool> stopping_{false};
  uint64_t watch_id_ = 0;
  int64_t processed_rev_ = 0;  // strand_: every event up to here has been dispatched to sessions

  mutable std::mutex mutex_;  // guards sessions_, renewed_ and Session::pin
  std::unordered_map<std::string, std::shared_ptr<Session>> sessions_;
  std::unordered_map<std::string, TimePoint> renewed_;  // last lease renewal seen by this hub
  struct LeaseView {
    bool ready = false;
    TimePoint last_heartbeat{};
    TimePoint lost_since{};  // when its lease expired (Ready=False/LeaseExpired), else zero
  };
  std::unordered_map<std::string, LeaseView> leases_;  // strand_: every Agent's lease state, from the watch

  // Status reports waiting to be written, per agent.
  struct PendingReport {
    protocol::StatusReport report;
    std::weak_ptr<Session> link;  // acknowledged there once written (or replaced)
  };
  struct AgentReports {
    AgentReports(const StatusLimits& limits, std::chrono::steady_clock::time_point now) : limiter(limits, now) {}
    StatusLimiter<PendingReport> limiter;
    std::shared_ptr<net::steady_timer> wake;  // its writer sleeps on it (on the writer's executor)
  };
  std::mutex reports_mutex_;  // guards reports_
  std::unordered_map<std::string, std::unique_ptr<AgentReports>> reports_;  // an entry exists while its writer runs
};

}  // namespace kflex::hub
