// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "shared/common/result.hpp"

namespace kflex::agent {

/// Everything kflex-agent is told: defaults, then /etc/kflex/agent.yaml, then flags.
struct AgentConfig {
  /// Hub URLs, tried in order (YAML `hub_urls`, or one `hub`). The hub's list from enrollment is added.
  std::vector<std::string> hub_urls;
  /// Bootstrap token for the first enrollment only (YAML `token`). Never logged.
  std::string token;
  /// File holding the token (YAML `token_file`), so it does not show in the process list.
  std::string token_file;
  /// sha256:<hex> of the hub CA's public key (YAML `ca_cert_hash`), from `kflex token create`.
  std::string ca_cert_hash;
  /// State: agent.db, pki/, cp/ (YAML `data_dir`). Default /var/lib/kflex-agent.
  std::filesystem::path data_dir = "/var/lib/kflex-agent";
  /// Agent name (YAML `name`). Default: this host's name.
  std::string name;
  /// Labels set at enrollment (YAML `labels`, a mapping).
  std::map<std::string, std::string> labels;
  /// debug, info, warn or error (YAML `log_level`).
  std::string log_level = "info";
  /// Where k3s, kine, kube-apiserver, kube-controller-manager and vcluster are (YAML `bin_dir`).
  std::filesystem::path bin_dir = "/usr/local/bin";
  /// Per-program paths that override bin_dir (YAML `programs`, e.g. {k3s: /opt/k3s/k3s}).
  std::map<std::string, std::string> programs;
  /// The address control planes are reached at (YAML `advertise_address`); default: the address
  /// this host reaches the hub from.
  std::string advertise_address;
  /// A network namespace per control plane (YAML `isolate_control_planes`, default true); off, or
  /// without root, control planes share the host's network and their fixed ports.
  bool isolate = true;
  /// The shared PostgreSQL of k8s control planes (YAML `postgres_dsn`): postgres://USER@HOST:PORT/postgres?sslmode=...,
  /// without a password; each control plane gets a database of its own on it.
  std::string postgres_dsn;
  /// A file holding that user's password (YAML `postgres_password_file`); never on a command line.
  std::string postgres_password_file;
  /// Kubeconfig of a Kubernetes cluster near this host, where vcluster control planes run
  /// (YAML `cluster_kubeconfig`); none: this agent cannot run them.
  std::string cluster_kubeconfig;
  /// Its context (YAML `cluster_context`); default: its current context.
  std::string cluster_context;
  /// Where that cluster's node ports are reached (YAML `cluster_node_address`); default: the host
  /// of its API server URL.
  std::string cluster_node_address;
  /// The first k3s control plane made on this host keeps k3s's node agent (kubelet), the others
  /// run with --disable-agent (YAML `k3s_node_agent`, default false: none runs it).
  bool k3s_node_agent = false;
  /// Memory and CPU limits per control plane type (YAML `control_plane_limits`, e.g.
  /// {k3s: {cpu: "2", memory: 1Gi}}), enforced with cgroup v2 where the host has it.
  std::map<std::string, std::map<std::string, std::string>> control_plane_limits;
  /// What this host offers control planes (YAML `capacity`, keys cpu and memory, Kubernetes
  /// quantities), instead of what it has: less to keep room for other work, more to overcommit.
  std::map<std::string, std::string> capacity;
};

/// Reads agent.yaml into cfg; every problem as "key (file:line): message".
Result<void> loadAgentConfig(const std::filesystem::path& path, AgentConfig& cfg);
/// Parses "k=v,k2=v2" into labels.
Result<void> parseLabels(const std::string& text, std::map<std::string, std::string>& labels);
/// Checks values; lists every problem.
Result<void> validateAgentConfig(const AgentConfig& cfg);
/// Makes every path (data_dir, bin_dir, programs, token_file, postgres_password_file,
/// cluster_kubeconfig) absolute against the working directory, once, at start: the agent hands
/// them to programs that run in other directories (k3s runs in DATA_DIR/cp/NAME).
void makePathsAbsolute(AgentConfig& cfg);
/// This host's name, lower-cased, usable as an agent name when it is a DNS-1123 label.
std::string defaultAgentName();

}  // namespace kflex::agent
