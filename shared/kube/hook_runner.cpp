// SPDX-License-Identifier: Apache-2.0
#include "shared/kube/hook_runner.hpp"

#include <set>

#include "shared/common/log.hpp"
#include "shared/common/time.hpp"
#include "shared/common/util.hpp"
#include "shared/kube/client.hpp"
#include "shared/kube/hooks.hpp"

namespace kflex::kube {

using Json = nlohmann::json;

namespace {

/// Where a hook stands; `run` when the loop should run it now.
struct Decision {
  std::string state;  // Completed, Running, Pending, Missing, Failed
  std::string message;
  bool run = false;
};

/// Label kflex puts on everything a hook applied (cleanup and `kubectl get -l` find them).
constexpr const char* kControlPlaneLabel = "kflex.kubestellar.org/control-plane";

}  // namespace

struct HookRunner::State {
  explicit State(net::any_io_executor ex) : wake(ex) {}
  net::steady_timer wake;
  std::string cp_name;
  Json cp = Json::object();
  Json hooks = Json::object();
  HookTargets targets;
  Json records = Json::object();
  std::function<void(const Json&)> persist;
  std::function<void()> on_change;
  std::map<std::string, Decision> live;  // hook -> where it stands now
  std::string reported;                  // the last report that on_change announced
  bool stopped = false;
};

namespace {

int64_t generationOf(const Json& obj) {
  return obj.value("metadata", Json::object()).value("generation", int64_t(0));
}

std::string uidOf(const Json& obj) {
  return obj.value("metadata", Json::object()).value("uid", "");
}

bool sameHook(const Json& hook, const Json& record) {
  return generationOf(hook) == record.value("generation", int64_t(0)) && uidOf(hook) == record.value("uid", "");
}

Decision decide(const HookRunner::State& s, const HookUse& use) {
  const Json rec = s.records.value(use.hook, Json::object());
  const std::string state = rec.value("state", "");
  const bool same_run = rec.value("rerun", "") == hookRerunToken(s.cp, use.hook);
  const bool exists = s.hooks.contains(use.hook) && s.hooks[use.hook].is_object();
  if (state == "Completed" && same_run) {
    std::string note;
    if (exists && !sameHook(s.hooks[use.hook], rec)) {
      note = "the PostCreateHook changed since it ran; `kflex hook rerun " + s.cp_name + " " + use.hook +
             "` applies it again";
    }
    return {"Completed", note, false};
  }
  if (!exists) {
    return {"Missing", "PostCreateHook " + use.hook + " does not exist; the control plane waits for it", false};
  }
  const Json& hook = s.hooks[use.hook];
  if (state == "Failed" && same_run && sameHook(hook, rec)) {
    return {"Failed", rec.value("message", ""), false};
  }
  if (s.targets.hosted_kubeconfig.empty()) {
    // As upstream: hooks run once the control plane serves (and Jobs can mount its kubeconfig).
    return {"Pending", "waiting for the control plane to serve", false};
  }
  if (!hookTargetsHosted(hook) && !s.targets.hosting) {
    return {"Failed",
            "it targets the hosting cluster and there is none: " + s.targets.no_hosting +
                " (or annotate the PostCreateHook " + kHookTargetAnnotation + ": hosted)",
            false};
  }
  return {"Running", "starting", true};
}

Json reportOf(const HookRunner::State& s) {
  Json done = Json::object();
  Json labels = Json::object();
  bool all = true;
  std::string message;
  std::string failed;
  std::string reason = "Completed";
  for (const auto& use : hookUses(s.cp)) {
    auto it = s.live.find(use.hook);
    Decision d = it != s.live.end() ? it->second : decide(s, use);
    bool ok = d.state == "Completed";
    done[use.hook] = ok;
    all = all && ok;
    if (ok) {
      const Json l = s.records.value(use.hook, Json::object()).value("labels", Json::object());
      if (l.is_object()) {
        labels.update(l);
      }
    }
    std::string line = use.hook + ": " + d.state + (d.message.empty() ? "" : " (" + d.message + ")");
    message += (message.empty() ? "" : "; ") + line;
    if (d.state == "Failed") {
      failed += (failed.empty() ? "" : "; ") + line;
      reason = "Failed";
    } else if (d.state == "Missing") {
      failed += (failed.empty() ? "" : "; ") + line;
      if (reason != "Failed") {
        reason = "HookNotFound";
      }
    } else if (!ok && reason == "Completed") {
      reason = "Running";
    }
  }
  if (message.size() > 3000) {
    message = message.substr(0, 3000) + "...";
  }
  if (failed.size() > 3000) {
    failed = failed.substr(0, 3000) + "...";
  }
  Json condition = {{"type", "PostCreateHooks"}, {"status", all ? "True" : "False"}, {"reason", reason},
                    {"message", message}};
  return {{"postCreateHooks", done}, {"postCreateHookCompleted", all}, {"condition", condition},
          {"failed", failed}, {"labels", labels}};
}

void notify(HookRunner::State& s) {
  std::string now = reportOf(s).dump();
  if (now != s.reported) {
    s.reported = now;
    if (s.on_change) {
      s.on_change();
    }
  }
}

void setLive(HookRunner::State& s, const std::string& hook, std::string message) {
  s.live[hook] = {"Running", std::move(message), false};
  notify(s);
}

bool pastDeadline(std::chrono::steady_clock::time_point deadline) {
  return std::chrono::steady_clock::now() >= deadline;
}

std::string describe(const Json& obj) {
  const Json meta = obj.value("metadata", Json::object());
  std::string ns = meta.value("namespace", "");
  return obj.value("kind", "") + " " + (ns.empty() ? "" : ns + "/") + meta.value("name", "");
}

// The namespace a template names itself, "" when none.
std::string explicitNamespace(const Json& obj) {
  const Json meta = obj.value("metadata", Json::object());
  auto it = meta.find("namespace");
  return it != meta.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// Applies the objects in order, retrying what the target cannot take yet; "" or why it failed.
net::awaitable<std::string> applyAll(std::shared_ptr<HookRunner::State> s, Client* client, std::vector<Json>* objects,
                                     std::string hook, std::string where, bool hosted,
                                     std::chrono::steady_clock::time_point deadline) {
  net::steady_timer pause(s->wake.get_executor());
  const std::string ns = s->cp_name + "-system";
  for (size_t i = 0; i < objects->size(); ++i) {
    Json& obj = (*objects)[i];
    setLive(*s, hook, "applying " + describe(obj) + " to " + where + " (" + std::to_string(i + 1) + "/" +
                          std::to_string(objects->size()) + ")");
    std::string last_error;
    for (int attempt = 0;; ++attempt) {
      if (s->stopped) {
        co_return "stopped";
      }
      if (attempt > 0 && pastDeadline(deadline)) {
        co_return "could not apply " + describe(obj) + " to " + where + " in time: " + last_error;
      }
      std::string api_version = obj.value("apiVersion", "");
      std::string kind = obj.value("kind", "");
      auto found = co_await client->resource(api_version, kind);
      if (found) {
        Resource r = found.value();
        Json& meta = obj["metadata"];
        if (r.namespaced) {
          // In the hosting cluster <cp>-system is the tenant's only room (upstream: whatever the
          // template says). Inside the control plane itself, a namespace the template names is
          // honoured, and <cp>-system is only the default.
          if (!hosted || explicitNamespace(obj).empty()) {
            meta["namespace"] = ns;
          }
        } else if (kind != "Namespace") {
          // As upstream marks cluster-scoped objects for the control plane's release namespace.
          meta["labels"]["app.kubernetes.io/managed-by"] = "Helm";
          meta["annotations"]["meta.helm.sh/release-namespace"] = ns;
        }
        meta["labels"][kControlPlaneLabel] = s->cp_name;
        Json body = obj;
        std::string manager = kHookFieldManager;
        auto applied = co_await client->apply(body, manager, true);
        if (applied) {
          break;
        }
        ApiError e = applied.error();
        if (!e.transient()) {
          co_return where + " refused " + describe(obj) + ": " + e.message;
        }
        last_error = e.message;
      } else {
        ApiError e = found.error();
        if (!e.transient()) {
          co_return "cannot apply " + describe(obj) + " to " + where + ": " + e.message;
        }
        last_error = e.message;
      }
      setLive(*s, hook, "retrying " + describe(obj) + ": " + last_error);
      pause.expires_after(std::chrono::milliseconds(std::min(500 << std::min(attempt, 4), 5000)));
      co_await pause.async_wait(net::as_tuple(net::use_awaitable));
    }
  }
  co_return "";
}

// Waits until every object is done; "" or why the hook failed.
net::awaitable<std::string> waitDone(std::shared_ptr<HookRunner::State> s, Client* client,
                                     const std::vector<Json>* objects, std::string hook,
                                     std::chrono::steady_clock::time_point deadline, std::string timeout) {
  net::steady_timer pause(s->wake.get_executor());
  while (true) {
    if (s->stopped) {
      co_return "stopped";
    }
    std::string waiting;
    for (const auto& obj : *objects) {
      ObjectRef ref = ObjectRef::of(obj);
      auto got = co_await client->get(ref);
      if (!got) {
        ApiError e = got.error();
        waiting = ref.describe() + (e.notFound() ? " is gone" : ": " + e.message);
        break;
      }
      Json live = got.value();
      std::string failure;
      bool done = hookObjectDone(live, failure);
      if (!failure.empty()) {
        co_return ref.describe() + " failed: " + failure;
      }
      if (!done) {
        waiting = ref.describe() + " is not complete";
        break;
      }
    }
    if (waiting.empty()) {
      co_return "";
    }
    if (pastDeadline(deadline)) {
      co_return "not complete after " + timeout + ": " + waiting;
    }
    setLive(*s, hook, "waiting: " + waiting);
    pause.expires_after(std::chrono::seconds(1));
    co_await pause.async_wait(net::as_tuple(net::use_awaitable));
  }
}

// The objects of one hook in the order they go: the namespace, the kubeconfig secret, the rest.
std::vector<Json> withPrerequisites(const HookRunner::State& s, bool hosted, std::vector<Json> objects) {
  std::vector<Json> out;
  out.push_back({{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", s.cp_name + "-system"}}}});
  if (!s.targets.secret_name.empty() && (hosted || !s.targets.hosting_has_secret)) {
    Json data = Json::object();
    for (const auto& [k, v] : s.targets.secret_data) {
      data[k] = base64Encode(v);
    }
    out.push_back({{"apiVersion", "v1"},
                   {"kind", "Secret"},
                   {"metadata", {{"name", s.targets.secret_name}}},
                   {"type", "Opaque"},
                   {"data", data}});
  }
  if (hosted) {
    // The namespaces the templates name, made first (in the order the templates name them)
    // unless a template makes one itself or it is one every cluster has.
    static const std::set<std::string> kBuiltIn = {"default", "kube-system", "kube-public", "kube-node-lease"};
    std::set<std::string> made = {s.cp_name + "-system"};
    for (const auto& o : objects) {
      if (o.value("kind", "") == "Namespace" && o.value("apiVersion", "") == "v1") {
        made.insert(o.value("metadata", Json::object()).value("name", ""));
      }
    }
    for (const auto& o : objects) {
      std::string ns = explicitNamespace(o);
      if (!ns.empty() && o.value("kind", "") != "Namespace" && !kBuiltIn.count(ns) && made.insert(ns).second) {
        out.push_back({{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", ns}}}});
      }
    }
  }
  for (auto& o : objects) {
    out.push_back(std::move(o));
  }
  return out;
}

// Where a hook's objects go: the hosting cluster, or the control plane through its kubeconfig.
Result<config::ClusterAccess> targetAccess(const HookTargets& targets, bool hosted) {
  if (!hosted) {
    return *targets.hosting;
  }
  auto kc = config::Kubeconfig::parse(targets.hosted_kubeconfig, "the control plane's kubeconfig");
  if (!kc) {
    return kc.error();
  }
  return kc->access();
}

net::awaitable<void> runHook(std::shared_ptr<HookRunner::State> s, HookUse use) {
  const Json hook = s->hooks[use.hook];
  const bool hosted = hookTargetsHosted(hook);
  const std::string where = hosted ? "the control plane" : "the hosting cluster";
  std::chrono::milliseconds timeout = std::chrono::minutes(10);
  const Json ann = hook.value("metadata", Json::object()).value("annotations", Json::object());
  if (ann.is_object() && ann.contains(kHookTimeoutAnnotation) && ann[kHookTimeoutAnnotation].is_string()) {
    if (auto d = parseDuration(ann[kHookTimeoutAnnotation].get<std::string>()); d && d->count() > 0) {
      timeout = *d;
    }
  }
  const std::string timeout_text = humanDuration(std::chrono::duration_cast<std::chrono::seconds>(timeout));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  log::info("running a PostCreateHook", {{"controlPlane", s->cp_name}, {"hook", use.hook}, {"target", where}});
  std::string failure;
  std::vector<Json> objects;
  auto rendered = renderHook(s->cp, hook, use);
  if (!rendered) {
    failure = rendered.error().message;
  } else {
    objects = withPrerequisites(*s, hosted, std::move(rendered.value()));
  }
  std::unique_ptr<Client> client;
  auto access = targetAccess(s->targets, hosted);
  if (failure.empty() && !access) {
    failure = "cannot reach " + where + ": " + access.error().message;
  }
  if (failure.empty()) {
    auto made = Client::create(access.value(), std::chrono::seconds(15));
    if (!made) {
      failure = "cannot reach " + where + ": " + made.error().message;
    } else {
      client = std::move(made.value());
    }
  }
  if (failure.empty()) {
    failure = co_await applyAll(s, client.get(), &objects, use.hook, where, hosted, deadline);
  }
  if (failure.empty()) {
    failure = co_await waitDone(s, client.get(), &objects, use.hook, deadline, timeout_text);
  }
  if (s->stopped) {
    co_return;
  }
  Json record = {{"state", failure.empty() ? "Completed" : "Failed"},
                 {"generation", generationOf(hook)},
                 {"uid", uidOf(hook)},
                 {"rerun", hookRerunToken(s->cp, use.hook)},
                 {"message", failure},
                 {"labels", hook.value("metadata", Json::object()).value("labels", Json::object())}};
  s->records[use.hook] = record;
  s->live.erase(use.hook);
  if (s->persist) {
    s->persist(s->records);
  }
  if (failure.empty()) {
    log::info("PostCreateHook completed", {{"controlPlane", s->cp_name}, {"hook", use.hook}});
  } else {
    log::warn("PostCreateHook failed", {{"controlPlane", s->cp_name}, {"hook", use.hook}, {"error", failure}});
  }
}

net::awaitable<void> loop(std::shared_ptr<HookRunner::State> s) {
  while (!s->stopped) {
    std::vector<HookUse> uses = hookUses(s->cp);
    std::optional<HookUse> todo;
    for (const auto& use : uses) {
      Decision d = decide(*s, use);
      if (d.run && !todo) {
        todo = use;
      }
      s->live[use.hook] = d;
    }
    notify(*s);
    if (todo) {
      HookUse next = *todo;
      co_await runHook(s, next);
      continue;
    }
    s->wake.expires_at(net::steady_timer::time_point::max());
    co_await s->wake.async_wait(net::as_tuple(net::use_awaitable));
  }
}

}  // namespace

HookRunner::HookRunner(net::any_io_executor ex, std::string control_plane, Json records,
                       std::function<void(const Json&)> persist, std::function<void()> on_change)
    : s_(std::make_shared<State>(ex)) {
  s_->cp_name = std::move(control_plane);
  s_->records = records.is_object() ? std::move(records) : Json::object();
  s_->persist = std::move(persist);
  s_->on_change = std::move(on_change);
  // (Posted: co_spawn may start the loop inline, and its first report must not reach the owner
  // before the owner has the runner.)
  net::post(ex, [ex, s = s_] {
    net::co_spawn(ex, loop(s), [name = s->cp_name](std::exception_ptr e) {
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          log::error("PostCreateHooks stopped", {{"controlPlane", name}, {"error", ex.what()}});
        }
      }
    });
  });
}

HookRunner::~HookRunner() {
  s_->stopped = true;
  s_->on_change = nullptr;
  s_->persist = nullptr;
  s_->wake.cancel();
}

void HookRunner::update(const Json& cp, const Json& hooks, const HookTargets& targets) {
  s_->cp = cp;
  s_->hooks = hooks.is_object() ? hooks : Json::object();
  s_->targets = targets;
  // (Not cancel(): the loop may not be waiting yet; it looks again before it waits.)
  s_->wake.expires_at(net::steady_timer::time_point::min());
}

Json HookRunner::report() const {
  return reportOf(*s_);
}

net::awaitable<Result<void>> removeHookObjects(config::ClusterAccess access, std::string control_plane) {
  auto made = Client::create(access, std::chrono::seconds(15));
  if (!made) {
    co_return made.error();
  }
  std::unique_ptr<Client> client = std::move(made.value());
  const std::string selector = std::string(kControlPlaneLabel) + "=" + control_plane;
  static const std::vector<std::pair<std::string, std::string>> kKinds = {
      {"rbac.authorization.k8s.io/v1", "ClusterRoleBinding"},
      {"rbac.authorization.k8s.io/v1", "ClusterRole"},
      {"apiextensions.k8s.io/v1", "CustomResourceDefinition"},
      {"v1", "Namespace"}};
  for (const auto& [api_version, kind] : kKinds) {
    std::string av = api_version;
    std::string k = kind;
    std::string ns;
    std::string sel = selector;
    auto listed = co_await client->list(av, k, ns, sel);
    if (!listed) {
      ApiError e = listed.error();
      if (e.reason == "NoKind") {
        continue;
      }
      co_return fail("listing " + kind + "s of control plane " + control_plane + ": " + e.message);
    }
    Json items = listed.value().value("items", Json::array());
    for (const auto& item : items) {
      ObjectRef ref{api_version, kind, "", item["metadata"].value("name", "")};
      auto removed = co_await client->remove(ref);
      if (!removed && !removed.error().notFound()) {
        co_return fail("deleting " + ref.describe() + ": " + removed.error().message);
      }
    }
  }
  co_return Result<void>{};
}

void foldHookReport(protocol::StatusReport& observed, const Json& report, const Json& cp) {
  if (!report.is_object() || report.value("postCreateHooks", Json::object()).empty()) {
    return;  // no hooks
  }
  const bool completed = report.value("postCreateHookCompleted", false);
  const std::string failed = report.value("failed", "");
  observed.hook_states.emplace();
  for (const auto& [hook, done] : report["postCreateHooks"].items()) {
    observed.hook_states->emplace(hook, done.is_boolean() && done.get<bool>());
  }
  observed.hooks_done = completed;
  if (const Json labels = report.value("labels", Json::object()); labels.is_object() && !labels.empty()) {
    observed.hook_labels.emplace();
    for (const auto& [key, value] : labels.items()) {
      if (value.is_string()) {
        observed.hook_labels->emplace(key, value.get<std::string>());
      }
    }
  }
  const Json spec = cp.value("spec", Json::object());
  const bool wait = spec.contains("waitForPostCreateHooks") && spec["waitForPostCreateHooks"].is_boolean() &&
                    spec["waitForPostCreateHooks"].get<bool>();
  if (auto* synced = observed.condition("Synced"); synced && synced->status == "True" && !failed.empty()) {
    *synced = {"Synced", "False", "ReconcileError", "postcreatehook: " + failed};
  }
  if (auto* ready = observed.condition("Ready"); ready && ready->status == "True" && wait && !completed) {
    *ready = {"Ready", "False", "WaitingForPostCreateHooks", "Waiting for PostCreateHook completion"};
  }
  if (const Json condition = report.value("condition", Json()); condition.is_object()) {
    observed.conditions.push_back({condition.value("type", ""), condition.value("status", ""),
                                   condition.value("reason", ""), condition.value("message", "")});
  }
}

}  // namespace kflex::kube
