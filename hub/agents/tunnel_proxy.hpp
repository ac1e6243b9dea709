// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <memory>
#include <string>
#include <variant>

#include "hub/agents/gateway.hpp"
#include "hub/api/http_server.hpp"
#include "hub/store/object_store.hpp"
#include "shared/common/time.hpp"
#include "shared/model/resource.hpp"

namespace kflex::hub {

/**
 * The hub's HTTPS CONNECT proxy to control planes on agents (docs/dev/tunnel.md): kubectl, told
 * `proxy-url: https://tunnel:TOKEN@HUB` by its kubeconfig, asks `CONNECT NAME.controlplanes.kflex:6443`;
 * the hub checks the token (a BootstrapToken with usage `tunnel` listing NAME: 407 without a
 * valid one, 403 when it does not list NAME), finds the agent the control plane is placed on,
 * opens a stream on that agent's link, answers `200` and from then on passes bytes: the TLS
 * session inside is kubectl's with the control plane's own API server, which the hub cannot read.
 * A refusal's reason phrase carries the message (Go's HTTP client shows only that), e.g. 503
 * naming an agent that is offline and when it was last seen.
 *
 * Thread safety: serve() may run on any number of connections at once.
 */
class TunnelProxy {
 public:
  TunnelProxy(ObjectStore& store, const model::Registry& registry, AgentGateway& gateway, const Clock& clock);
  /// The CONNECT handler (HttpServer::setConnect).
  net::awaitable<void> serve(std::unique_ptr<HttpStream>& stream, http::request<http::string_body> req,
                             tls::PeerIdentity id, std::string peer);
  /// With several replicas: `self` is how the others reach this one (its peer URL); a CONNECT for
  /// an agent linked to another replica (the Agent's status.hubPeer) is passed on to that one over
  /// TLS verified by `tls` (the hub's CA, server certificates only), once.
  void setPeers(std::string self, std::shared_ptr<ssl::context> tls) {
    self_peer_ = std::move(self);
    peer_tls_ = std::move(tls);
  }
  /// The header a replica marks a CONNECT it passes on with (never passed on again).
  static constexpr const char* kForwardedHeader = "Kflex-Tunnel-Forwarded";
  /// Whether the tunnel reaches control plane `cp` (the object): served by an agent it is placed
  /// on (an adopted cluster included), and that agent speaks the tunnel (linked now or not).
  bool reaches(const Json& cp) const;
  /// Whether tunnel token `token` (ID.SECRET) opens streams to control plane `name` now.
  bool opens(const std::string& token, const std::string& name) const;

 private:
  struct Refusal {
    unsigned status = 0;
    std::string message;
  };
  /// The control plane `req` may reach, or why not.
  std::variant<std::string, Refusal> authorize(const http::request<http::string_body>& req, std::string& token_id) const;
  /// The agent serving control plane `name`, or why there is none.
  std::variant<std::string, Refusal> placement(const std::string& name) const;
  /// Why `agent` cannot carry a stream now (linked = whether it has a link to this hub).
  Refusal unavailable(const std::string& agent, bool linked) const;
  /// The peer URL of the replica `agent` is linked to when it is another one ("" otherwise).
  std::string peerOf(const std::string& agent) const;
  /// Passes the CONNECT on to replica `peer_url` and, once it answers 200, the bytes both ways;
  /// its refusal goes to the client as it is. Returns false when the replica cannot be reached.
  net::awaitable<bool> forward(std::unique_ptr<HttpStream>& stream, const http::request<http::string_body>& req,
                               std::string peer_url, std::string& answer_line);

  ObjectStore& store_;
  const model::ResourceType& control_planes_;
  const model::ResourceType& agents_;
  const model::ResourceType& tokens_;
  AgentGateway& gateway_;
  const Clock& clock_;
  std::string self_peer_;
  std::shared_ptr<ssl::context> peer_tls_;
};

}  // namespace kflex::hub
