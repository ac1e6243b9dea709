// SPDX-License-Identifier: Apache-2.0
#include "cli/contexts.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>

#include "cli/hub_client.hpp"
#include "cli/kubeconfig_file.hpp"
#include "shared/common/util.hpp"
#include "shared/config/kubeconfig.hpp"
#include "shared/config/yaml_json.hpp"
#include "shared/model/control_plane_types.hpp"
#include "shared/model/resource.hpp"
#include "shared/protocol/tunnel.hpp"

namespace kflex::cli {
namespace {

constexpr const char* kNoHub =
    "no hub context is remembered; run 'kflex init --hub-kubeconfig FILE', or switch to the hub's context "
    "(kubectl config use-context CTX) and run 'kflex ctx --set-current-for-hosting'";

std::string readyText(const Json& cp) {
  for (const auto& c : cp.value("status", Json::object()).value("conditions", Json::array())) {
    if (c.value("type", "") == "Ready") {
      return " (Ready=" + c.value("status", "") + " " + c.value("reason", "") +
             (c.value("message", "").empty() ? "" : ": " + c.value("message", "")) + ")";
    }
  }
  return "";
}

Result<config::Kubeconfig> secretKubeconfig(HubClient& hub, const std::string& name, const Json& cp);

// The tunnel token in a proxy-url `https://tunnel:TOKEN@HOST:PORT` ("" when it has none).
std::string tokenOf(const std::string& proxy_url) {
  auto at = proxy_url.find('@');
  auto user = proxy_url.find("://tunnel:");
  if (at == std::string::npos || user == std::string::npos || user > at) {
    return "";
  }
  std::string token = proxy_url.substr(user + 10, at - user - 10);
  return model::isBootstrapToken(token) ? token : "";
}

// A tunnel token for control plane `name`: `reuse` when the hub still has it for `name`, else a
// new one (a BootstrapToken with usage tunnel, stored hashed; `kflex token delete ID` revokes it).
Result<std::string> tunnelToken(HubClient& hub, const std::string& name, const std::string& reuse) {
  if (!reuse.empty()) {
    auto tok = hub.get(std::string(kTokensPath) + "/" + reuse.substr(0, 6));
    if (tok) {
      const Json spec = tok->value("spec", Json::object());
      auto listed = [&](const char* field, const std::string& v) {
        const Json list = spec.value(field, Json::array());
        return list.is_array() && std::find(list.begin(), list.end(), Json(v)) != list.end();
      };
      if (listed("usages", "tunnel") && listed("controlPlanes", name) && !spec.contains("expiration")) {
        return reuse;
      }
    }
  }
  std::string who = std::getenv("USER") != nullptr ? std::getenv("USER") : "";
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) == 0 && host[0] != '\0') {
    who += std::string(who.empty() ? "" : "@") + host;
  }
  auto token = createBootstrapToken(hub, {{"usages", {"tunnel"}},
                                          {"controlPlanes", {name}},
                                          {"description", "kflex ctx " + name + (who.empty() ? "" : " (" + who + ")")}});
  if (!token) {
    return fail("cannot make a tunnel token for " + name + ": " + token.error().message +
                " (or reach the control plane directly: kflex ctx " + name + " --direct)");
  }
  return token;
}

// Why control plane `cp` cannot be reached through the hub ("" when it can).
std::string noTunnel(HubClient& hub, const Json& cp) {
  const std::string name = cp.value("metadata", Json::object()).value("name", "");
  if (!model::servedByAgent(cp)) {
    return "control plane " + name + " is not served by an agent";
  }
  std::string agent = cp.value("status", Json::object()).value("agent", "");
  if (agent.empty()) {
    return "control plane " + name + " is not placed on an agent yet";
  }
  auto a = hub.get(std::string(kAgentsPath) + "/" + agent);
  if (!a) {
    return "agent " + agent + " cannot be read: " + a.error().message;
  }
  if (a->value("status", Json::object()).value("tunnelVersion", 0) < 1) {
    return "agent " + agent + " runs a kflex-agent without the tunnel (upgrade it)";
  }
  return "";
}

