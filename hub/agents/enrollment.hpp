// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "hub/api/api_client.hpp"
#include "hub/api/api_types.hpp"
#include "hub/store/object_store.hpp"
#include "shared/common/time.hpp"
#include "shared/tls/pki.hpp"

namespace kflex::hub {

/// Settings of enrollment.
struct EnrollOptions {
  std::chrono::seconds cert_validity{30 * 24 * 3600};  ///< Lifetime of agent certificates (renewed at 2/3).
  std::string previous_ca_pem;  ///< During a CA rotation: the previous CA, trusted until previous_until.
  TimePoint previous_until{};
  std::vector<std::string> hub_urls;          ///< Told to agents, first one preferred.
};

/**
 * Agent enrollment (like kubeadm join): GET /enroll/v1/ca hands out the CA bundle without
 * authentication (the agent checks it against its pin); POST /enroll/v1/agents takes a bootstrap
 * token and a CSR, creates the Agent object and returns a client certificate for the agent's key.
 * Thread safety: handle() may run concurrently.
 */
class EnrollmentService {
 public:
  EnrollmentService(ApiClient& api, ObjectStore& store, const model::Registry& registry, tls::KeyPair ca,
                    std::string ca_bundle, const Clock& clock, EnrollOptions options);
  /// Serves a request under /enroll/.
  net::awaitable<ApiResponse> handle(ApiRequest req);
  /// Issues an agent certificate for a CSR (enrollment and renewal share it).
  Result<std::string> issue(const std::string& name, const std::string& csr_pem) const;
  /// The CAs agents must trust for the hub: the current one, and during a rotation's overlap
  /// the previous one too.
  std::string caBundle() const;
  /// The current CA's key pin (an agent certificate from another CA is renewed at once).
  const std::string& caPin() const { return ca_pin_; }
  std::chrono::seconds certValidity() const { return options_.cert_validity; }

 private:
  net::awaitable<ApiResponse> enroll(ApiRequest req);

  ApiClient& api_;
  ObjectStore& store_;
  const model::ResourceType& agents_;
  const model::ResourceType& tokens_;
  tls::KeyPair ca_;
  std::string ca_bundle_;
  std::string ca_pin_;
  const Clock& clock_;
  EnrollOptions options_;
};

}  // namespace kflex::hub
