// SPDX-License-Identifier: Apache-2.0
// kflex ctx ... and kflex config ...: the kubeconfig contexts of the hub and of control planes.
#pragma once

#include <iosfwd>
#include <string>

#include "cli/cli_common.hpp"

namespace kflex::cli {

/// Flags of `kflex ctx [NAME]`.
struct CtxFlags {
  bool overwrite_existing = false;       ///< -o: replace an existing context NAME, whoever wrote it.
  bool set_current_for_hosting = false;  ///< -c: remember the current context as the hub's.
  bool direct = false;                   ///< --direct: the control plane's own address, not the hub's tunnel.
};

/// `kflex ctx [NAME]`: switch to control plane NAME's context (fetched from the hub), or back to the
/// hub's. Returns the exit code.
int cmdCtx(const Globals& g, const std::string& name, const CtxFlags& flags, std::ostream& out, std::ostream& err);
/// `kflex ctx list [-o name]`.
int cmdCtxList(const Globals& g, const std::string& output, std::ostream& out, std::ostream& err);
/// `kflex ctx get`: the current context.
int cmdCtxGet(const Globals& g, std::ostream& out, std::ostream& err);
/// `kflex ctx rename FROM TO [--switch]`.
int cmdCtxRename(const Globals& g, const std::string& from, const std::string& to, bool switch_to, std::ostream& out,
                 std::ostream& err);
/// `kflex ctx delete CTX [--force]`.
int cmdCtxDelete(const Globals& g, const std::string& ctx, bool force, std::ostream& out, std::ostream& err);
/// `kflex config set-hosting CTX`.
int cmdConfigSetHosting(const Globals& g, const std::string& ctx, std::ostream& out, std::ostream& err);
/// `kflex config diagnose [-o json]`.
int cmdConfigDiagnose(const Globals& g, const std::string& output, std::ostream& out, std::ostream& err);

/// After `kflex create`/`adopt` saw the control plane ready: switch to its context as `kflex ctx
/// NAME` does, or say why not (the hub's own admin.kubeconfig, a context of the same name that kflex
/// did not write, no kubeconfig from the hub). Only warns: the control plane is there either way.
void switchAfterCreate(const Globals& g, const std::string& cmd, const std::string& name, std::ostream& out,
                       std::ostream& err);
/// After `kflex delete`: removes the contexts kflex wrote for control plane name (with their
/// clusters and users) and, when one of them was current, switches back to the hub's context.
void forgetControlPlane(const Globals& g, const std::string& name, std::ostream& out, std::ostream& err);

}  // namespace kflex::cli