// The kubeconfig of control plane `name` as the hub hands it out (status.secretRef), routed
// through the hub's tunnel unless `direct` (or the tunnel cannot reach it: a note on err says
// why); `existing_proxy` is the proxy-url of the user's context of that name, whose token is
// reused. hub_context gets the context the hub was reached through.
Result<config::Kubeconfig> controlPlaneKubeconfig(const Globals& g, const std::string& name, bool direct,
                                                  const std::string& existing_proxy, std::string& hub_context,
                                                  std::ostream& err) {
  auto hub = HubClient::connect(g.kubeconfig, g.context);
  if (!hub) {
    return hub.error();
  }
  auto cp = hub.value()->get(std::string(kControlPlanesPath) + "/" + name);
  if (!cp) {
    return cp.error();
  }
  hub_context = hub.value()->context();
  auto kc = secretKubeconfig(*hub.value(), name, cp.value());
  if (!kc || direct) {
    return kc;
  }
  if (std::string why = noTunnel(*hub.value(), cp.value()); !why.empty()) {
    err << "Note: " << why << "; the context reaches " << name << " directly, at its own address.\n";
    return kc;
  }
  auto hub_kc = config::Kubeconfig::load(config::defaultKubeconfigPath(g.kubeconfig));
  auto hub_access = hub_kc ? hub_kc->access(hub_context) : Result<config::ClusterAccess>(hub_kc.error());
  if (!hub_access || hub_access->ca_pem.empty()) {
    err << "Note: the hub's context names no certificate authority, which the tunnel needs; the context reaches "
        << name << " directly, at its own address.\n";
    return kc;
  }
  if (auto direct_access = kc->access(); direct_access && direct_access->ca_pem.empty()) {
    err << "Note: the kubeconfig of " << name << " names no certificate authority (its server's is a public "
        << "one), and the tunnel needs one to trust the hub beside it; the context reaches " << name
        << " directly, at its own address.\n";
    return kc;
  }
  auto token = tunnelToken(*hub.value(), name, tokenOf(existing_proxy));
  if (!token) {
    return token.error();
  }
  // An adopted cluster keeps its server (its certificate names that); the others are reached by
  // their tunnel name.
  const bool adopted = model::isAdopted(cp.value()["spec"].value("type", ""));
  if (auto r = kc->routeThroughHub(kc->currentContext(), adopted ? "" : protocol::tunnel::tunnelHost(name),
                                   hub.value()->server(), token.value(), hub_access->ca_pem);
      !r) {
    return fail("the kubeconfig of " + name + " cannot be routed through the hub: " + r.error().message);
  }
  return kc;
}

// The kubeconfig in control plane `name`'s secret (status.secretRef).
Result<config::Kubeconfig> secretKubeconfig(HubClient& hub, const std::string& name, const Json& cp) {
  Json ref = cp.value("status", Json::object()).value("secretRef", Json::object());
  if (!ref.is_object() || ref.value("name", "").empty()) {
    return fail("control plane " + name + " has no kubeconfig yet" + readyText(cp) +
                "; it is written once the control plane runs (see `kflex list`)");
  }
  std::string key = ref.value("key", ref.value("inClusterKey", ""));
  auto secret = hub.get("/api/v1/namespaces/" + ref.value("namespace", "") + "/secrets/" + ref.value("name", ""));
  if (!secret) {
    return fail("cannot read the kubeconfig secret " + ref.value("namespace", "") + "/" + ref.value("name", "") + ": " +
                secret.error().message);
  }
  // The hub serves the key routed through its tunnel, and the agent's own under KEY-direct: the
  // CLI routes it itself (with the user's own hub address and a token of the user's).
  const Json data = secret->value("data", Json::object());
  if (data.contains(key + "-direct")) {
    key += "-direct";
  }
  auto text = base64Decode(data.value(key, ""));
  if (!text || text->empty()) {
    return fail("the kubeconfig secret of " + name + " has no key \"" + key + "\"");
  }
  return config::Kubeconfig::parse(text.value(), "the kubeconfig of " + name);
}

