// SPDX-License-Identifier: Apache-2.0
#include "cli/commands.hpp"

#include <iomanip>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include <CLI/CLI.hpp>

#include "cli/cli_common.hpp"
#include "cli/fleet.hpp"
#include "cli/hub_client.hpp"
#include "shared/common/time.hpp"
#include "shared/common/util.hpp"
#include "shared/common/version.hpp"
#include "shared/kube/hooks.hpp"
#include "shared/config/kubeconfig.hpp"
#include "shared/config/yaml_json.hpp"
#include "shared/model/conditions.hpp"
#include "shared/model/resource.hpp"

namespace kflex::cli {
namespace {

using model::conditionStatus;
constexpr const char* kExtension = "kflex";
constexpr const char* kHubContext = "kflex-hub";
const std::set<std::string> kTypes = {"k8s", "k3s", "vcluster", "host", "external"};

const Json* condition(const Json& obj, const std::string& type) {
  if (!obj.contains("status") || !obj["status"].contains("conditions") || !obj["status"]["conditions"].is_array()) {
    return nullptr;
  }
  for (const auto& c : obj["status"]["conditions"]) {
    if (c.value("type", "") == type) {
      return &c;
    }
  }
  return nullptr;
}

}  // namespace

void printTable(const std::vector<std::vector<std::string>>& rows, std::ostream& out) {
  if (rows.empty()) {
    return;
  }
  std::vector<size_t> widths(rows[0].size(), 0);
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], r[i].size());
    }
  }
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); ++i) {
      out << std::left << std::setw(int(i + 1 < r.size() ? widths[i] + 3 : 0)) << r[i];
    }
    out << "\n";
  }
}

