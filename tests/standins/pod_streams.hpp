// SPDX-License-Identifier: Apache-2.0
// A stand-in kubelet's streaming endpoints behind the stand-in API servers: a pod's `exec`,
// `portforward` and `log` subresources as kube-apiserver v1.30 (with its kubelet) answers them,
// so that unmodified kubectl exec/cp/port-forward/logs -f can be tested, also through the hub's
// tunnel. What each relies on, with where it was read: docs/launch-contract.md, "Pod streams".
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "hub/api/http_server.hpp"
#include "hub/store/object_store.hpp"
#include "shared/model/resource.hpp"

namespace kflex::standin {

/**
 * Serves /api/v1/namespaces/NS/pods/NAME/{exec,portforward,log} for pods stored in `store`:
 * - exec: SPDY/3.1 (`X-Stream-Protocol-Version` v4.channel.k8s.io, every kubectl) or WebSocket
 *   `v5.channel.k8s.io` (kubectl 1.30+ when its transport allows); the command runs as a process
 *   of this program in the pod's directory (ROOT/NS/NAME), its exit code in the final Status.
 *   No TTY: a request with tty=true is refused with a Status saying so.
 * - portforward: SPDY/3.1 `portforward.k8s.io` (a WebSocket request is refused, as v1.30 with
 *   PortForwardWebsockets off does, so that kubectl falls back to SPDY); each stream pair
 *   connects to 127.0.0.1:PORT (the pod's own network, which here is this program's).
 * - log: the container's log is the file CONTAINER.log in the pod's directory (what an exec that
 *   appends to it writes); `follow=true` streams what is appended, as text/plain chunks.
 * Only clients with a verified certificate are served (401 otherwise).
 */
class PodStreams {
 public:
  PodStreams(hub::ObjectStore& store, const model::Registry& registry, std::filesystem::path root);
  /// Whether `path` is one of the endpoints above.
  static bool matches(std::string_view path);
  /// The handler for HttpServer::addStreamRoute.
  net::awaitable<void> serve(std::unique_ptr<hub::HttpStream>& stream, http::request<http::string_body> req,
                             tls::PeerIdentity id, std::string peer);

 private:
  hub::ObjectStore& store_;
  const model::ResourceType* pods_;
  std::filesystem::path root_;
};

}  // namespace kflex::standin