// Merges control plane name's context (fresh from the hub) into file as context name and makes it
// current. Errors say what to do; notes go to err.
Result<void> switchTo(const Globals& g, KubeconfigFile& file, const std::string& name, bool overwrite, bool direct,
                      std::ostream& err) {
  if (file.hasContext(name) && file.hubContext() == name) {
    return fail("context \"" + name + "\" is the hub's own context; rename it first (kflex ctx rename " + name +
                " OTHER)");
  }
  const bool existed = file.hasContext(name);
  if (existed && !overwrite && !file.managedByKflex(name)) {
    return fail("context \"" + name + "\" in " + file.path().string() +
                " was not written by kflex; pass --overwrite-existing-context to replace it, or rename it first "
                "(kflex ctx rename " + name + " OTHER)");
  }
  std::string hub_context;
  std::string existing_proxy;
  if (existed && file.managedByKflex(name)) {
    if (auto mine = config::Kubeconfig::parse(config::jsonToYaml(file.doc())); mine) {
      existing_proxy = mine->proxyUrl(name);
    }
  }
  auto cp_kc = controlPlaneKubeconfig(g, name, direct, existing_proxy, hub_context, err);
  if (!cp_kc) {
    if (existed && !overwrite) {
      err << "warning: " << cp_kc.error().message << "; using the context already in " << file.path().string() << "\n";
      file.setCurrentContext(name);
      return {};
    }
    return cp_kc.error();
  }
  // Remember the context that reached the hub, so that a bare `kflex ctx` has a way back.
  if (file.hubContext().empty() && !hub_context.empty() && file.hasContext(hub_context)) {
    file.rememberHub(hub_context);
    err << "Remembered context \"" << hub_context << "\" as the hub's ('kflex ctx' switches back to it).\n";
  }
  if (overwrite) {
    file.removeContext(name);
  }
  config::Kubeconfig merged;
  if (auto parsed = config::Kubeconfig::parse(config::jsonToYaml(file.doc())); parsed) {
    merged = std::move(parsed.value());
  }
  if (auto r = merged.mergeContext(cp_kc.value(), cp_kc->currentContext(), name); !r) {
    return fail("the kubeconfig of " + name + " is unusable: " + r.error().message);
  }
  KubeconfigFile updated(file.path(), merged.doc());
  updated.markControlPlane(name, name);
  updated.setCurrentContext(name);
  file = std::move(updated);
  return {};
}

}  // namespace

int cmdCtx(const Globals& g, const std::string& name, const CtxFlags& flags, std::ostream& out, std::ostream& err) {
  auto path = config::defaultKubeconfigPath(g.kubeconfig);
  auto file = KubeconfigFile::load(path);
  if (!file) {
    err << "kflex ctx: " << file.error().message << "\n";
    return 1;
  }
  if (flags.set_current_for_hosting) {
    std::string current = file->currentContext();
    if (current.empty() || !file->hasContext(current)) {
      err << "kflex ctx: " << path.string() << " has no current context to remember as the hub's; switch to the "
          << "hub's context first (kubectl config use-context CTX)\n";
      return 1;
    }
    file->rememberHub(current);
    out << "Context \"" << current << "\" is remembered as the hub's.\n";
  }
  std::string target = name;
  if (!name.empty()) {
    if (auto r = switchTo(g, file.value(), name, flags.overwrite_existing, flags.direct, err); !r) {
      err << "kflex ctx: " << r.error().message << "\n";
      return 1;
    }
  } else {
    target = file->hubContext();
    if (target.empty()) {
      err << "kflex ctx: " << kNoHub << "\n";
      return 1;
    }
    file->setCurrentContext(target);
  }
  if (auto r = file->save(); !r) {
    err << "kflex ctx: " << r.error().message << "\n";
    return 1;
  }
  out << "Switched to context \"" << target << "\".\n";
  return 0;
}