namespace {

int cmdInit(const Globals& g, const std::string& hub_kubeconfig, std::ostream& out, std::ostream& err) {
  auto src = config::Kubeconfig::load(hub_kubeconfig);
  if (!src) {
    err << "kflex init: " << src.error().message << "\n";
    return 1;
  }
  std::string from = src->currentContext();
  if (from.empty()) {
    err << "kflex init: " << hub_kubeconfig << " has no current-context\n";
    return 1;
  }
  auto path = config::defaultKubeconfigPath(g.kubeconfig);
  auto dst = config::Kubeconfig::load(path, true);
  if (!dst) {
    err << "kflex init: " << dst.error().message << "\n";
    return 1;
  }
  if (auto r = dst->mergeContext(src.value(), from, kHubContext); !r) {
    err << "kflex init: " << r.error().message << "\n";
    return 1;
  }
  // Check that the hub answers with these credentials before saving anything.
  auto access = dst->access(kHubContext);
  if (!access) {
    err << "kflex init: " << access.error().message << "\n";
    return 1;
  }
  auto http = net_client::HttpsClient::create(access.value());
  if (!http) {
    err << "kflex init: " << http.error().message << "\n";
    return 1;
  }
  auto probe = http.value()->request(http::verb::get, "/apis/tenancy.kflex.kubestellar.org/v1alpha1");
  if (!probe || probe->status != 200) {
    err << "kflex init: the hub at " << access->server << " did not answer: "
        << (probe ? "HTTP " + std::to_string(probe->status) : probe.error().message) << "\n";
    return 1;
  }
  dst->setExtension(kExtension, Json{{"hubContext", kHubContext}, {"initialContext", kHubContext}});
  dst->setCurrentContext(kHubContext);
  if (auto r = dst->save(path); !r) {
    err << "kflex init: " << r.error().message << "\n";
    return 1;
  }
  out << "Hub " << access->server << " added to " << path.string() << " as context \"" << kHubContext
      << "\" (now current).\n";
  return 0;
}

int cmdVersion(const Globals& g, std::ostream& out) {
  out << "Client Version: " << kVersion << "\n";
  auto hub = HubClient::connect(g.kubeconfig, g.context);
  if (!hub) {
    out << "Hub Version: unknown (" << hub.error().message << ")\n";
    return 0;
  }
  auto v = hub.value()->get("/version");
  if (v) {
    out << "Hub Version: " << v->value("kflexVersion", "?") << " (API " << v->value("gitVersion", "?") << ")\n";
  } else {
    out << "Hub Version: unknown (" << v.error().message << ")\n";
  }
  return 0;
}

Result<void> waitFor(HubClient& hub, const std::string& name, const std::string& start_rv,
                     std::chrono::milliseconds timeout, bool for_delete, std::ostream& out) {
  std::string path = std::string(kControlPlanesPath) + "?watch=1&fieldSelector=metadata.name%3D" + name +
                     "&allowWatchBookmarks=true&resourceVersion=" + start_rv +
                     "&timeoutSeconds=" + std::to_string(std::max<long>(1, timeout.count() / 1000 + 1));
  std::string last_reason;
  bool done = false;
  auto r = hub.watch(
      path,
      [&](const Json& ev) {
        std::string type = ev.value("type", "");
        if (type == "ERROR") {
          return false;
        }
        if (type == "DELETED") {
          done = for_delete;
          return !for_delete;
        }
        if (for_delete || type == "BOOKMARK") {
          return true;
        }
        const Json& obj = ev["object"];
        if (const Json* ready = condition(obj, "Ready")) {
          std::string reason = ready->value("reason", "");
          if (ready->value("status", "") == "True") {
            done = true;
            return false;
          }
          if (reason != last_reason) {
            out << "Waiting for control plane " << name << ": " << reason
                << (ready->value("message", "").empty() ? "" : " (" + ready->value("message", "") + ")") << "\n";
            last_reason = reason;
          }
        }
        return true;
      },
      timeout);
  if (done) {
    return {};
  }
  if (!r) {
    return r.error();
  }
  return fail("the watch ended before the control plane was " + std::string(for_delete ? "gone" : "ready"));
}

// Creates a ControlPlane and, with a timeout, waits until it is Ready. Returns the exit code.
int submitControlPlane(HubClient& hub, const std::string& cmd, const Json& cp,
                       const std::chrono::milliseconds* wait_timeout, const std::string& timeout_text,
                       std::ostream& out, std::ostream& err) {
  std::string name = cp["metadata"].value("name", "");
  auto created = hub.post(kControlPlanesPath, cp);
  if (!created) {
    if (hub.lastStatus() == 409) {
      err << "kflex " << cmd << ": control plane \"" << name << "\" already exists; choose another name or "
          << "'kflex delete " << name << "' first\n";
    } else {
      err << "kflex " << cmd << ": " << created.error().message << "\n";
    }
    return 1;
  }
  out << "control plane " << name << " (type " << cp["spec"].value("type", "") << ") created\n";
  if (wait_timeout == nullptr) {
    return 0;
  }
  out << "Waiting for control plane " << name << " to be ready (timeout " << timeout_text << ")...\n";
  std::string rv = created->at("metadata").value("resourceVersion", "");
  if (auto r = waitFor(hub, name, rv, *wait_timeout, false, out); !r) {
    err << "kflex " << cmd << ": control plane " << name << " is not ready: " << r.error().message
        << "; see 'kflex get " << name << " -o yaml'\n";
    return 1;
  }
  out << "control plane " << name << " is ready\n";
  return 0;
}

// Reads -p/--postcreate-hook and -e/--set into spec.postCreateHooks; false (and a message) when
// they are malformed.
bool addHook(const std::string& cmd, const std::string& hook, const std::vector<std::string>& sets, Json& spec,
             std::ostream& err) {
  Json vars = Json::object();
  for (const auto& s : sets) {
    auto eq = s.find('=');
    if (eq == std::string::npos || eq == 0) {
      err << "kflex " << cmd << ": --set \"" << s << "\" must be name=value\n";
      return false;
    }
    vars[s.substr(0, eq)] = s.substr(eq + 1);
  }
  if (!hook.empty() && !isDns1123Subdomain(hook)) {
    err << "kflex " << cmd << ": \"" << hook << "\" is not a valid PostCreateHook name\n";
    return false;
  }
  if (hook.empty() && !vars.empty()) {
    err << "kflex " << cmd << ": --set needs --postcreate-hook (the variables are for that hook)\n";
    return false;
  }
  if (!hook.empty()) {
    Json use = {{"hookName", hook}};
    if (!vars.empty()) {
      use["vars"] = vars;
    }
    spec["postCreateHooks"] = Json::array({use});
  }
  return true;
}

struct PlacementFlags {
  std::string agent;
  std::string selector;
};

int cmdCreate(const Globals& g, const std::string& name, const std::string& type, const std::string& backend,
              const std::string& hook, const std::vector<std::string>& sets, const PlacementFlags& placement, bool wait,
              const std::string& timeout, std::ostream& out, std::ostream& err) {
  if (!isDns1123Label(name)) {
    err << "kflex create: \"" << name << "\" is not a valid name: use lower-case letters, digits and '-', "
        << "starting and ending with a letter or digit, at most 63 characters\n";
    return 2;
  }
  if (type == "ocm") {
    err << "kflex create: type ocm is deprecated upstream and not supported by kflex; use k8s\n";
    return 2;
  }
  if (kTypes.count(type) == 0) {
    err << "kflex create: unknown type \"" << type << "\": use one of k8s, k3s, vcluster, host, external\n";
    return 2;
  }
  if (backend != "shared" && backend != "dedicated") {
    err << "kflex create: unknown backend \"" << backend << "\": use shared or dedicated\n";
    return 2;
  }
  if (type == "external") {
    err << "kflex create: control planes of type external are existing clusters: adopt one with 'kflex adopt "
        << name << " --adopted-kubeconfig FILE'\n";
    return 2;
  }
  Json spec = {{"type", type}, {"backend", backend}};
  if (!addHook("create", hook, sets, spec, err)) {
    return 2;
  }
  auto wait_timeout = parseDuration(timeout);
  if (!wait_timeout) {
    err << "kflex create: --timeout \"" << timeout << "\" is not a duration such as 90s or 5m\n";
    return 2;
  }
  auto hub = HubClient::connect(g.kubeconfig, g.context);
  if (!hub) {
    err << "kflex create: " << hub.error().message << "\n";
    return 1;
  }
  Json meta = {{"name", name}};
  if (!placement.agent.empty() || !placement.selector.empty()) {
    if (type != "k8s" && type != "k3s" && type != "vcluster") {
      err << "kflex create: --agent and --agent-selector apply to k8s, k3s and vcluster control planes only\n";
      return 2;
    }
    Json ann = Json::object();
    if (!placement.agent.empty()) {
      ann[model::kAgentAnnotation] = placement.agent;
    }
    if (!placement.selector.empty()) {
      ann[model::kAgentSelectorAnnotation] = placement.selector;
    }
    meta["annotations"] = ann;
  }
  Json cp = {{"apiVersion", "tenancy.kflex.kubestellar.org/v1alpha1"}, {"kind", "ControlPlane"},
             {"metadata", meta}, {"spec", spec}};
  return submitControlPlane(*hub.value(), "create", cp, wait ? &*wait_timeout : nullptr, timeout, out, err);
}

struct AdoptFlags {
  std::string kubeconfig;
  std::string context;
  std::string url_override;
  int64_t expiration_seconds = 31536000;
  std::string hook;
  std::vector<std::string> sets;
  bool wait = true;
  std::string timeout = "2m";
  std::string agent;
};

// Upstream's rules for --url-override: http(s), a host, no user info, query or fragment, and not
// a loopback address (the URL is used from elsewhere).
Result<void> checkUrlOverride(const std::string& url) {
  if (url.rfind("https://", 0) != 0) {
    return fail("it must be an https:// URL");
  }
  std::string rest = url.substr(8);
  if (rest.find_first_of("?#") != std::string::npos) {
    return fail("it must not have a query or fragment");
  }
  std::string authority = rest.substr(0, rest.find('/'));
  if (authority.find('@') != std::string::npos) {
    return fail("it must not carry user information");
  }
  std::string host;
  std::string port;
  if (auto r = net_client::splitHttpsUrl(url, host, port); !r) {
    return r.error();
  }
  if (host == "localhost" || host == "127.0.0.1" || host == "::1") {
    return fail("it must not be a loopback address: the hub and other hosts use it to reach the cluster");
  }
  return {};
}

int cmdAdopt(const Globals& g, const std::string& name, const AdoptFlags& f, std::ostream& out, std::ostream& err) {
  if (!isDns1123Label(name)) {
    err << "kflex adopt: \"" << name << "\" is not a valid name: use lower-case letters, digits and '-', "
        << "starting and ending with a letter or digit, at most 63 characters\n";
    return 2;
  }
  if (f.expiration_seconds < 600) {
    err << "kflex adopt: --expiration-seconds must be at least 600 (Kubernetes issues no shorter tokens)\n";
    return 2;
  }
  if (!f.url_override.empty()) {
    if (auto r = checkUrlOverride(f.url_override); !r) {
      err << "kflex adopt: --url-override \"" << f.url_override << "\": " << r.error().message << "\n";
      return 2;
    }
  }
  Json spec = {{"type", "external"}, {"tokenExpirationSeconds", f.expiration_seconds}};
  if (!addHook("adopt", f.hook, f.sets, spec, err)) {
    return 2;
  }
  auto wait_timeout = parseDuration(f.timeout);
  if (!wait_timeout) {
    err << "kflex adopt: --timeout \"" << f.timeout << "\" is not a duration such as 90s or 5m\n";
    return 2;
  }
  // The adopted cluster's credentials, inline and alone (upstream: the current kubeconfig by default).
  auto path = config::defaultKubeconfigPath(f.kubeconfig);
  auto adopted = config::Kubeconfig::load(path);
  if (!adopted) {
    err << "kflex adopt: " << adopted.error().message << "\n";
    return 1;
  }
  auto access = adopted->access(f.context);
  if (!access) {
    err << "kflex adopt: " << path.string() << ": " << access.error().message << "\n";
    return 1;
  }
  if (!f.url_override.empty()) {
    access->server = f.url_override;
  }
  config::Kubeconfig bootstrap;
  bootstrap.setAccess(name, access.value());
  bootstrap.setCurrentContext(name);
  auto hub = HubClient::connect(g.kubeconfig, g.context);
  if (!hub) {
    err << "kflex adopt: " << hub.error().message << "\n";
    return 1;
  }
  // As upstream: secret <name>-bootstrap in kubeflex-system, key kubeconfig-incluster; the hub
  // uses it once and deletes it.
  std::string secret = name + "-bootstrap";
  std::string secrets_path = "/api/v1/namespaces/kubeflex-system/secrets";
  Json secret_obj = {{"apiVersion", "v1"},
                     {"kind", "Secret"},
                     {"metadata", {{"name", secret}, {"namespace", "kubeflex-system"}}},
                     {"type", "Opaque"},
                     {"data", {{"kubeconfig-incluster", base64Encode(bootstrap.toYaml())}}}};
  if (auto existing = hub.value()->get(std::string(kControlPlanesPath) + "/" + name); existing) {
    err << "kflex adopt: control plane \"" << name << "\" already exists; choose another name or 'kflex delete "
        << name << "' first\n";
    return 1;
  }
  hub.value()->remove(secrets_path + "/" + secret);  // a leftover of an adoption that failed
  if (auto r = hub.value()->post(secrets_path, secret_obj); !r) {
    err << "kflex adopt: cannot store the bootstrap kubeconfig on the hub: " << r.error().message << "\n";
    return 1;
  }
  spec["bootstrapSecretRef"] = {{"namespace", "kubeflex-system"}, {"name", secret}, {"inClusterKey", "kubeconfig-incluster"}};
  Json meta = {{"name", name}};
  if (!f.agent.empty()) {
    meta["annotations"] = {{model::kAgentAnnotation, f.agent}};
  }
  Json cp = {{"apiVersion", "tenancy.kflex.kubestellar.org/v1alpha1"}, {"kind", "ControlPlane"},
             {"metadata", meta}, {"spec", spec}};
  std::chrono::milliseconds wait_ms = std::chrono::duration_cast<std::chrono::milliseconds>(*wait_timeout);
  int rc = submitControlPlane(*hub.value(), "adopt", cp, f.wait ? &wait_ms : nullptr, f.timeout, out, err);
  if (rc != 0 && !hub.value()->get(std::string(kControlPlanesPath) + "/" + name)) {
    hub.value()->remove(secrets_path + "/" + secret);  // nothing will use it: do not leave credentials behind
  }
  return rc;
}

int cmdList(const Globals& g, std::ostream& out, std::ostream& err) {
  auto hub = HubClient::connect(g.kubeconfig, g.context);
  if (!hub) {
    err << "kflex list: " << hub.error().message << "\n";
    return 1;
  }
  auto list = hub.value()->get(kControlPlanesPath);
  if (!list) {
    err << "kflex list: " << list.error().message << "\n";
    return 1;
  }
  const Json& items = (*list)["items"];
  if (items.empty()) {
    out << "No control planes. Create one with 'kflex create NAME --type k3s'.\n";
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {{"NAME", "TYPE", "SYNCED", "READY", "AGE"}};
  auto now = std::chrono::system_clock::now();
  for (const auto& cp : items) {
    auto created = parseTime(cp["metadata"].value("creationTimestamp", ""));
    std::string age = created ? humanDuration(std::chrono::duration_cast<std::chrono::seconds>(now - *created)) : "";
    rows.push_back({cp["metadata"].value("name", ""), cp["spec"].value("type", ""), conditionStatus(cp, "Synced"),
                    conditionStatus(cp, "Ready"), age});
  }
  printTable(rows, out);
  return 0;
}

int cmdGet(const Globals& g, const std::string& name, const std::string& output, std::ostream& out, std::ostream& err) {
  if (output != "yaml" && output != "json") {
    err << "kflex get: -o must be yaml or json\n";
    return 2;
  }
  auto hub = HubClient::connect(g.kubeconfig, g.context);
  if (!hub) {
    err << "kflex get: " << hub.error().message << "\n";
    return 1;
  }
  auto cp = hub.value()->get(std::string(kControlPlanesPath) + "/" + name);
  if (!cp) {
    err << "kflex get: " << cp.error().message << "\n";
    return 1;
  }
  cp->at("metadata").erase("managedFields");
  out << (output == "json" ? cp->dump(2) + "\n" : config::jsonToYaml(cp.value()));
  return 0;
}

int cmdDelete(const Globals& g, const std::string& name, bool wait, bool force, const std::string& timeout,
              std::ostream& out, std::ostream& err) {
  auto hub = HubClient::connect(g.kubeconfig, g.context);
  if (!hub) {
    err << "kflex delete: " << hub.error().message << "\n";
    return 1;
  }
  std::string path = std::string(kControlPlanesPath) + "/" + name;
  auto r = hub.value()->remove(path);
  if (!r) {
    err << "kflex delete: " << r.error().message << "\n";
    return 1;
  }
  bool pending = r->contains("metadata") && r->at("metadata").contains("deletionTimestamp");
  if (pending && force) {
    // Forget it without the agent's confirmation (an agent that is gone for good).
    Json meta = r->at("metadata");
    Json remaining = Json::array();
    bool ours = false;
    for (const auto& f : meta.value("finalizers", Json::array())) {
      if (f == model::kControlPlaneFinalizer) {
        ours = true;
      } else {
        remaining.push_back(f);
      }
    }
    if (ours) {
      std::string agent = r->value("status", Json::object()).value("agent", "");
      err << "warning: forgetting control plane " << name << " without " << (agent.empty() ? "its agent" : "agent " + agent)
          << "'s confirmation: its processes and data may remain on that host (the agent removes them if it comes "
             "back)\n";
      auto p = hub.value()->mergePatch(path, Json{{"metadata", {{"finalizers", remaining},
                                                                {"resourceVersion", meta.value("resourceVersion", "")}}}});
      if (!p && hub.value()->lastStatus() != 404) {
        err << "kflex delete: " << p.error().message << "\n";
        return 1;
      }
      // (Removing the last finalizer deletes it; anything else still holding it shows here.)
      auto still = hub.value()->get(path);
      pending = still.has_value();
      if (still) {
        r = still;
      }
    }
  }
  if (!pending || !wait) {
    out << "control plane " << name << (pending ? " is being deleted\n" : " deleted\n");
    return 0;
  }
  out << "Waiting for control plane " << name << " to be deleted...\n";
  std::string rv = r->at("metadata").value("resourceVersion", "");
  auto wait_timeout = parseDuration(timeout);
  if (!wait_timeout) {
    err << "kflex delete: --timeout \"" << timeout << "\" is not a duration such as 90s or 5m\n";
    return 2;
  }
  if (auto w = waitFor(*hub.value(), name, rv, *wait_timeout, true, out); !w) {
    err << "kflex delete: control plane " << name << " is still being deleted: " << w.error().message << "\n";
    return 1;
  }
  out << "control plane " << name << " deleted\n";
  return 0;
}

// The kubeconfig of control plane `name` as the hub hands it out (status.secretRef).
Result<config::Kubeconfig> controlPlaneKubeconfig(const Globals& g, const std::string& name) {
  auto hub = HubClient::connect(g.kubeconfig, g.context);
  if (!hub) {
    return hub.error();
  }
  auto cp = hub.value()->get(std::string(kControlPlanesPath) + "/" + name);
  if (!cp) {
    return cp.error();
  }
  Json ref = cp->value("status", Json::object()).value("secretRef", Json::object());
  if (!ref.is_object() || ref.value("name", "").empty()) {
    std::string why;
    if (const Json* ready = condition(cp.value(), "Ready")) {
      why = " (Ready=" + ready->value("status", "") + " " + ready->value("reason", "") +
            (ready->value("message", "").empty() ? "" : ": " + ready->value("message", "")) + ")";
    }
    return fail("control plane " + name + " has no kubeconfig yet" + why +
                "; it is written once the control plane runs (see `kflex list`)");
  }
  std::string key = ref.value("key", ref.value("inClusterKey", ""));
  auto secret = hub.value()->get("/api/v1/namespaces/" + ref.value("namespace", "") + "/secrets/" + ref.value("name", ""));
  if (!secret) {
    return fail("cannot read the kubeconfig secret " + ref.value("namespace", "") + "/" + ref.value("name", "") + ": " +
                secret.error().message);
  }
  auto text = base64Decode(secret->value("data", Json::object()).value(key, ""));
  if (!text || text->empty()) {
    return fail("the kubeconfig secret of " + name + " has no key \"" + key + "\"");
  }
  return config::Kubeconfig::parse(text.value(), "the kubeconfig of " + name);
}

int cmdCtx(const Globals& g, const std::string& name, std::ostream& out, std::ostream& err) {
  auto path = config::defaultKubeconfigPath(g.kubeconfig);
  auto kc = config::Kubeconfig::load(path);
  if (!kc) {
    err << "kflex ctx: " << kc.error().message << "\n";
    return 1;
  }
  if (!name.empty()) {
    // Fresh from the hub each time (an endpoint or certificate may have changed); the context
    // already merged serves when the hub cannot be reached.
    auto cp_kc = controlPlaneKubeconfig(g, name);
    if (cp_kc) {
      if (auto r = kc->mergeContext(cp_kc.value(), cp_kc->currentContext(), name); !r) {
        err << "kflex ctx: the kubeconfig of " << name << " is unusable: " << r.error().message << "\n";
        return 1;
      }
    } else if (kc->hasContext(name)) {
      err << "warning: " << cp_kc.error().message << "; using the context already in " << path.string() << "\n";
    } else {
      err << "kflex ctx: " << cp_kc.error().message << "\n";
      return 1;
    }
  }
  std::string target = name;
  if (target.empty()) {
    Json ext = kc->extension(kExtension);
    if (!ext.is_object() || !ext.contains("initialContext")) {
      err << "kflex ctx: no initial context is remembered; run 'kflex init --hub-kubeconfig FILE' first\n";
      return 1;
    }
    target = ext["initialContext"].get<std::string>();
  }
  if (!kc->hasContext(target)) {
    err << "kflex ctx: context \"" << target << "\" is not in " << path.string()
        << "; control plane kubeconfigs are written once the control plane is ready\n";
    return 1;
  }
  kc->setCurrentContext(target);
  if (auto r = kc->save(path); !r) {
    err << "kflex ctx: " << r.error().message << "\n";
    return 1;
  }
  out << "Switched to context \"" << target << "\".\n";
  return 0;
}

int cmdHookRerun(const Globals& g, const std::string& name, const std::string& hook, std::ostream& out,
                 std::ostream& err) {
  auto hub = HubClient::connect(g.kubeconfig, g.context);
  if (!hub) {
    err << "kflex hook rerun: " << hub.error().message << "\n";
    return 1;
  }
  std::string path = std::string(kControlPlanesPath) + "/" + name;
  auto cp = hub.value()->get(path);
  if (!cp) {
    err << "kflex hook rerun: " << cp.error().message << "\n";
    return 1;
  }
  std::string used;
  bool uses = false;
  for (const auto& u : kube::hookUses(cp.value())) {
    used += (used.empty() ? "" : ", ") + u.hook;
    uses = uses || u.hook == hook;
  }
  if (!uses) {
    err << "kflex hook rerun: control plane " << name << " does not use PostCreateHook " << hook << " ("
        << (used.empty() ? "it uses none" : "it uses: " + used)
        << "); add it to spec.postCreateHooks with kubectl edit cp " << name << "\n";
    return 1;
  }
  const Json ann = cp->at("metadata").value("annotations", Json::object());
  Json tokens = Json::parse(ann.value(kube::kHookRerunAnnotation, std::string("{}")), nullptr, false);
  if (!tokens.is_object()) {
    tokens = Json::object();
  }
  tokens[hook] = formatTimeMillis(std::chrono::system_clock::now());
  Json patch = {{"metadata", {{"annotations", {{kube::kHookRerunAnnotation, tokens.dump()}}}}}};
  if (auto r = hub.value()->mergePatch(path, patch); !r) {
    err << "kflex hook rerun: " << r.error().message << "\n";
    return 1;
  }
  out << "PostCreateHook " << hook << " runs again on control plane " << name << ".\n"
      << "Follow it with: kubectl get cp " << name
      << " -o jsonpath='{.status.conditions[?(@.type==\"PostCreateHooks\")].message}'\n";
  return 0;
}

}  // namespace

int runCli(int argc, char** argv, std::ostream& out, std::ostream& err) {
  CLI::App app{"kflex: create, list, delete and switch between dedicated Kubernetes control planes\n"
               "served by a kflex hub."};
  app.set_version_flag("--version", std::string("kflex ") + kVersion);
  app.require_subcommand(1);
  Globals g;
  app.add_option("--kubeconfig", g.kubeconfig, "Kubeconfig to use [$KUBECONFIG, then ~/.kube/config]");
  app.add_option("--context", g.context, "Kubeconfig context of the hub [kflex-hub when present, else current]");

  auto* init = app.add_subcommand("init", "Add a hub to your kubeconfig as context kflex-hub and remember it");
  std::string hub_kubeconfig;
  init->add_option("--hub-kubeconfig", hub_kubeconfig, "The hub's admin.kubeconfig (DATA_DIR/admin.kubeconfig)")
      ->required();

  auto* version = app.add_subcommand("version", "Print the client and hub versions");

  auto* create = app.add_subcommand("create", "Create a control plane");
  std::string name;
  std::string type = "k8s";
  std::string backend = "shared";
  std::string hook;
  std::vector<std::string> sets;
  bool wait = true;
  std::string timeout = "5m";
  create->add_option("NAME", name, "Control plane name (DNS-1123 label)")->required();
  create->add_option("-t,--type", type, "k8s, k3s, vcluster, host or external")->capture_default_str();
  create->add_option("-b,--backend-type", backend, "shared or dedicated")->capture_default_str();
  create->add_option("-p,--postcreate-hook", hook, "PostCreateHook to run after creation");
  create->add_option("-e,--set", sets, "Hook variable name=value (repeatable)");
  create->add_flag("--wait,!--no-wait", wait,
                   "Wait until the control plane is Ready, showing progress (--no-wait returns at once)")
      ->capture_default_str();
  create->add_option("--timeout", timeout, "How long --wait waits (90s, 5m, 1h)")->capture_default_str();
  PlacementFlags placement;
  create->add_option("--agent", placement.agent, "Place it on this agent (k8s, k3s, vcluster)");
  create->add_option("--agent-selector", placement.selector,
                     "Place it on the best-fitting Ready agent whose labels match (zone=eu,tier!=test)");

  auto* adopt = app.add_subcommand("adopt", "Adopt an existing cluster as a control plane of type external");
  AdoptFlags adopt_flags;
  adopt->add_option("NAME", name, "Control plane name (DNS-1123 label)")->required();
  adopt->add_option("-a,--adopted-kubeconfig", adopt_flags.kubeconfig,
                    "Kubeconfig of the cluster to adopt [$KUBECONFIG, then ~/.kube/config]");
  adopt->add_option("-c,--adopted-context", adopt_flags.context, "Context of that kubeconfig [its current context]");
  adopt->add_option("-u,--url-override", adopt_flags.url_override,
                    "API server URL to use instead of the kubeconfig's (https, not a loopback address)");
  adopt->add_option("-x,--expiration-seconds,--adopted-token-expiration-seconds", adopt_flags.expiration_seconds,
                    "Lifetime of the service-account token made in the adopted cluster")
      ->capture_default_str();
  adopt->add_option("--agent", adopt_flags.agent,
                    "Let this agent adopt and probe the cluster (one only that edge host can reach)");
  adopt->add_option("-p,--postcreate-hook", adopt_flags.hook, "PostCreateHook to run after adoption");
  adopt->add_option("-e,--set", adopt_flags.sets, "Hook variable name=value (repeatable)");
  adopt->add_flag("--wait,!--no-wait", adopt_flags.wait, "Wait until the adopted cluster is Ready")->capture_default_str();
  adopt->add_option("--timeout", adopt_flags.timeout, "How long --wait waits")->capture_default_str();
  adopt->footer(
      "The kubeconfig is sent to the hub once (secret NAME-bootstrap in kubeflex-system); the hub uses it to\n"
      "create service account kube-system/kubeflex bound to cluster-admin and a token for it, keeps only\n"
      "a kubeconfig holding that token, and deletes the bootstrap secret. With --agent, that agent does this\n"
      "and probes the cluster instead of the hub (the kubeconfig travels over its mutual-TLS link).");

  auto* list = app.add_subcommand("list", "List control planes");
  auto* get = app.add_subcommand("get", "Show one control plane");
  std::string output = "yaml";
  get->add_option("NAME", name, "Control plane name")->required();
  get->add_option("-o,--output", output, "yaml or json")->capture_default_str();

  auto* del = app.add_subcommand("delete", "Delete a control plane");
  bool del_wait = true;
  del->add_option("NAME", name, "Control plane name")->required();
  del->add_flag("--wait,!--no-wait", del_wait, "Wait until it is gone")->capture_default_str();
  bool del_force = false;
  del->add_flag("--force", del_force,
                "Do not wait for the agent to confirm that it stopped the control plane and removed its data "
                "(for an agent that is gone for good)");
  del->add_option("--timeout", timeout, "How long --wait waits")->capture_default_str();

  auto* ctx = app.add_subcommand("ctx", "Switch kubeconfig context to a control plane, or back to the hub with no NAME");
  std::string ctx_name;
  ctx->add_option("NAME", ctx_name, "Control plane name");

  auto* hook_cmd = app.add_subcommand("hook", "PostCreateHooks of control planes");
  hook_cmd->require_subcommand(1);
  auto* rerun = hook_cmd->add_subcommand(
      "rerun", "Run a PostCreateHook again on a control plane (after the hook changed, or after it failed)");
  std::string hook_name;
  rerun->add_option("CONTROLPLANE", name, "Control plane name")->required();
  rerun->add_option("HOOK", hook_name, "PostCreateHook name (one the control plane uses)")->required();
  rerun->footer(
      "A hook runs once per control plane; editing the PostCreateHook later does not apply it again.\n"
      "This records a new rerun request on the ControlPlane (annotation kflex.kubestellar.org/rerun-hooks);\n"
      "whoever runs the hooks (its agent, or the hub) applies the hook as it is now and reports in status.");

  FleetCommands fleet(app);

  app.footer("Hub connection: the kubeconfig context kflex-hub written by 'kflex init'.");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e, out, err);
    return rc == 0 ? 0 : 2;
  }
  if (init->parsed()) {
    return cmdInit(g, hub_kubeconfig, out, err);
  }
  if (version->parsed()) {
    return cmdVersion(g, out);
  }
  if (create->parsed()) {
    return cmdCreate(g, name, type, backend, hook, sets, placement, wait, timeout, out, err);
  }
  if (adopt->parsed()) {
    return cmdAdopt(g, name, adopt_flags, out, err);
  }
  if (list->parsed()) {
    return cmdList(g, out, err);
  }
  if (get->parsed()) {
    return cmdGet(g, name, output, out, err);
  }
  if (del->parsed()) {
    return cmdDelete(g, name, del_wait, del_force, timeout, out, err);
  }
  if (rerun->parsed()) {
    return cmdHookRerun(g, name, hook_name, out, err);
  }
  if (ctx->parsed()) {
    return cmdCtx(g, ctx_name, out, err);
  }
  if (fleet.parsed()) {
    return fleet.run(g, out, err);
  }
  return 2;
}

}  // namespace kflex::cli
