// SPDX-License-Identifier: Apache-2.0
#include "cli/commands.hpp"

#include <iomanip>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include <CLI/CLI.hpp>

#include "cli/cli_common.hpp"
#include "cli/completion.hpp"
#include "cli/condition_tracker.hpp"
#include "cli/contexts.hpp"
#include "cli/fleet.hpp"
#include "cli/hub_client.hpp"
#include "cli/kubeconfig_file.hpp"
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

// The types `kflex create` makes (an adopted one comes from `kflex adopt`).
std::vector<std::string> createdTypes() {
  return model::typeNames([](const model::ControlPlaneType& t) { return !t.adopted; });
}

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
  if (isHubAdminKubeconfig(path, hub_kubeconfig)) {
    err << "kflex init: the kubeconfig to add the hub to, " << path.string() << ", is the hub's own admin.kubeconfig; "
        << "the hub rewrites it on every start, so kflex's contexts would be lost. Add the hub to your own "
        << "kubeconfig instead: unset KUBECONFIG (kflex then uses ~/.kube/config) or pass --kubeconfig FILE, e.g. "
        << "'kflex init --hub-kubeconfig " << hub_kubeconfig << " --kubeconfig ~/.kube/config'\n";
    return 1;
  }
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

// Waits until control plane `name` is gone.
Result<void> waitGone(HubClient& hub, const std::string& name, const std::string& start_rv,
                      std::chrono::milliseconds timeout) {
  std::string path = std::string(kControlPlanesPath) + "?watch=1&fieldSelector=metadata.name%3D" + name +
                     "&allowWatchBookmarks=true&resourceVersion=" + start_rv +
                     "&timeoutSeconds=" + std::to_string(std::max<long>(1, timeout.count() / 1000 + 1));
  bool done = false;
  auto r = hub.watch(
      path,
      [&](const Json& ev) {
        std::string type = ev.value("type", "");
        if (type == "DELETED") {
          done = true;
          return false;
        }
        return type != "ERROR";
      },
      timeout);
  if (done) {
    return {};
  }
  if (!r) {
    return r.error();
  }
  return fail("the watch ended before the control plane was gone");
}

// Waits until the control plane `created` (as the create answered) is Ready, printing each
// condition change (with chatty), and stopping early when it cannot get there without a change by
// the user. The error says why, with the last word of every condition.
Result<void> waitReady(HubClient& hub, const Json& created, std::chrono::milliseconds timeout,
                       const std::string& timeout_text, bool chatty, std::ostream& out) {
  const std::string name = created["metadata"].value("name", "");
  ConditionTracker tracker;
  auto show = [&](const Json& obj) {
    for (const auto& line : tracker.update(obj)) {
      if (chatty) {
        out << "  " << line << "\n";
      }
    }
  };
  show(created);
  bool deleted = false;
  if (tracker.hopeless().empty() && !tracker.ready()) {
    std::string path = std::string(kControlPlanesPath) + "?watch=1&fieldSelector=metadata.name%3D" + name +
                       "&allowWatchBookmarks=true&resourceVersion=" +
                       created["metadata"].value("resourceVersion", "") +
                       "&timeoutSeconds=" + std::to_string(std::max<long>(1, timeout.count() / 1000 + 1));
    auto r = hub.watch(
        path,
        [&](const Json& ev) {
          std::string type = ev.value("type", "");
          if (type == "ERROR") {
            return false;
          }
          if (type == "DELETED") {
            deleted = true;
            return false;
          }
          if (type == "BOOKMARK" || !ev.contains("object")) {
            return true;
          }
          show(ev["object"]);
          return tracker.hopeless().empty() && !tracker.ready();
        },
        timeout);
    if (!r && tracker.hopeless().empty() && !tracker.ready() && !deleted) {
      std::string why = r.error().code == Errc::Timeout ? "timed out after " + timeout_text : r.error().message;
      return fail(why + "; last conditions: " + tracker.summary());
    }
  }
  if (deleted) {
    return fail("it was deleted while kflex waited");
  }
  if (std::string why = tracker.hopeless(); !why.empty()) {
    return fail("it cannot become ready without a change: " + why);
  }
  if (!tracker.ready()) {
    return fail("the watch ended before it was ready; last conditions: " + tracker.summary());
  }
  return {};
}

