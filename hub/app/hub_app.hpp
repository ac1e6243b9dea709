// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "hub/app/hub_config.hpp"
#include "shared/common/result.hpp"
#include "shared/common/time.hpp"
#include "shared/tls/pki.hpp"

namespace kflex::hub {

/// The hub's certificates, as found or made in DATA_DIR/pki.
struct HubPki {
  tls::KeyPair ca;
  tls::KeyPair server;
  tls::KeyPair admin;
  /// During a CA rotation's overlap: the previous CA (still trusted), the current CA's
  /// certificate signed by it (served after the serving certificate, so that clients that know
  /// only the previous CA still verify the hub), and the end of the overlap.
  std::string previous_ca_pem;
  std::string cross_pem;
  TimePoint previous_until{};
  /// The CAs clients must trust: the current one first.
  std::string bundle() const { return ca.cert_pem + previous_ca_pem; }
};

/// Loads DATA_DIR/pki, creating the CA, serving and admin certificates on first start and
/// re-issuing the serving certificate when it lacks a SAN it needs or nears expiry.
Result<HubPki> ensurePki(const std::filesystem::path& data_dir, const std::vector<std::string>& sans,
                         const Clock& clock);
/// Replaces the hub's CA with a new one (`kflex-hub ca rotate`): the previous CA stays trusted
/// for `overlap`, agents receive the new bundle over their links and renew their certificates
/// from the new CA, and the hub serves a cross-signed certificate so nothing that knows only
/// the previous CA is locked out. Takes effect when the hub (re)starts. Returns what was done.
Result<std::string> rotateCa(const std::filesystem::path& data_dir, std::chrono::seconds overlap, const Clock& clock);
/// The SANs the serving certificate needs for a listen host plus the extra ones asked for.
std::vector<std::string> servingSans(const std::string& host, const std::vector<std::string>& extra);
/// Writes DATA_DIR/admin.kubeconfig (0600) for https://host:port with the admin certificate.
Result<void> writeAdminKubeconfig(const std::filesystem::path& data_dir, const HubPki& pki, const std::string& host,
                                  uint16_t port);
/// Runs the hub until SIGTERM/SIGINT. Returns the process exit code.
int runHub(const HubConfig& cfg);

/// Exit codes of kflex-hub.
inline constexpr int kExitOk = 0;
inline constexpr int kExitConfig = 2;   ///< Bad flags or configuration.
inline constexpr int kExitRuntime = 1;  ///< Could not start or failed while running.

}  // namespace kflex::hub
