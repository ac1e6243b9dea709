// SPDX-License-Identifier: Apache-2.0
// What the tests of the real kflex-hub's API share: the ControlPlanes path, an HTTPS client from
// a kubeconfig, a ControlPlane to create.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "shared/config/kubeconfig.hpp"
#include "shared/net/https_client.hpp"

namespace kflex::test {

inline constexpr const char* kBase = "/apis/tenancy.kflex.kubestellar.org/v1alpha1/controlplanes";

/// A client with the kubeconfig's credentials, for its server or `server` (another replica).
inline std::unique_ptr<net_client::HttpsClient> client(const std::filesystem::path& kubeconfig,
                                                      const std::string& server = "") {
  auto kc = config::Kubeconfig::load(kubeconfig);
  auto access = kc->access().value();
  if (!server.empty()) {
    access.server = server;
  }
  return std::move(net_client::HttpsClient::create(access).value());
}

/// A ControlPlane of type k3s named `name`, as JSON.
inline std::string cpJson(const std::string& name) {
  return nlohmann::json{{"apiVersion", "tenancy.kflex.kubestellar.org/v1alpha1"}, {"kind", "ControlPlane"},
                        {"metadata", {{"name", name}}}, {"spec", {{"type", "k3s"}}}}
      .dump();
}

}  // namespace kflex::test
