// SPDX-License-Identifier: Apache-2.0
#include "hub/clusters/cluster_controller.hpp"

#include <algorithm>
#include <cstring>
#include <functional>

#include "hub/api/hook_labels.hpp"
#include "hub/api/router.hpp"
#include "shared/common/log.hpp"
#include "shared/common/util.hpp"
#include "shared/kube/hooks.hpp"
#include "shared/model/conditions.hpp"
#include "shared/model/control_plane_status.hpp"
#include "shared/model/control_plane_types.hpp"
#include "shared/tls/pki.hpp"

namespace kflex::hub {
namespace {

constexpr const char* kAdminSecret = "admin-kubeconfig";
constexpr int64_t kDefaultTokenSeconds = 31536000;  // upstream's default: one year
// Control planes reconciled at once (each mostly waits on a cluster, up to call_timeout).
constexpr size_t kWorkers = 64;

const model::ResourceType& controlPlanes(const model::Registry& r) {
  return *r.find(model::kTenancyGroup, model::kTenancyVersion, "controlplanes");
}

std::string typeOf(const Json& cp) { return cp.value("spec", Json::object()).value("type", ""); }

// False when a stored control plane is certainly of no type the hub serves (external, host): no
// such type field anywhere in its compact JSON.
bool mayBeServedHere(const std::string& bytes) {
  static const std::vector<std::string> needles = [] {
    std::vector<std::string> out;
    auto by_hub = [](const model::ControlPlaneType& t) { return t.runs_on == model::RunsOn::Hub; };
    for (const auto& name : model::typeNames(by_hub)) {
      out.push_back(R"("type":")" + name + "\"");
    }
    return out;
  }();
  return std::any_of(needles.begin(), needles.end(), [&bytes](const std::string& needle) {
    return ::memmem(bytes.data(), bytes.size(), needle.data(), needle.size()) != nullptr;
  });
}

// A control plane served here (external or host, and not an external one an agent adopts),
// parsed; null otherwise.
Json servedHere(const ObjectRecord& rec) {
  if (!mayBeServedHere(rec.bytes)) {
    return nullptr;  // most control planes run on agents: a cheap test first
  }
  Json cp = Json::parse(rec.bytes, nullptr, false);
  std::string type = cp.is_object() ? typeOf(cp) : "";
  if (!model::servedByHub(type) || model::servedByAgent(cp)) {
    return nullptr;
  }
  return cp;
}

// A digest of what a reconcile acts on: all of a control plane but its status (and the fields
// that every write changes).
size_t specDigest(Json cp) {
  cp.erase("status");
  if (auto m = cp.find("metadata"); m != cp.end() && m->is_object()) {
    m->erase("resourceVersion");
    m->erase("managedFields");
  }
  return std::hash<std::string>{}(cp.dump());
}

Result<std::unique_ptr<kube::Client>> clientFor(const std::string& kubeconfig, const std::string& what,
                                                std::chrono::seconds timeout) {
  auto kc = config::Kubeconfig::parse(kubeconfig, what);
  if (!kc) {
    return kc.error();
  }
  auto access = kc->access();
  if (!access) {
    return fail(what + ": " + access.error().message);
  }
  return kube::Client::create(access.value(), timeout);
}

}  // namespace

ClusterController::ClusterController(net::io_context& ioc, ApiClient& api, ObjectStore& store,
                                     const model::Registry& registry, ControlPlaneSecrets& secrets, const Clock& clock,
                                     ClusterOptions options)
    : api_(api), store_(store), cps_(controlPlanes(registry)),
      hooks_(*registry.find(model::kTenancyGroup, model::kTenancyVersion, "postcreatehooks")), secrets_(secrets),
      clock_(clock), options_(std::move(options)),
      controller_(net::make_strand(ioc), store,
                  // (Reconciles answer with timed requeues; an exception is tried again from a tick
                  // on, as the earlier tick loop did.)
                  ControllerOptions{"clusters", kWorkers,
                                    {options_.tick, std::max<std::chrono::milliseconds>(options_.tick, options_.retry)}},
                  [this](std::string name) { return reconcile(std::move(name)); }) {
  controller_.watch(resourceKey(cps_), [this](const EventPtr& ev) { return onControlPlaneEvent(*ev); });
  controller_.watch(resourceKey(hooks_), [this](const EventPtr& ev) { return onHookEvent(*ev); });
  controller_.relist([this](int64_t) { return relist(); });
  controller_.onlyWhileLeading(api_.leadership());
}