// The -p hooks that do not exist on the hub ("" when all do); an error when the hub cannot say.
Result<std::string> missingHooks(HubClient& hub, const Json& spec) {
  std::string missing;
  for (const auto& use : spec.value("postCreateHooks", Json::array())) {
    std::string hook = use.value("hookName", "");
    auto got = hub.get(std::string("/apis/") + model::kTenancyGroup + "/" + model::kTenancyVersion +
                       "/postcreatehooks/" + hook);
    if (!got && got.error().code != Errc::NotFound) {
      return fail("cannot read PostCreateHook " + hook + ": " + got.error().message);
    }
    if (!got) {
      missing += (missing.empty() ? "" : ", ") + hook;
    }
  }
  return missing;
}

// Creates a ControlPlane and, with a timeout, waits until it is Ready; then switches to its context
// unless told not to. Returns the exit code.
int submitControlPlane(HubClient& hub, const Globals& g, const std::string& cmd, const Json& cp,
                       const std::chrono::milliseconds* wait_timeout, const std::string& timeout_text, bool switch_ctx,
                       std::ostream& out, std::ostream& err) {
  std::string name = cp["metadata"].value("name", "");
  auto missing = missingHooks(hub, cp["spec"]);
  if (!missing) {
    err << "kflex " << cmd << ": " << missing.error().message << "\n";
    return 1;
  }
  if (!missing->empty()) {
    err << "kflex " << cmd << ": PostCreateHook " << missing.value() << " does not exist on the hub, so nothing was "
        << "created; create the hook first (kubectl apply -f HOOK.yaml) or check the name (kubectl get "
        << "postcreatehooks)\n";
    return 1;
  }
  auto created = hub.post(kControlPlanesPath, cp);
  if (!created) {
    if (created.error().code == Errc::Conflict) {
      err << "kflex " << cmd << ": control plane \"" << name << "\" already exists; choose another name or "
          << "'kflex delete " << name << "' first\n";
    } else {
      err << "kflex " << cmd << ": " << created.error().message << "\n";
    }
    return 1;
  }
  out << "control plane " << name << " (type " << cp["spec"].value("type", "") << ") created\n";
  if (wait_timeout == nullptr) {
    if (switch_ctx) {
      out << "Not waiting, so its context is not there yet: 'kflex ctx " << name << "' switches to it once it is "
          << "ready ('kflex list' shows when).\n";
    }
    return 0;
  }
  if (g.chatty) {
    out << "Waiting for control plane " << name << " to be ready (timeout " << timeout_text << ")...\n";
  }
  if (auto r = waitReady(hub, created.value(), *wait_timeout, timeout_text, g.chatty, out); !r) {
    err << "kflex " << cmd << ": control plane " << name << " is not ready: " << r.error().message
        << "; see 'kflex get " << name << " -o yaml'\n";
    return 1;
  }
  out << "control plane " << name << " is ready\n";
  if (switch_ctx) {
    switchAfterCreate(g, cmd, name, out, err);
  }
  return 0;
}

// -p/--postcreate-hook and -e/--set as given on the command line: each hook with the variables
// that follow it.
struct HookArgs {
  std::vector<std::pair<std::string, std::vector<std::string>>> hooks;
  std::vector<std::string> leading_sets;  // -e before any -p
};

// Reads the -p and -e of cmd in the order they came.
HookArgs hookArgs(const CLI::App& cmd, const CLI::Option* hook_opt, const CLI::Option* set_opt) {
  HookArgs args;
  const auto& hooks = hook_opt->results();
  const auto& sets = set_opt->results();
  size_t ih = 0;
  size_t is = 0;
  for (const CLI::Option* o : cmd.parse_order()) {
    if (o == hook_opt && ih < hooks.size()) {
      args.hooks.push_back({hooks[ih++], {}});
    } else if (o == set_opt && is < sets.size()) {
      (args.hooks.empty() ? args.leading_sets : args.hooks.back().second).push_back(sets[is++]);
    }
  }
  return args;
}

