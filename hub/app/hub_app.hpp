// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "hub/app/hub_config.hpp"
#include "shared/common/result.hpp"
#include "shared/common/time.hpp"
#include "shared/store/postgres.hpp"
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
/// The same, the CA held in the datastore when the hub shares it with other replicas
/// (secrets_key_file): every replica uses the rotated CA once restarted.
Result<std::string> rotateCa(const HubConfig& cfg, std::chrono::seconds overlap, const Clock& clock);
/// Runs `step` on DATA_DIR/pki; with secrets_key_file, the files every replica shares come from
/// the datastore first and what `step` changes of them goes back (SharedPki).
Result<void> withSharedPki(const HubConfig& cfg, const std::function<Result<void>()>& step);
/// The SANs the serving certificate needs for a listen host plus the extra ones asked for.
std::vector<std::string> servingSans(const std::string& host, const std::vector<std::string>& extra);
/// Writes DATA_DIR/admin.kubeconfig (0600) for https://host:port with the admin certificate.
Result<void> writeAdminKubeconfig(const std::filesystem::path& data_dir, const HubPki& pki, const std::string& host,
                                  uint16_t port);
/// The PostgreSQL database cfg.datastore names, with the password read from its file.
Result<store::PostgresTarget> datastoreTarget(const HubConfig& cfg);
/// Runs the hub until SIGTERM/SIGINT. Returns the process exit code.
int runHub(const HubConfig& cfg);

/// Exit codes of kflex-hub.
inline constexpr int kExitOk = 0;
inline constexpr int kExitConfig = 2;   ///< Bad flags or configuration.
inline constexpr int kExitRuntime = 1;  ///< Could not start or failed while running.

}  // namespace kflex::hub