void ClusterController::start() { controller_.start(); }

void ClusterController::stop() { controller_.stop(); }

Controller::Keys ClusterController::onControlPlaneEvent(const Event& ev) {
  const std::string& name = ev.object->name;
  Json cp = ev.type == EventType::Deleted ? Json() : servedHere(*ev.object);
  if (cp.is_null()) {
    seen_.erase(name);
    if (states_.count(name) > 0) {
      return {name};  // gone, or no longer served here: its state goes
    }
    return {};
  }
  size_t digest = specDigest(std::move(cp));
  auto [it, added] = seen_.try_emplace(name, digest);
  if (!added && it->second == digest) {
    return {};  // only its status changed (this controller's own reports): the next probe comes as planned
  }
  it->second = digest;
  return {name};
}

Controller::Keys ClusterController::onHookEvent(const Event&) {
  // A hook changed, appeared or went: the control planes served here look at their hooks again.
  Controller::Keys keys;
  for (const auto& [name, st] : states_) {
    keys.push_back(name);
  }
  return keys;
}

Controller::Keys ClusterController::relist() {
  seen_.clear();
  Controller::Keys keys;
  for (const auto& rec : store_.list(resourceKey(cps_)).first) {
    Json cp = servedHere(*rec);
    if (!cp.is_null()) {
      seen_[rec->name] = specDigest(std::move(cp));
      keys.push_back(rec->name);
    }
  }
  for (const auto& [name, st] : states_) {
    if (seen_.count(name) == 0) {
      keys.push_back(name);  // deleted meanwhile, or no longer served here
    }
  }
  return keys;
}

net::awaitable<Outcome> ClusterController::reconcile(std::string name) {
  ObjectPtr rec = store_.get(resourceKey(cps_), name);
  Json cp = rec ? servedHere(*rec) : Json();
  if (cp.is_null()) {
    if (auto it = states_.find(name); it != states_.end()) {
      states_.erase(it);
      if (!rec) {
        co_await secrets_.remove(name);  // deleted: its credentials go with it
      }
    }
    co_return Outcome::done();
  }
  Outcome out = co_await reconcileServed(name, std::move(cp));
  co_return out;
}

net::awaitable<void> ClusterController::report(const std::string& name, const std::string& uid,
                                               std::function<bool(Json&)> change) {
  std::function<bool(Json&)> guarded = [&](Json& obj) {
    if (obj["metadata"].value("uid", "") != uid) {
      return false;
    }
    Json& status = obj["status"];
    if (!status.is_object()) {
      status = Json::object();
    }
    bool changed = change(obj);
    // (The status schema requires it; this controller has acted on the current spec.)
    Json generation = obj["metadata"].value("generation", Json(1));
    if (status.value("observedGeneration", Json()) != generation) {
      status["observedGeneration"] = generation;
      changed = true;
    }
    return changed;
  };
  Result<void> written = co_await api_.changeStatus(cps_, name, guarded);
  if (!written && written.error().code != Errc::NotFound) {
    log::warn("cannot record a control plane's status", {{"controlPlane", name}, {"error", written.error().message}});
  }
}

