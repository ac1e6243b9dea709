// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "shared/common/result.hpp"

namespace kflex::hub {

/// Everything kflex-hub is told, from defaults, then /etc/kflex/hub.yaml, then flags.
struct HubConfig {
  /// State directory: hub.db, pki/, admin.kubeconfig. YAML `data_dir`. Default /var/lib/kflex-hub.
  std::filesystem::path data_dir = "/var/lib/kflex-hub";
  /// Where objects and events are stored: empty = SQLite in data_dir/hub.db; a PostgreSQL URI
  /// (postgres://USER@HOST:PORT/DB?sslmode=..., no password in it) = that database. YAML `datastore`.
  std::string datastore;
  /// A file holding the datastore's password (first line). YAML `datastore_password_file`.
  std::filesystem::path datastore_password_file;
  /// With a datastore: a file holding the key (base64, 32 bytes) that seals the hub's CA and keys
  /// in the database, so every replica shares them. YAML `secrets_key_file`.
  std::filesystem::path secrets_key_file;
  /// Listen address HOST:PORT (IPv6 as [::1]:6443). YAML `listen`. Default 127.0.0.1:6443.
  std::string listen = "127.0.0.1:6443";
  /// Extra DNS names or IPs for the serving certificate. YAML `tls_sans`.
  std::vector<std::string> tls_sans;
  /// Most concurrent connections (API clients and agent links). YAML `max_connections`. Default 16384.
  size_t max_connections = 16384;
  /// Connections from one address still in their TLS handshake; a newer one closes the oldest.
  /// YAML `max_handshakes_per_source`. Default 256 (raise it for many agents behind one NAT).
  size_t max_handshakes_per_source = 256;
  /// Events kept for watch resume. YAML `event_retention`. Default 10000.
  size_t event_retention = 10000;
  /// Worker threads for the network; 0 = number of cores. YAML `threads`.
  size_t threads = 0;
  /// debug, info, warn or error. YAML `log_level`.
  std::string log_level = "info";
  /// Seconds to finish requests on SIGTERM. YAML `shutdown_grace_seconds`. Default 15.
  std::chrono::seconds shutdown_grace{15};
  /// Seconds from accept to the end of a client's TLS handshake. YAML `handshake_timeout_seconds`.
  /// Default 10.
  std::chrono::seconds handshake_timeout{10};
  /// Seconds a client may take to send request headers. YAML `header_timeout_seconds`. Default 10.
  std::chrono::seconds header_timeout{10};
  /// Seconds a client may take to send a request body. YAML `body_timeout_seconds`. Default 60.
  std::chrono::seconds body_timeout{60};
  /// Seconds a watch's client may take to accept one event before the watch is closed. YAML
  /// `stream_write_timeout_seconds`. Default 30.
  std::chrono::seconds stream_write_timeout{30};

  /// URLs agents use to reach the hub, told to them at enrollment (first preferred). YAML
  /// `hub_urls`. Default: the listen address (then the first tls_san names are not used).
  std::vector<std::string> hub_urls;
  /// With replicas (a datastore): how the other replicas reach this one, https://HOST:PORT, for
  /// tunnel streams to agents linked here. YAML `peer_url`, flag --peer-url. Default: the listen
  /// address, or this host's name when listening on all addresses.
  std::string peer_url;
  /// Agents renew their lease this often. YAML `agent_lease_renew_seconds`. Default 10.
  std::chrono::seconds agent_lease_renew{10};
  /// An agent without a renewal for this long goes Ready=False. YAML `agent_lease_duration_seconds`. Default 50.
  std::chrono::seconds agent_lease_duration{50};
  /// A control plane being deleted whose agent has been unreachable (lease expired) this long is
  /// released without it. YAML `agent_lost_release_seconds`. Default 3600.
  std::chrono::seconds agent_lost_release{3600};
  /// Lifetime of agent certificates, renewed at 2/3. YAML `agent_cert_validity` (a duration: 720h). Default 30 days.
  std::chrono::seconds agent_cert_validity{30 * 24 * 3600};
  /// An expired agent certificate may still connect (only to renew) this long after it expired.
  /// YAML `agent_expired_grace` (a duration: 168h). Default 7 days.
  std::chrono::seconds agent_expired_grace{7 * 24 * 3600};
  /// One control plane's status is written at most this often; an agent's reports in between
  /// wait, and the latest wins. YAML `agent_status_interval_ms`. Default 1000.
  std::chrono::milliseconds agent_status_interval{1000};
  /// One agent's status writes a second, on average. YAML `agent_status_writes_per_second`. Default 10.
  size_t agent_status_writes_per_second = 10;
  /// One agent's status writes at once after a quiet time; at most half of event_retention. YAML
  /// `agent_status_burst`. Default 50.
  size_t agent_status_burst = 50;

  /// Kubeconfig of the cluster the hub runs on, for control planes of type host. YAML
  /// `hosting_kubeconfig`. Default none (type host then reports that it is not configured).
  std::filesystem::path hosting_kubeconfig;
  /// Context of hosting_kubeconfig to use; empty = its current context. YAML `hosting_context`.
  std::string hosting_context;

  /// The host part of listen.
  std::string host() const;
  /// The port part of listen.
  uint16_t port() const;
};

/// Reads a hub.yaml into cfg: every problem is listed as "key (file:line): message".
Result<void> loadHubConfig(const std::filesystem::path& path, HubConfig& cfg);
/// Checks values (listen syntax, ranges). Lists every problem.
Result<void> validateHubConfig(const HubConfig& cfg);
/// Makes data_dir and hosting_kubeconfig absolute against the working directory, once, at start.
void makePathsAbsolute(HubConfig& cfg);

}  // namespace kflex::hub
