// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <map>
#include <string>

#include "hub/api/api_types.hpp"
#include "hub/store/object_store.hpp"
#include "shared/common/time.hpp"
#include "shared/tls/secret_box.hpp"

namespace kflex::hub {

/// Where the sealed kubeconfigs live in the store (not an API resource: never served as stored).
inline constexpr const char* kCredentialsResource = "kflex.internal/controlplanecredentials";

/**
 * The control planes' kubeconfigs, as KubeFlex exposes them on its hosting cluster: namespace
 * `<cp>-system`, secret `admin-kubeconfig` (keys kubeconfig, kubeconfig-incluster), `k3s-config`
 * or `vc-vcluster` (keys config, config-incluster). Stored sealed (tls::SecretBox) in the hub's
 * store; served read-only, decrypted, to admins under /api/v1 (namespaces and secrets), so that
 * `kubectl get secret -n <cp>-system <name> -o jsonpath=...` works against the hub.
 * Thread safety: any thread.
 */
class ControlPlaneSecrets {
 public:
  ControlPlaneSecrets(ObjectStore& store, tls::SecretBox box, const Clock& clock)
      : store_(store), box_(std::move(box)), clock_(clock) {}
  /// The secret names and keys kflex hands out; false for anything else.
  static bool validSecret(const std::string& secret_name, const std::map<std::string, std::string>& data);
  /// Stores the kubeconfig secret of control plane `cp` (uid: the ControlPlane's, so that a
  /// new control plane of the same name never sees an old one's). Unchanged data is not rewritten.
  net::awaitable<Result<void>> put(std::string cp, std::string uid, std::string secret_name,
                                   std::map<std::string, std::string> data);
  /// Forgets control plane `cp`'s secret.
  net::awaitable<void> remove(std::string cp);
  /// Serves GET /api/v1/namespaces[/NS[/secrets[/NAME]]] and /api/v1/secrets.
  net::awaitable<ApiResponse> handle(ApiRequest req);

 private:
  ObjectStore& store_;
  tls::SecretBox box_;
  const Clock& clock_;
};

}  // namespace kflex::hub