net::awaitable<Outcome> ClusterController::reconcileServed(std::string name, Json cp) {
  std::string uid = cp["metadata"].value("uid", "");
  auto& slot = states_[name];
  if (!slot || slot->uid != uid) {
    slot = std::make_shared<State>();  // new, or a new control plane of the same name
    slot->uid = uid;
  }
  auto st = slot;
  std::string type = typeOf(cp);
  std::string stamp = formatTime(clock_.now());
  const auto retry_later = Outcome::requeueAfter(options_.retry);

  if (cp["metadata"].contains("deletionTimestamp")) {
    st->hooks.reset();
    if (!model::isAdopted(type)) {  // (host)
      auto down = co_await tearDownHost(name);
      if (!down) {
        log::warn("cannot remove a host control plane's account from the hosting cluster; retrying (kflex delete "
                  "--force gives up on it)",
                  {{"controlPlane", name}, {"error", down.error().message}});
        co_await report(name, uid, [&](Json& obj) {
          return model::setCondition(obj["status"], "Synced", "False", "ReconcileError",
                                     "removing its account from the hosting cluster: " + down.error().message, stamp,
                                     true);
        });
        co_return Outcome::requeueAfter(options_.tick);  // looked at again from a tick on while deleting
      }
    }
    if (options_.hosting && cp["status"].contains("postCreateHooks")) {
      // What its hooks made in the hosting cluster (namespace <cp>-system, cluster-scoped objects).
      config::ClusterAccess hosting = *options_.hosting;
      auto removed = co_await kube::removeHookObjects(hosting, name);
      if (!removed) {
        log::warn("cannot remove what a control plane's hooks made in the hosting cluster",
                  {{"controlPlane", name}, {"error", removed.error().message}});
      }
    }
    co_await secrets_.remove(name);
    bool released = co_await api_.removeFinalizer(cps_, name, model::kControlPlaneFinalizer);
    if (released) {
      log::info("control plane released", {{"controlPlane", name}, {"type", type}});
    }
    co_return Outcome::requeueAfter(options_.tick);
  }

  auto creds = secrets_.get(name, uid);
  if (!creds) {
    // (No co_await inside ?: — GCC 12 miscompiles it.)
    Result<std::map<std::string, std::string>> made = fail("");
    if (model::isAdopted(type)) {
      made = co_await adopt(name, cp);
    } else {
      made = co_await setUpHost(name, cp);
    }
    if (!made) {
      log::warn("control plane not set up yet", {{"controlPlane", name}, {"type", type}, {"error", made.error().message}});
      co_await report(name, uid, [&](Json& obj) {
        bool changed = model::setCondition(obj["status"], "Synced", "False", "ReconcileError", made.error().message,
                                           stamp, true);
        changed |= model::setCondition(obj["status"], "Ready", "False", "Creating",
                                       "waiting for its credentials to be made", stamp, true);
        return changed;
      });
      co_return retry_later;
    }
    if (auto stored = co_await secrets_.put(name, uid, kAdminSecret, made.value()); !stored) {
      log::error("cannot store a control plane's kubeconfig", {{"controlPlane", name}, {"error", stored.error().message}});
      co_return retry_later;
    }
    if (model::isAdopted(type)) {
      // Used once: the bootstrap credential (often a cluster owner's) is gone from the hub.
      std::string bootstrap = cp["spec"].value("bootstrapSecretRef", Json::object()).value("name", "");
      co_await secrets_.removeBootstrap(bootstrap);
      log::info("adopted a cluster; its bootstrap secret was deleted", {{"controlPlane", name}, {"secret", bootstrap}});
    }
    creds = std::move(made.value());
  }

  // Probe with the stored credentials.
  const std::string& kubeconfig = creds->count("kubeconfig") ? creds->at("kubeconfig") : creds->begin()->second;
  std::string digest = tls::sha256Hex(kubeconfig);
  if (!st->client || st->creds_digest != digest) {
    auto client = clientFor(kubeconfig, "the kubeconfig of " + name, options_.call_timeout);
    if (!client) {
      co_await report(name, uid, [&](Json& obj) {
        return model::setCondition(obj["status"], "Ready", "False", "Unavailable", client.error().message, stamp, true);
      });
      co_return retry_later;
    }
    st->client = std::move(client.value());
    st->creds_digest = digest;
  }
  auto ready = co_await st->client->getRaw("/readyz");
  std::string server = st->client->server();
  protocol::StatusReport observed;
  observed.conditions.push_back({"Synced", "True", "ReconcileSuccess",
                                 model::isAdopted(type) ? "adopted with a service-account token"
                                                        : "the hosting cluster's admin account is ready"});
  if (ready) {
    observed.conditions.push_back({"Ready", "True", "Available", "/readyz answered ok"});
  } else {
    observed.conditions.push_back({"Ready", "False", "Unavailable", ready.error().message});
  }
  std::string serving_kubeconfig = ready ? kubeconfig : std::string();
  Json hook_report = updateHooks(name, cp, *st, *creds, serving_kubeconfig);
  kube::foldHookReport(observed, hook_report, cp);
  observed.endpoint = server;
  const Json secret_ref = {{"namespace", name + "-system"}, {"name", kAdminSecret}, {"key", "kubeconfig"},
                           {"inClusterKey", "kubeconfig-incluster"}};
  co_await report(name, uid, [&](Json& obj) {
    // (It keeps status.postCreateHooks when no hook is used any more: what they made in the
    // hosting cluster is removed on deletion.)
    return model::applyStatusReport(obj["status"], observed, secret_ref, stamp, model::UnusedHooks::Keep);
  });
  // (A named value, not a temporary in the co_await's arguments: GCC 12 miscompiles those.)
  Json hook_labels = protocol::orNull(observed.hook_labels);
  co_await copyHookLabels(api_, store_, cps_, name, std::move(hook_labels));
  co_return Outcome::requeueAfter(ready ? options_.probe_period : options_.retry);
}