// Writes the hooks into spec.postCreateHooks, in order; false (and a message) when they are
// malformed. With a single -p every -e is its own wherever it stands (as upstream reads them).
bool addHooks(const std::string& cmd, HookArgs args, Json& spec, std::ostream& err) {
  if (args.hooks.empty() && !args.leading_sets.empty()) {
    err << "kflex " << cmd << ": --set needs --postcreate-hook (the variables are for that hook)\n";
    return false;
  }
  if (!args.leading_sets.empty()) {
    if (args.hooks.size() > 1) {
      err << "kflex " << cmd << ": --set \"" << args.leading_sets.front() << "\" comes before any --postcreate-hook; "
          << "with several hooks, put each hook's -e NAME=VALUE after its -p HOOK\n";
      return false;
    }
    auto& own = args.hooks.front().second;
    own.insert(own.begin(), args.leading_sets.begin(), args.leading_sets.end());
  }
  Json uses = Json::array();
  std::set<std::string> seen;
  for (const auto& [hook, sets] : args.hooks) {
    if (!isDns1123Subdomain(hook)) {
      err << "kflex " << cmd << ": \"" << hook << "\" is not a valid PostCreateHook name\n";
      return false;
    }
    if (!seen.insert(hook).second) {
      err << "kflex " << cmd << ": PostCreateHook " << hook << " is given twice; give it once with all its -e\n";
      return false;
    }
    Json vars = Json::object();
    for (const auto& s : sets) {
      auto eq = s.find('=');
      if (eq == std::string::npos || eq == 0) {
        err << "kflex " << cmd << ": --set \"" << s << "\" must be name=value\n";
        return false;
      }
      vars[s.substr(0, eq)] = s.substr(eq + 1);
    }
    Json use = {{"hookName", hook}};
    if (!vars.empty()) {
      use["vars"] = vars;
    }
    uses.push_back(use);
  }
  if (!uses.empty()) {
    spec["postCreateHooks"] = uses;
  }
  return true;
}

struct PlacementFlags {
  std::string agent;
  std::string selector;
};

