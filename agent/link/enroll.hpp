// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <filesystem>
#include <string>
#include <vector>

#include "agent/agent_config.hpp"
#include "agent/state/agent_state.hpp"
#include "shared/common/result.hpp"

namespace kflex::agent {

/// The agent's credentials in DATA_DIR/pki.
struct Identity {
  std::string name;          ///< CN of the certificate.
  std::string key_pem;       ///< agent.key (0600), made here, never sent anywhere.
  std::string cert_pem;      ///< agent.crt, issued by the hub.
  std::string ca_bundle_pem; ///< ca.crt: the CA(s) the hub's serving certificate chains to.
  std::vector<std::string> hub_urls;  ///< Where to find the hub: config first, then what enrollment said.
};

/// Paths of the files in DATA_DIR/pki.
std::filesystem::path keyPath(const std::filesystem::path& data_dir);
std::filesystem::path certPath(const std::filesystem::path& data_dir);
std::filesystem::path caPath(const std::filesystem::path& data_dir);

/// Replaces the agent's key, certificate and CA bundle on disk so that a crash at any point leaves
/// a usable pair (new files are written as *.next, then renamed; loadIdentity finishes the job).
Result<void> saveRenewed(const std::filesystem::path& data_dir, const Identity& id);

/// Loads the identity when the agent has enrolled before; an error when it has not.
Result<Identity> loadIdentity(const std::filesystem::path& data_dir, AgentState& state);

/// Outcome of one enrollment attempt: fatal errors are not retried (a wrong pin, a refused token).
struct EnrollError {
  std::string message;
  bool fatal = false;
};

/**
 * Enrolls once (kubeadm join's trust model): makes the key, fetches the hub's CA over TLS without
 * trusting it, checks it against cfg.ca_cert_hash, then sends a CSR with the bootstrap token over a
 * connection verified with that CA, and stores the certificate. Retries unreachable hubs with
 * backoff until `stop` is set; a refusal is final.
 */
Result<Identity> enroll(const AgentConfig& cfg, AgentState& state, const std::atomic<bool>& stop);

}  // namespace kflex::agent
