// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "shared/common/result.hpp"

namespace kflex::config {

/// The entry of a kubeconfig list (clusters, users, contexts, extensions) whose "name" is
/// `name`, or nullptr (also when `list` is not a list).
nlohmann::json* findNamed(nlohmann::json& list, const std::string& name);
const nlohmann::json* findNamed(const nlohmann::json& list, const std::string& name);

/// Credentials and endpoint of one kubeconfig context, with file references resolved.
struct ClusterAccess {
  std::string context;
  std::string server;  ///< https://host:port
  std::string ca_pem;
  std::string client_cert_pem;
  std::string client_key_pem;
  std::string token;
  bool insecure_skip_verify = false;
  std::string proxy_url;        ///< The cluster's proxy-url ("" for none).
  std::string tls_server_name;  ///< The cluster's tls-server-name ("" for none).
};

/// A kubeconfig file (clientcmd v1) as a JSON document, with helpers to read and merge it.
class Kubeconfig {
 public:
  /// An empty kubeconfig.
  Kubeconfig();
  /// Reads a file; a missing file is an empty kubeconfig when allow_missing.
  static Result<Kubeconfig> load(const std::filesystem::path& path, bool allow_missing = false);
  /// Reads kubeconfig text (file references resolve against the working directory); `what`
  /// names it in errors.
  static Result<Kubeconfig> parse(const std::string& text, const std::string& what = "kubeconfig");
  /// Writes the file atomically with mode 0600.
  Result<void> save(const std::filesystem::path& path) const;
  /// The YAML text.
  std::string toYaml() const;

  /// Adds or replaces a cluster, a user and a context binding them.
  void setContext(const std::string& context, const std::string& cluster, const std::string& user,
                  const nlohmann::json& cluster_entry, const nlohmann::json& user_entry);
  /// Copies context `from_context` of other (with its cluster and user) in as `as_context`.
  Result<void> mergeContext(const Kubeconfig& other, const std::string& from_context, const std::string& as_context);
  /// Adds or replaces context `context` (cluster CONTEXT-cluster, user CONTEXT-admin) with the
  /// endpoint and credentials inline.
  void setAccess(const std::string& context, const ClusterAccess& access);
  /// Sends context `context`'s connections through an HTTPS proxy (the hub's tunnel,
  /// docs/dev/tunnel.md): its cluster's server becomes `server`, `proxy-url` is set, and
  /// `proxy_ca_pem` joins the cluster's CA (kubectl verifies the proxy with the same CAs).
  Result<void> routeThroughProxy(const std::string& context, const std::string& server, const std::string& proxy_url,
                                 const std::string& proxy_ca_pem);
  /// Routes context `context` to control plane host `tunnel_host` (NAME.controlplanes.kflex, at
  /// the port its server names, 443 when none as for any https URL; "" keeps the server, as for
  /// an adopted cluster) through the hub at `hub_url` (https://HOST:PORT) with tunnel token
  /// `token`; `hub_ca_pem` verifies the hub.
  Result<void> routeThroughHub(const std::string& context, const std::string& tunnel_host, const std::string& hub_url,
                               const std::string& token, const std::string& hub_ca_pem);
  /// The proxy-url of context `context`'s cluster ("" when none).
  std::string proxyUrl(const std::string& context) const;
  bool hasContext(const std::string& name) const;
  std::string currentContext() const;
  void setCurrentContext(const std::string& name);
  /// Reads an extension value stored under preferences.extensions (name -> JSON).
  nlohmann::json extension(const std::string& name) const;
  void setExtension(const std::string& name, const nlohmann::json& value);
  /// Resolves a context (empty: the current one) to an endpoint and credentials.
  Result<ClusterAccess> access(const std::string& context = "") const;
  const nlohmann::json& doc() const { return doc_; }

 private:
  nlohmann::json doc_;
  std::filesystem::path dir_;  // base for relative file references
};

/// The kubeconfig path kubectl would use: explicit, else $KUBECONFIG's first entry, else ~/.kube/config.
std::filesystem::path defaultKubeconfigPath(const std::string& explicit_path);

}  // namespace kflex::config