int cmdCtxList(const Globals& g, const std::string& output, std::ostream& out, std::ostream& err) {
  if (output != "table" && output != "name") {
    err << "kflex ctx list: -o must be name (or nothing, for the table)\n";
    return 2;
  }
  auto file = KubeconfigFile::load(config::defaultKubeconfigPath(g.kubeconfig));
  if (!file) {
    err << "kflex ctx list: " << file.error().message << "\n";
    return 1;
  }
  auto names = file->contextNames();
  if (output == "name") {
    for (const auto& n : names) {
      out << n << "\n";
    }
    return 0;
  }
  if (names.empty()) {
    out << "No contexts in " << file->path().string() << ". Add the hub's with 'kflex init --hub-kubeconfig FILE'.\n";
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {{"CURRENT", "NAME", "KFLEX", "CONTROLPLANE"}};
  std::string hub = file->hubContext();
  for (const auto& n : names) {
    std::string cp = file->controlPlaneOf(n);
    std::string kind = n == hub ? "hub" : file->managedByKflex(n) ? "controlplane" : "";
    if (kind == "controlplane" && cp.empty()) {
      cp = n;
    }
    rows.push_back({n == file->currentContext() ? "*" : "", n, kind, cp});
  }
  printTable(rows, out);
  return 0;
}

int cmdCtxGet(const Globals& g, std::ostream& out, std::ostream& err) {
  auto file = KubeconfigFile::load(config::defaultKubeconfigPath(g.kubeconfig));
  if (!file) {
    err << "kflex ctx get: " << file.error().message << "\n";
    return 1;
  }
  if (file->currentContext().empty()) {
    err << "kflex ctx get: " << file->path().string()
        << " has no current context; switch with 'kflex ctx NAME' or back to the hub with 'kflex ctx'\n";
    return 1;
  }
  out << file->currentContext() << "\n";
  return 0;
}

int cmdCtxRename(const Globals& g, const std::string& from, const std::string& to, bool switch_to, std::ostream& out,
                 std::ostream& err) {
  auto file = KubeconfigFile::load(config::defaultKubeconfigPath(g.kubeconfig));
  if (!file) {
    err << "kflex ctx rename: " << file.error().message << "\n";
    return 1;
  }
  if (to.empty()) {
    err << "kflex ctx rename: the new name must not be empty\n";
    return 2;
  }
  if (auto r = file->renameContext(from, to); !r) {
    err << "kflex ctx rename: " << r.error().message << "\n";
    return 1;
  }
  if (switch_to) {
    file->setCurrentContext(to);
  }
  if (auto r = file->save(); !r) {
    err << "kflex ctx rename: " << r.error().message << "\n";
    return 1;
  }
  out << "Context \"" << from << "\" renamed to \"" << to << "\"" << (switch_to ? " (now current)" : "") << ".\n";
  return 0;
}

int cmdCtxDelete(const Globals& g, const std::string& ctx, bool force, std::ostream& out, std::ostream& err) {
  auto file = KubeconfigFile::load(config::defaultKubeconfigPath(g.kubeconfig));
  if (!file) {
    err << "kflex ctx delete: " << file.error().message << "\n";
    return 1;
  }
  if (!file->hasContext(ctx)) {
    err << "kflex ctx delete: there is no context \"" << ctx << "\" in " << file->path().string()
        << " (see 'kflex ctx list')\n";
    return 1;
  }
  const std::string hub = file->hubContext();
  if (!force && ctx == hub) {
    err << "kflex ctx delete: \"" << ctx << "\" is the hub's context, which kflex reaches the hub through; pass "
        << "--force to delete it anyway ('kflex init' adds it again)\n";
    return 1;
  }
  if (!force && !file->managedByKflex(ctx)) {
    err << "kflex ctx delete: context \"" << ctx << "\" was not written by kflex; pass --force to delete it anyway\n";
    return 1;
  }
  const bool was_current = file->currentContext() == ctx;
  file->removeContext(ctx);
  out << "Context \"" << ctx << "\" deleted from " << file->path().string() << ".\n";
  if (was_current && !hub.empty() && hub != ctx) {
    file->setCurrentContext(hub);
    out << "Switched to context \"" << hub << "\".\n";
  }
  if (auto r = file->save(); !r) {
    err << "kflex ctx delete: " << r.error().message << "\n";
    return 1;
  }
  return 0;
}

int cmdConfigSetHosting(const Globals& g, const std::string& ctx, std::ostream& out, std::ostream& err) {
  auto file = KubeconfigFile::load(config::defaultKubeconfigPath(g.kubeconfig));
  if (!file) {
    err << "kflex config set-hosting: " << file.error().message << "\n";
    return 1;
  }
  if (!file->hasContext(ctx)) {
    err << "kflex config set-hosting: there is no context \"" << ctx << "\" in " << file->path().string()
        << "; add the hub's with 'kflex init --hub-kubeconfig FILE'\n";
    return 1;
  }
  file->rememberHub(ctx);
  if (auto r = file->save(); !r) {
    err << "kflex config set-hosting: " << r.error().message << "\n";
    return 1;
  }
  out << "The hub's context in " << file->path().string() << " is now \"" << ctx << "\".\n";
  return 0;
}

int cmdConfigDiagnose(const Globals& g, const std::string& output, std::ostream& out, std::ostream& err) {
  if (output != "json") {
    err << "kflex config diagnose: -o must be json\n";
    return 2;
  }
  auto file = KubeconfigFile::load(config::defaultKubeconfigPath(g.kubeconfig));
  if (!file) {
    err << "kflex config diagnose: " << file.error().message << "\n";
    return 1;
  }
  Json result;
  std::string hub = file->hubContext();
  if (!file->hasHubExtension()) {
    result = {{"status", "critical"},
              {"message", "kflex's extension is not in the kubeconfig: no hub context is remembered; run 'kflex init "
                          "--hub-kubeconfig FILE' or 'kflex config set-hosting CTX'"}};
  } else if (hub.empty()) {
    result = {{"status", "warning"},
              {"message", "kflex's extension names a hub context that is not in the kubeconfig; run 'kflex config "
                          "set-hosting CTX' with the hub's context"}};
  } else {
    result = {{"status", "ok"}, {"message", "the hub's context is \"" + hub + "\""}};
  }
  Json data = {{"kubeconfig", file->path().string()}};
  if (!hub.empty()) {
    data["hubContext"] = hub;
  }
  Json managed = Json::array();
  for (const auto& n : file->contextNames()) {
    if (n != hub && file->managedByKflex(n)) {
      std::string cp = file->controlPlaneOf(n);
      managed.push_back({{"context", n}, {"controlPlane", cp.empty() ? n : cp}});
    }
  }
  data["controlPlaneContexts"] = managed;
  result["data"] = data;
  out << result.dump(2) << "\n";
  return result["status"] == "critical" ? 1 : 0;
}

void switchAfterCreate(const Globals& g, const std::string& cmd, const std::string& name, std::ostream& out,
                       std::ostream& err) {
  auto path = config::defaultKubeconfigPath(g.kubeconfig);
  if (isHubAdminKubeconfig(path)) {
    out << "The current context stays: " << path.string()
        << " is the hub's own admin.kubeconfig, which the hub rewrites on every start. Use your own kubeconfig "
        << "('kflex init --hub-kubeconfig " << path.string() << " --kubeconfig ~/.kube/config'), then 'kflex ctx "
        << name << "'.\n";
    return;
  }
  auto file = KubeconfigFile::load(path);
  if (!file) {
    err << "warning: not switching to " << name << ": " << file.error().message << "\n";
    return;
  }
  if (auto r = switchTo(g, file.value(), name, false, false, err); !r) {
    err << "warning: kflex " << cmd << " does not switch to " << name << ": " << r.error().message << "\n";
    return;
  }
  if (auto r = file->save(); !r) {
    err << "warning: not switching to " << name << ": " << r.error().message << "\n";
    return;
  }
  out << "Switched to context \"" << name << "\" ('kflex ctx' switches back to the hub).\n";
}

void forgetControlPlane(const Globals& g, const std::string& name, std::ostream& out, std::ostream& err) {
  auto file = KubeconfigFile::load(config::defaultKubeconfigPath(g.kubeconfig));
  if (!file) {
    return;  // (The hub was reached through it, so this is rare; there is nothing to clean then.)
  }
  auto contexts = file->contextsOfControlPlane(name);
  if (contexts.empty()) {
    return;
  }
  bool was_current = false;
  for (const auto& c : contexts) {
    was_current = was_current || file->currentContext() == c;
    file->removeContext(c);
  }
  std::string hub = file->hubContext();
  if (was_current && !hub.empty()) {
    file->setCurrentContext(hub);
  }
  if (auto r = file->save(); !r) {
    err << "warning: cannot remove the contexts of " << name << " from " << file->path().string() << ": "
        << r.error().message << "\n";
    return;
  }
  for (const auto& c : contexts) {
    out << "Context \"" << c << "\" removed from " << file->path().string() << ".\n";
  }
  if (was_current && !hub.empty()) {
    out << "Switched to context \"" << hub << "\".\n";
  }
}

}  // namespace kflex::cli
