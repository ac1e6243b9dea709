// SPDX-License-Identifier: Apache-2.0
// The user's kubeconfig as kflex edits it: contexts with their clusters and users, the hub context
// kflex remembers, and which contexts kflex wrote for which control plane.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "shared/common/result.hpp"

namespace kflex::cli {

/// A kubeconfig file (clientcmd v1) opened for editing. kflex's own data lives in extensions named
/// `kflex`: `preferences.extensions` holds {hubContext, initialContext} (the hub's context, where a
/// bare `kflex ctx` goes back to), and a context written for a control plane carries
/// {controlPlane: NAME} in its own `context.extensions`. Everything else is kept as it is.
class KubeconfigFile {
 public:
  /// Reads path; a missing file is an empty kubeconfig when allow_missing.
  static Result<KubeconfigFile> load(const std::filesystem::path& path, bool allow_missing = false);
  /// A document (such as config::Kubeconfig::doc() after a merge) to be saved at path.
  KubeconfigFile(std::filesystem::path path, nlohmann::json doc);
  /// Writes the file atomically with mode 0600 (its folder is created when missing).
  Result<void> save() const;
  const std::filesystem::path& path() const { return path_; }
  const nlohmann::json& doc() const { return doc_; }

  /// The context names in file order.
  std::vector<std::string> contextNames() const;
  bool hasContext(const std::string& name) const;
  std::string currentContext() const;
  void setCurrentContext(const std::string& name);

  /// The hub context kflex remembers; "" when none is, or when it is no longer in the file.
  std::string hubContext() const;
  /// Remembers ctx as the hub context (and the context a bare `kflex ctx` returns to).
  void rememberHub(const std::string& ctx);
  /// True when some hub context is recorded at all (even one no longer in the file).
  bool hasHubExtension() const;

  /// The control plane context ctx was written for; "" for any other context.
  std::string controlPlaneOf(const std::string& ctx) const;
  /// Records that context ctx was written for control plane cp.
  void markControlPlane(const std::string& ctx, const std::string& cp);
  /// True when kflex wrote ctx: the hub context, a marked control plane context, or one named as
  /// kflex (and upstream) name them (cluster CTX-cluster, user CTX-admin).
  bool managedByKflex(const std::string& ctx) const;
  /// The contexts kflex wrote for control plane cp (marked so, or named cp in kflex's naming).
  std::vector<std::string> contextsOfControlPlane(const std::string& cp) const;

  /// Removes context ctx, and its cluster and user when no other context uses them; a removed
  /// current context leaves current-context empty. False when there was no such context.
  bool removeContext(const std::string& ctx);
  /// Renames context from to to; a cluster FROM-cluster and user FROM-admin that only it uses
  /// become TO-cluster and TO-admin. The current context and the remembered hub follow.
  Result<void> renameContext(const std::string& from, const std::string& to);

 private:
  nlohmann::json kflexExtension() const;
  void setKflexExtension(const nlohmann::json& value);
  const nlohmann::json* contextBody(const std::string& ctx) const;
  std::filesystem::path path_;
  nlohmann::json doc_;
};

/// True when path is a hub's own admin.kubeconfig: the same file as hub_kubeconfig (when given),
/// or a file named admin.kubeconfig in a hub data directory (beside hub.db or pki/ca.crt). The hub
/// rewrites that file on every start, so nothing kflex merges into it lasts.
bool isHubAdminKubeconfig(const std::filesystem::path& path, const std::filesystem::path& hub_kubeconfig = {});

}  // namespace kflex::cli
