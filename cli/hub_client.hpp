// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "shared/common/result.hpp"
#include "shared/net/https_client.hpp"

namespace kflex::cli {

using Json = nlohmann::json;

/// The error code an HTTP status of the hub stands for: NotFound (404), Conflict (409), Invalid
/// (400, 422), Refused (401, 403), Timeout (504), Unavailable (other 5xx, 429), else Internal.
Errc errcOfStatus(unsigned status);

/// Decodes an answer of the hub: the JSON on 2xx; else an error whose code says what the status
/// means (errcOfStatus) and whose message is the Status message, or the status when there is none.
Result<nlohmann::json> decodeAnswer(const net_client::HttpResult& answer);

/// The hub's API as the CLI uses it: typed calls on ControlPlane objects with readable errors.
/// A failed call's error code says what the hub answered (NotFound for 404, Conflict for 409, ...).
class HubClient {
 public:
  /// Connects with the kubeconfig at path (context: given, else kflex-hub if present, else current).
  static Result<std::unique_ptr<HubClient>> connect(const std::string& kubeconfig_path, const std::string& context);
  /// GET a path; the decoded JSON on 2xx, else the Status message (decodeAnswer).
  Result<Json> get(const std::string& path);
  /// POST a JSON object.
  Result<Json> post(const std::string& path, const Json& body);
  /// DELETE a path.
  Result<Json> remove(const std::string& path);
  /// PATCH with a JSON merge patch.
  Result<Json> mergePatch(const std::string& path, const Json& patch);
  /// Watches a path (a ?watch=1 URL); on_event gets each event until it returns false. Ok when
  /// on_event stopped it; an error with code Timeout when the timeout passed first.
  Result<void> watch(const std::string& path, const std::function<bool(const Json&)>& on_event,
                     std::chrono::milliseconds timeout);
  /// The hub URL.
  const std::string& server() const { return http_->server(); }
  /// The kubeconfig context the hub was reached through.
  const std::string& context() const { return context_; }

 private:
  HubClient(std::unique_ptr<net_client::HttpsClient> http, std::string context)
      : http_(std::move(http)), context_(std::move(context)) {}
  static Result<Json> decode(const Result<net_client::HttpResult>& r);
  std::unique_ptr<net_client::HttpsClient> http_;
  std::string context_;
};

/// The collection path of control planes.
inline constexpr const char* kControlPlanesPath = "/apis/tenancy.kflex.kubestellar.org/v1alpha1/controlplanes";
/// The collection path of bootstrap tokens (enrollment and tunnel tokens).
inline constexpr const char* kTokensPath = "/apis/tenancy.kflex.kubestellar.org/v1alpha1/bootstraptokens";
/// The collection path of agents.
inline constexpr const char* kAgentsPath = "/apis/tenancy.kflex.kubestellar.org/v1alpha1/agents";

/// Makes a BootstrapToken with `spec` (its id and secret are chosen here; the hub keeps only the
/// secret's hash): the token, ID.SECRET, or the hub's error.
Result<std::string> createBootstrapToken(HubClient& hub, Json spec);

}  // namespace kflex::cli