Json ClusterController::updateHooks(const std::string& name, const Json& cp, State& st,
                                    const std::map<std::string, std::string>& creds,
                                    const std::string& serving_kubeconfig) {
  auto uses = kube::hookUses(cp);
  if (uses.empty()) {
    st.hooks.reset();
    return nullptr;
  }
  Json hooks = Json::object();
  for (const auto& use : uses) {
    if (auto rec = store_.get(resourceKey(hooks_), use.hook)) {
      Json hook = Json::parse(rec->bytes, nullptr, false);
      if (hook.is_object()) {
        hooks[use.hook] = std::move(hook);
      }
    }
  }
  if (!st.hooks) {
    // What completed before (a hub restart): status.postCreateHooks says it, as upstream keeps it.
    Json records = Json::object();
    const Json done = cp.value("status", Json::object()).value("postCreateHooks", Json::object());
    for (const auto& use : uses) {
      if (done.is_object() && done.value(use.hook, false) && hooks.contains(use.hook)) {
        const Json meta = hooks[use.hook]["metadata"];
        records[use.hook] = {{"state", "Completed"},
                             {"generation", meta.value("generation", int64_t(0))},
                             {"uid", meta.value("uid", "")},
                             {"rerun", kube::hookRerunToken(cp, use.hook)},
                             {"labels", meta.value("labels", Json::object())}};
      }
    }
    std::weak_ptr<State> weak = states_[name];
    st.hooks = std::make_unique<kube::HookRunner>(controller_.strand(), name, records, nullptr, [this, weak, name] {
      if (weak.lock()) {
        controller_.queue().add(name);  // report it now
      }
    });
  }
  kube::HookTargets targets;
  targets.hosting = options_.hosting;
  targets.no_hosting = "the hub has no hosting cluster (start kflex-hub with --hosting-kubeconfig, or set "
                       "hosting_kubeconfig in hub.yaml)";
  targets.secret_name = kAdminSecret;
  targets.secret_data = creds;
  targets.hosted_kubeconfig = serving_kubeconfig;
  st.hooks->update(cp, hooks, targets);
  return st.hooks->report();
}