int cmdCreate(const Globals& g, const std::string& name, const std::string& type, const std::string& backend,
              const HookArgs& hooks, const PlacementFlags& placement, bool wait, const std::string& timeout,
              bool switch_ctx, std::ostream& out, std::ostream& err) {
  if (!isDns1123Label(name)) {
    err << "kflex create: \"" << name << "\" is not a valid name: use lower-case letters, digits and '-', "
        << "starting and ending with a letter or digit, at most 63 characters\n";
    return 2;
  }
  if (type == model::kDeprecatedType) {
    err << "kflex create: type " << type << " is deprecated upstream and not supported by kflex; use "
        << model::kDefaultType << "\n";
    return 2;
  }
  const model::ControlPlaneType* known = model::findControlPlaneType(type);
  if (known == nullptr) {
    err << "kflex create: unknown type \"" << type << "\": use one of "
        << model::joinNames(model::typeNames([](const model::ControlPlaneType&) { return true; }), ", ") << "\n";
    return 2;
  }
  if (backend != "shared" && backend != "dedicated") {
    err << "kflex create: unknown backend \"" << backend << "\": use shared or dedicated\n";
    return 2;
  }
  if (known->adopted) {
    err << "kflex create: control planes of type " << type << " are existing clusters: adopt one with 'kflex adopt "
        << name << " --adopted-kubeconfig FILE'\n";
    return 2;
  }
  Json spec = {{"type", type}, {"backend", backend}};
  if (!addHooks("create", hooks, spec, err)) {
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
    if (!model::runsOnAgent(type)) {
      err << "kflex create: --agent and --agent-selector apply to "
          << model::joinNames(model::typeNames([](const model::ControlPlaneType& t) {
                                return t.runs_on == model::RunsOn::Agent;
                              }),
                              " and ")
          << " control planes only\n";
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
  return submitControlPlane(*hub.value(), g, "create", cp, wait ? &*wait_timeout : nullptr, timeout, switch_ctx, out,
                            err);
}

struct AdoptFlags {
  std::string kubeconfig;
  std::string context;
  std::string url_override;
  int64_t expiration_seconds = 31536000;
  HookArgs hooks;
  bool wait = true;
  std::string timeout = "2m";
  std::string agent;
  bool switch_ctx = true;
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
  if (auto r = splitHttpsUrl(url, host, port); !r) {
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
  Json spec = {{"type", model::adoptedType().name}, {"tokenExpirationSeconds", f.expiration_seconds}};
  if (!addHooks("adopt", f.hooks, spec, err)) {
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
  int rc = submitControlPlane(*hub.value(), g, "adopt", cp, f.wait ? &wait_ms : nullptr, f.timeout, f.switch_ctx, out,
                              err);
  if (rc != 0 && !hub.value()->get(std::string(kControlPlanesPath) + "/" + name)) {
    hub.value()->remove(secrets_path + "/" + secret);  // nothing will use it: do not leave credentials behind
  }
  return rc;
}

const std::set<std::string> kListOutputs = {"table", "wide", "json", "yaml", "name"};

int cmdList(const Globals& g, const std::string& output, std::ostream& out, std::ostream& err) {
  if (kListOutputs.count(output) == 0) {
    err << "kflex list: -o must be json, yaml, wide or name (or nothing, for the table)\n";
    return 2;
  }
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
  Json& items = (*list)["items"];
  if (output == "json" || output == "yaml") {
    for (auto& cp : items) {
      if (cp.contains("metadata") && cp["metadata"].is_object()) {
        cp["metadata"].erase("managedFields");
      }
    }
    out << (output == "json" ? list->dump(2) + "\n" : config::jsonToYaml(list.value()));
    return 0;
  }
  if (output == "name") {
    for (const auto& cp : items) {
      out << cp["metadata"].value("name", "") << "\n";
    }
    return 0;
  }
  if (items.empty()) {
    out << "No control planes. Create one with 'kflex create NAME --type k3s'.\n";
    return 0;
  }
  const bool wide = output == "wide";
  std::vector<std::vector<std::string>> rows = {{"NAME", "TYPE", "SYNCED", "READY", "AGE"}};
  if (wide) {
    rows[0].insert(rows[0].end(), {"BACKEND", "AGENT", "HOOKS", "REASON"});
  }
  auto now = std::chrono::system_clock::now();
  for (const auto& cp : items) {
    auto created = parseTime(cp["metadata"].value("creationTimestamp", ""));
    std::string age = created ? humanDuration(std::chrono::duration_cast<std::chrono::seconds>(now - *created)) : "";
    std::vector<std::string> row = {cp["metadata"].value("name", ""), cp["spec"].value("type", ""),
                                    conditionStatus(cp, "Synced"), conditionStatus(cp, "Ready"), age};
    if (wide) {
      std::string hooks;
      for (const auto& u : kube::hookUses(cp)) {
        hooks += (hooks.empty() ? "" : ",") + u.hook;
      }
      // The reason of the first condition that is not True says what it waits for.
      std::string reason;
      for (const char* type : {"Scheduled", "Synced", "Ready", "PostCreateHooks"}) {
        if (const Json* c = condition(cp, type); c != nullptr && c->value("status", "") != "True") {
          reason = std::string(type) + ": " + c->value("reason", "");
          break;
        }
      }
      const Json st = cp.value("status", Json::object());
      row.insert(row.end(), {cp["spec"].value("backend", ""), st.value("agent", ""), hooks, reason});
    }
    rows.push_back(row);
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

// When the agent that must confirm a deletion cannot (its Agent is gone, or not Ready), what to
// tell the user about --force; "" otherwise.
std::string forceHint(HubClient& hub, const std::string& name) {
  auto cp = hub.get(std::string(kControlPlanesPath) + "/" + name);
  if (!cp) {
    return "";
  }
  std::string agent = cp->value("status", Json::object()).value("agent", "");
  if (agent.empty()) {
    return "";
  }
  std::string why;
  auto a = hub.get(std::string("/apis/") + model::kTenancyGroup + "/" + model::kTenancyVersion + "/agents/" + agent);
  if (!a) {
    if (a.error().code != Errc::NotFound) {
      return "";
    }
    why = "its agent " + agent + " no longer exists";
  } else if (const Json* ready = condition(a.value(), "Ready"); ready == nullptr || ready->value("status", "") != "True") {
    why = "its agent " + agent + " is not Ready" +
          (ready == nullptr ? std::string()
                            : " (" + ready->value("reason", "") +
                                  (ready->value("message", "").empty() ? "" : ": " + ready->value("message", "")) + ")");
  } else {
    return "";
  }
  return "The deletion waits for " + why + " to confirm that it stopped the control plane and removed its data. If "
         "that agent is gone for good, 'kflex delete " + name + " --force' forgets the control plane without it (its "
         "processes and data may remain on that host; the agent removes them if it ever comes back).";
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
      if (!p && p.error().code != Errc::NotFound) {
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
  forgetControlPlane(g, name, out, err);
  if (!pending || !wait) {
    out << "control plane " << name << (pending ? " is being deleted\n" : " deleted\n");
    return 0;
  }
  if (g.chatty) {
    out << "Waiting for control plane " << name << " to be deleted...\n";
  }
  std::string rv = r->at("metadata").value("resourceVersion", "");
  auto wait_timeout = parseDuration(timeout);
  if (!wait_timeout) {
    err << "kflex delete: --timeout \"" << timeout << "\" is not a duration such as 90s or 5m\n";
    return 2;
  }
  if (auto w = waitGone(*hub.value(), name, rv, *wait_timeout); !w) {
    std::string why = w.error().code == Errc::Timeout ? "timed out after " + timeout : w.error().message;
    err << "kflex delete: control plane " << name << " is still being deleted: " << why << "\n";
    if (!force) {
      if (std::string hint = forceHint(*hub.value(), name); !hint.empty()) {
        err << hint << "\n";
      }
    }
    return 1;
  }
  out << "control plane " << name << " deleted\n";
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
  app.name("kflex");
  app.set_version_flag("--version", std::string("kflex ") + kVersion);
  app.require_subcommand(1);
  // Global flags are accepted after any subcommand too (kflex create cp1 -k FILE): every
  // subcommand hands the options it does not know to its parent.
  app.fallthrough();
  Globals g;
  CompletionHints hints;
  auto* kubeconfig_opt = app.add_option("-k,--kubeconfig", g.kubeconfig,
                                        "Kubeconfig to use [$KUBECONFIG's first file, then ~/.kube/config]");
  hints.options[kubeconfig_opt] = {CompletionHint::Kind::Files, {}};
  auto* context_opt =
      app.add_option("--context", g.context, "Kubeconfig context of the hub [the one kflex remembers, else current]");
  hints.options[context_opt] = {CompletionHint::Kind::Contexts, {}};
  app.add_flag("-s,--chatty-status", g.chatty,
               "Print progress while waiting (--chatty-status=false: only results and errors)")
      ->capture_default_str();
  app.add_option("-v,--verbosity", g.verbosity, "Log level: 1 says which hub and context are used")
      ->capture_default_str();

  auto* init = app.add_subcommand("init", "Add a hub to your kubeconfig as context kflex-hub and remember it");
  std::string hub_kubeconfig;
  hints.options[init->add_option("--hub-kubeconfig", hub_kubeconfig,
                                 "The hub's admin.kubeconfig (DATA_DIR/admin.kubeconfig)")
                    ->required()] = {CompletionHint::Kind::Files, {}};
  init->footer(
      "The hub is merged into the kubeconfig that --kubeconfig, $KUBECONFIG or ~/.kube/config names, which must not\n"
      "be the hub's own admin.kubeconfig: the hub rewrites that file on every start.");

  auto* version = app.add_subcommand("version", "Print the client and hub versions");

  auto* create = app.add_subcommand("create", "Create a control plane, wait until it is ready and switch to it");
  std::string name;
  std::string type(model::kDefaultType);
  std::string backend = "shared";
  std::vector<std::string> hooks;
  std::vector<std::string> sets;
  bool wait = true;
  bool switch_ctx = true;
  std::string timeout = "5m";
  create->add_option("NAME", name, "Control plane name (DNS-1123 label)")->required();
  hints.options[create->add_option("-t,--type", type, model::joinNames(createdTypes(), " or "))
                    ->capture_default_str()] = {CompletionHint::Kind::Words, createdTypes()};
  hints.options[create->add_option("-b,--backend-type", backend, "shared or dedicated")->capture_default_str()] = {
      CompletionHint::Kind::Words, {"shared", "dedicated"}};
  auto* create_hook = create->add_option("-p,--postcreate-hook", hooks,
                                         "PostCreateHook to run after creation (repeatable, run in order)")
                          ->expected(1)
                          ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  auto* create_set = create->add_option("-e,--set", sets,
                                        "Variable NAME=VALUE of the -p HOOK before it (repeatable)")
                         ->expected(1)
                         ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  create->add_flag("--wait,!--no-wait", wait,
                   "Wait until the control plane is Ready, showing each condition change (--no-wait returns at once)")
      ->capture_default_str();
  create->add_flag("--switch,!--no-switch", switch_ctx,
                   "Once it is ready, switch the current context to it (--no-switch leaves the context alone)")
      ->capture_default_str();
  create->add_option("--timeout", timeout, "How long --wait waits (90s, 5m, 1h)")->capture_default_str();
  PlacementFlags placement;
  create->add_option("--agent", placement.agent, "Place it on this agent (k8s, k3s, vcluster)");
  create->add_option("--agent-selector", placement.selector,
                     "Place it on the best-fitting Ready agent whose labels match (zone=eu,tier!=test)");
  create->footer(
      "With --wait (the default) kflex prints each condition change, stops early when the control plane cannot\n"
      "become ready without a change by you (no agent can run the type, a PostCreateHook is missing or failed),\n"
      "and on a timeout prints the last word of every condition. A PostCreateHook that does not exist on the hub\n"
      "is refused before anything is created. With --no-wait there is no context to switch to yet: run\n"
      "'kflex ctx NAME' once it is ready.");

  auto* adopt = app.add_subcommand("adopt", "Adopt an existing cluster as a control plane of type external");
  AdoptFlags adopt_flags;
  adopt->add_option("NAME", name, "Control plane name (DNS-1123 label)")->required();
  hints.options[adopt->add_option("-a,--adopted-kubeconfig", adopt_flags.kubeconfig,
                                  "Kubeconfig of the cluster to adopt [$KUBECONFIG, then ~/.kube/config]")] = {
      CompletionHint::Kind::Files, {}};
  adopt->add_option("-c,--adopted-context", adopt_flags.context, "Context of that kubeconfig [its current context]");
  adopt->add_option("-u,--url-override", adopt_flags.url_override,
                    "API server URL to use instead of the kubeconfig's (https, not a loopback address)");
  adopt->add_option("-x,--expiration-seconds,--adopted-token-expiration-seconds", adopt_flags.expiration_seconds,
                    "Lifetime of the service-account token made in the adopted cluster")
      ->capture_default_str();
  adopt->add_option("--agent", adopt_flags.agent,
                    "Let this agent adopt and probe the cluster (one only that edge host can reach)");
  auto* adopt_hook = adopt->add_option("-p,--postcreate-hook", hooks,
                                       "PostCreateHook to run after adoption (repeatable, run in order)")
                         ->expected(1)
                         ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  auto* adopt_set = adopt->add_option("-e,--set", sets, "Variable NAME=VALUE of the -p HOOK before it (repeatable)")
                        ->expected(1)
                        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  adopt->add_flag("--wait,!--no-wait", adopt_flags.wait, "Wait until the adopted cluster is Ready")->capture_default_str();
  adopt->add_flag("--switch,!--no-switch", adopt_flags.switch_ctx,
                  "Once it is ready, switch the current context to it")
      ->capture_default_str();
  adopt->add_option("--timeout", adopt_flags.timeout, "How long --wait waits")->capture_default_str();
  adopt->footer(
      "The kubeconfig is sent to the hub once (secret NAME-bootstrap in kubeflex-system); the hub uses it to\n"
      "create service account kube-system/kubeflex bound to cluster-admin and a token for it, keeps only\n"
      "a kubeconfig holding that token, and deletes the bootstrap secret. With --agent, that agent does this\n"
      "and probes the cluster instead of the hub (the kubeconfig travels over its mutual-TLS link).");

  auto* list = app.add_subcommand("list", "List control planes");
  std::string list_output = "table";
  hints.options[list->add_option("-o,--output", list_output, "json, yaml, wide or name [a table]")] = {
      CompletionHint::Kind::Words, {"json", "yaml", "wide", "name"}};
  auto* get = app.add_subcommand("get", "Show one control plane");
  std::string output = "yaml";
  get->add_option("NAME", name, "Control plane name")->required();
  hints.positionals[get] = {CompletionHint::Kind::ControlPlanes, {}};
  hints.options[get->add_option("-o,--output", output, "yaml or json")->capture_default_str()] = {
      CompletionHint::Kind::Words, {"yaml", "json"}};

  auto* del = app.add_subcommand("delete", "Delete a control plane and its kubeconfig context");
  bool del_wait = true;
  del->add_option("NAME", name, "Control plane name")->required();
  hints.positionals[del] = {CompletionHint::Kind::ControlPlanes, {}};
  del->add_flag("--wait,!--no-wait", del_wait, "Wait until it is gone")->capture_default_str();
  bool del_force = false;
  del->add_flag("--force", del_force,
                "Do not wait for the agent to confirm that it stopped the control plane and removed its data "
                "(for an agent that is gone for good)");
  del->add_option("--timeout", timeout, "How long --wait waits")->capture_default_str();
  del->footer(
      "The contexts kflex wrote for it (kflex ctx NAME, kflex create) are removed from the kubeconfig, with their\n"
      "clusters and users; when one was current, the hub's context becomes current. A timeout says when --force\n"
      "would help (its agent no longer exists or is not Ready).");

  auto* ctx = app.add_subcommand("ctx", "Switch the kubeconfig context to a control plane, or back to the hub with no NAME");
  std::string ctx_name;
  CtxFlags ctx_flags;
  ctx->add_option("NAME", ctx_name, "Control plane name");
  hints.positionals[ctx] = {CompletionHint::Kind::ControlPlanes, {}};
  ctx->add_flag("-o,--overwrite-existing-context", ctx_flags.overwrite_existing,
                "Replace an existing context NAME (also one kflex did not write) with a fresh one from the hub");
  ctx->add_flag("-c,--set-current-for-hosting", ctx_flags.set_current_for_hosting,
                "Remember the current context as the hub's (where 'kflex ctx' goes back to) first");
  ctx->add_flag("--direct", ctx_flags.direct,
                "Reach the control plane at its own address (a route of your own to its host) instead of through "
                "the hub's tunnel");
  ctx->footer(
      "kflex ctx NAME fetches the control plane's kubeconfig from the hub, merges it as context NAME (cluster\n"
      "NAME-cluster, user NAME-admin) and makes it current; when no hub context is remembered yet, the context\n"
      "that reached the hub is remembered. kflex ctx alone switches back to the remembered hub context.\n"
      "A control plane on an agent is reached through the hub (the agent's own link carries it, so the edge\n"
      "host needs no inbound route): the context's proxy-url names the hub with a tunnel token for NAME\n"
      "(kflex token list shows it; kflex token delete ID revokes it), and TLS runs end to end to the control\n"
      "plane's API server. --direct uses the control plane's own address instead.");
  auto* ctx_list = ctx->add_subcommand("list", "List the kubeconfig's contexts and which ones kflex wrote");
  std::string ctx_output = "table";
  hints.options[ctx_list->add_option("-o,--output", ctx_output, "name [a table]")] = {CompletionHint::Kind::Words,
                                                                                        {"name"}};
  auto* ctx_get = ctx->add_subcommand("get", "Print the current context");
  auto* ctx_rename = ctx->add_subcommand("rename", "Rename a context (with kflex's cluster and user names)");
  std::string ctx_from;
  std::string ctx_to;
  bool ctx_switch = false;
  ctx_rename->add_option("CONTEXT", ctx_from, "Context to rename")->required();
  ctx_rename->add_option("NEW_CONTEXT", ctx_to, "Its new name")->required();
  hints.positionals[ctx_rename] = {CompletionHint::Kind::Contexts, {}};
  ctx_rename->add_flag("-S,--switch", ctx_switch, "Make it the current context");
  auto* ctx_delete = ctx->add_subcommand("delete", "Delete a context with its cluster and user when unused elsewhere");
  bool ctx_force = false;
  ctx_delete->add_option("CONTEXT", ctx_from, "Context to delete")->required();
  hints.positionals[ctx_delete] = {CompletionHint::Kind::Contexts, {}};
  ctx_delete->add_flag("-f,--force", ctx_force, "Also delete a context kflex did not write, or the hub's");

  auto* config_cmd = app.add_subcommand("config", "Settings kflex keeps in the kubeconfig");
  config_cmd->require_subcommand(1);
  auto* set_hosting = config_cmd->add_subcommand(
      "set-hosting", "Remember context CTX as the hub's (the one kflex reaches the hub through)");
  set_hosting->add_option("CTX", ctx_from, "Context name")->required();
  hints.positionals[set_hosting] = {CompletionHint::Kind::Contexts, {}};
  auto* diagnose = config_cmd->add_subcommand("diagnose", "Check kflex's extension in the kubeconfig (exit 1 when absent)");
  std::string diagnose_output = "json";
  hints.options[diagnose->add_option("-o,--output", diagnose_output, "json")->capture_default_str()] = {
      CompletionHint::Kind::Words, {"json"}};

  auto* hook_cmd = app.add_subcommand("hook", "PostCreateHooks of control planes");
  hook_cmd->require_subcommand(1);
  auto* rerun = hook_cmd->add_subcommand(
      "rerun", "Run a PostCreateHook again on a control plane (after the hook changed, or after it failed)");
  std::string hook_name;
  rerun->add_option("CONTROLPLANE", name, "Control plane name")->required();
  rerun->add_option("HOOK", hook_name, "PostCreateHook name (one the control plane uses)")->required();
  hints.positionals[rerun] = {CompletionHint::Kind::ControlPlanes, {}};
  rerun->footer(
      "A hook runs once per control plane; editing the PostCreateHook later does not apply it again.\n"
      "This records a new rerun request on the ControlPlane (annotation kflex.kubestellar.org/rerun-hooks);\n"
      "whoever runs the hooks (its agent, or the hub) applies the hook as it is now and reports in status.");

  auto* completion = app.add_subcommand("completion", "Print a shell completion script (bash, zsh or fish)");
  std::string shell;
  completion->add_option("SHELL", shell, "bash, zsh or fish")->required()->check(CLI::IsMember(kCompletionShells));
  hints.positionals[completion] = {CompletionHint::Kind::Words, kCompletionShells};
  completion->footer(
      "bash: source <(kflex completion bash)   (or save it in ~/.local/share/bash-completion/completions/kflex)\n"
      "zsh:  source <(kflex completion zsh)    (or save it as _kflex in a folder of $fpath)\n"
      "fish: kflex completion fish | source    (or save it in ~/.config/fish/completions/kflex.fish)");

  FleetCommands fleet(app);

  app.footer("Hub connection: the kubeconfig context kflex-hub written by 'kflex init' (or another one kflex\n"
             "remembers: 'kflex config set-hosting CTX'). Global flags may come after the command too.");
  // pflag's -s=false (CLI11 reads a value after = only on long flags).
  std::vector<std::string> args;
  for (int i = argc - 1; i > 0; --i) {
    std::string a = argv[i];
    args.push_back(a.rfind("-s=", 0) == 0 ? "--chatty-status=" + a.substr(3) : a);
  }
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e, out, err);
    return rc == 0 ? 0 : 2;
  }
  if (g.verbosity > 0) {
    err << "kubeconfig " << config::defaultKubeconfigPath(g.kubeconfig).string() << "\n";
    if (auto hub = HubClient::connect(g.kubeconfig, g.context); hub) {
      err << "hub " << hub.value()->server() << " through context " << hub.value()->context() << "\n";
    }
  }
  if (init->parsed()) {
    return cmdInit(g, hub_kubeconfig, out, err);
  }
  if (version->parsed()) {
    return cmdVersion(g, out);
  }
  if (create->parsed()) {
    return cmdCreate(g, name, type, backend, hookArgs(*create, create_hook, create_set), placement, wait, timeout,
                     switch_ctx, out, err);
  }
  if (adopt->parsed()) {
    adopt_flags.hooks = hookArgs(*adopt, adopt_hook, adopt_set);
    return cmdAdopt(g, name, adopt_flags, out, err);
  }
  if (list->parsed()) {
    return cmdList(g, list_output, out, err);
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
  if (ctx_list->parsed()) {
    return cmdCtxList(g, ctx_output, out, err);
  }
  if (ctx_get->parsed()) {
    return cmdCtxGet(g, out, err);
  }
  if (ctx_rename->parsed()) {
    return cmdCtxRename(g, ctx_from, ctx_to, ctx_switch, out, err);
  }
  if (ctx_delete->parsed()) {
    return cmdCtxDelete(g, ctx_from, ctx_force, out, err);
  }
  if (ctx->parsed()) {
    return cmdCtx(g, ctx_name, ctx_flags, out, err);
  }
  if (set_hosting->parsed()) {
    return cmdConfigSetHosting(g, ctx_from, out, err);
  }
  if (diagnose->parsed()) {
    return cmdConfigDiagnose(g, diagnose_output, out, err);
  }
  if (completion->parsed()) {
    writeCompletion(app, hints, shell, out);
    return 0;
  }
  if (fleet.parsed()) {
    return fleet.run(g, out, err);
  }
  return 2;
}

}  // namespace kflex::cli
