// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <map>
#include <optional>
#include <vector>
#include <string>

#include "hub/api/api_client.hpp"
#include "hub/api/api_types.hpp"
#include "hub/store/object_store.hpp"
#include "shared/common/time.hpp"
#include "shared/tls/secret_box.hpp"

namespace kflex::hub {

/// Where the sealed kubeconfigs live in the store (not an API resource: never served as stored).
inline constexpr const char* kCredentialsResource = "kflex.internal/controlplanecredentials";
/// Where bootstrap secrets (`kflex adopt`'s kubeconfig of a cluster to adopt) live, sealed.
inline constexpr const char* kBootstrapResource = "kflex.internal/bootstrapsecrets";
/// The namespace bootstrap secrets are written to, as upstream KubeFlex's system namespace.
inline constexpr const char* kSystemNamespace = "kubeflex-system";

/**
 * The control planes' kubeconfigs, as KubeFlex exposes them on its hosting cluster: namespace
 * `<cp>-system`, secret `admin-kubeconfig` (keys kubeconfig, kubeconfig-incluster), `k3s-config`
 * or `vc-vcluster` (keys config, config-incluster). Stored sealed (tls::SecretBox) in the hub's
 * store; served read-only, decrypted, to admins under /api/v1 (namespaces and secrets), so that
 * `kubectl get secret -n <cp>-system <name> -o jsonpath=...` works against the hub.
 * With a tunnel route set, a control plane the tunnel reaches is served with its key (kubeconfig
 * or config) routed through the hub, and the agent's own under KEY-direct (docs/dev/tunnel.md);
 * the tunnel token in it is a BootstrapToken the hub makes once per control plane (when the
 * kubeconfig is first stored), remade at a read of that secret when revoked, and deleted with
 * the control plane.
 * Thread safety: any thread.
 */
class ControlPlaneSecrets {
 public:
  /// Where the served kubeconfigs reach the hub's tunnel.
  struct TunnelRoute {
    std::string hub_url;     // https://HOST:PORT (the first of the hub's hub_urls)
    std::string hub_ca_pem;  // what verifies the hub
    ApiClient* api = nullptr;  // makes and deletes the tunnel tokens
    const model::ResourceType* tokens = nullptr;
    /// Whether the tunnel reaches a control plane (the object).
    std::function<bool(const Json& cp)> reaches;
    /// Whether tunnel token `token` (ID.SECRET) still opens streams to control plane `cp`.
    std::function<bool(const std::string& token, const std::string& cp)> token_valid;
  };

  ControlPlaneSecrets(ObjectStore& store, tls::SecretBox box, const Clock& clock)
      : store_(store), box_(std::move(box)), clock_(clock) {}
  /// The secret names and keys kflex hands out; false for anything else.
  static bool validSecret(const std::string& secret_name, const std::map<std::string, std::string>& data);
  /// Stores the kubeconfig secret of control plane `cp` (uid: the ControlPlane's, so that a
  /// new control plane of the same name never sees an old one's). Unchanged data is not rewritten.
  net::awaitable<Result<void>> put(std::string cp, std::string uid, std::string secret_name,
                                   std::map<std::string, std::string> data);
  /// Serves control planes' kubeconfigs routed through the hub (see above).
  void setTunnelRoute(TunnelRoute route) { route_ = std::move(route); }
  /// Forgets control plane `cp`'s secret (and deletes its tunnel token).
  net::awaitable<void> remove(std::string cp);
  /// The kubeconfig data of control plane `cp` (decrypted), if stored for the control plane of
  /// that uid.
  std::optional<std::map<std::string, std::string>> get(const std::string& cp, const std::string& uid) const;
  /// A bootstrap secret in kubeflex-system (decrypted data), if present.
  std::optional<std::map<std::string, std::string>> bootstrap(const std::string& name) const;
  /// Deletes a bootstrap secret (used once, then gone).
  net::awaitable<void> removeBootstrap(std::string name);
  /// Serves GET /api/v1/namespaces[/NS[/secrets[/NAME]]] and /api/v1/secrets, and create, get and
  /// delete of secrets in kubeflex-system (bootstrap kubeconfigs for adoption).
  net::awaitable<ApiResponse> handle(ApiRequest req);

 private:
  /// Secrets of kubeflex-system: create, get, list, delete.
  net::awaitable<ApiResponse> handleSystem(const ApiRequest& req, const std::vector<std::string>& parts);
  std::optional<Json> bootstrapObject(const ObjectPtr& rec) const;
  /// `data` (the agent's kubeconfig keys of control plane `cp`) as served: with KEY routed through
  /// the hub and KEY-direct when the tunnel reaches `cp` (and it has a token, or `make`), as it
  /// is otherwise.
  net::awaitable<std::map<std::string, std::string>> served(std::string cp, std::map<std::string, std::string> data,
                                                            bool make);
  /// The tunnel token of control plane `cp`'s secret: the stored one while the hub still has it,
  /// else, with `make`, a new one ("" when there is none; a failure is logged).
  net::awaitable<std::string> secretToken(std::string cp, bool make);
  /// Opens every value of a {key: sealed} object; nullopt (logged, naming `what`) when one fails.
  std::optional<std::map<std::string, std::string>> openAll(const Json& sealed, const std::string& what) const;
  ObjectStore& store_;
  tls::SecretBox box_;
  const Clock& clock_;
  TunnelRoute route_;
};

}  // namespace kflex::hub