net::awaitable<Result<std::map<std::string, std::string>>> ClusterController::adopt(const std::string& name,
                                                                                     const Json& cp) {
  const Json ref = cp["spec"].value("bootstrapSecretRef", Json());
  if (!ref.is_object() || ref.value("name", "").empty()) {
    co_return fail("spec.bootstrapSecretRef is not set: adopt clusters with kflex adopt " + name +
                   " --adopted-kubeconfig FILE");
  }
  std::string ns = ref.value("namespace", kSystemNamespace);
  std::string secret = ref.value("name", "");
  std::string key = ref.value("inClusterKey", "kubeconfig-incluster");
  if (ns != kSystemNamespace) {
    co_return fail("spec.bootstrapSecretRef.namespace must be " + std::string(kSystemNamespace) +
                   ": the hub keeps bootstrap secrets only there");
  }
  auto data = secrets_.bootstrap(secret);
  if (!data) {
    co_return fail("bootstrap secret " + ns + "/" + secret + " not found (it is deleted once used): adopt the cluster "
                   "again with kflex adopt " + name + " --adopted-kubeconfig FILE");
  }
  auto it = data->find(key);
  if (it == data->end() || key.empty()) {
    co_return fail("bootstrap secret " + ns + "/" + secret + " has no key \"" + key + "\"");
  }
  int64_t seconds = cp["spec"].value("tokenExpirationSeconds", kDefaultTokenSeconds);
  auto out = co_await kube::adoptCluster(name, it->second, seconds, "kflex", options_.call_timeout);
  if (!out) {
    co_return out.error();
  }
  co_return std::map<std::string, std::string>{{"kubeconfig", out.value()}, {"kubeconfig-incluster", out.value()}};
}

net::awaitable<Result<std::map<std::string, std::string>>> ClusterController::setUpHost(const std::string& name,
                                                                                         const Json& cp) {
  if (!options_.hosting) {
    co_return fail("the hub has no hosting cluster: start kflex-hub with --hosting-kubeconfig FILE (or "
                   "hosting_kubeconfig in hub.yaml) to serve control planes of type host");
  }
  auto client = kube::Client::create(*options_.hosting, options_.call_timeout);
  if (!client) {
    co_return fail(client.error().message);
  }
  std::string ns = name + "-system";
  Json namespace_obj = {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", ns}}}};
  if (auto r = co_await client.value()->apply(namespace_obj, "kflex"); !r) {
    co_return fail("in the hosting cluster: " + r.error().message);
  }
  auto token = co_await kube::makeAdminAccount(*client.value(), ns, name, name + "-binding", kDefaultTokenSeconds,
                                              "kflex");
  if (!token) {
    co_return fail("in the hosting cluster: " + token.error().message);
  }
  const auto& hosting = *options_.hosting;
  co_return std::map<std::string, std::string>{
      {"kubeconfig", kube::tokenKubeconfig(name, hosting.server, hosting.ca_pem, token.value())},
      {"kubeconfig-incluster",
       kube::tokenKubeconfig(name, "https://kubernetes.default.svc", hosting.ca_pem, token.value())}};
}

net::awaitable<Result<void>> ClusterController::tearDownHost(const std::string& name) {
  if (!options_.hosting) {
    co_return Result<void>{};  // nothing was made
  }
  auto client = kube::Client::create(*options_.hosting, options_.call_timeout);
  if (!client) {
    co_return client.error();
  }
  for (const kube::ObjectRef& ref :
       {kube::ObjectRef{"rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "", name + "-binding"},
        kube::ObjectRef{"v1", "Namespace", "", name + "-system"}}) {
    if (auto r = co_await client.value()->remove(ref); !r) {
      co_return fail(r.error().message);
    }
  }
  co_return Result<void>{};
}

}  // namespace kflex::hub
