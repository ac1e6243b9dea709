// SPDX-License-Identifier: Apache-2.0
#include "hub/agents/desired_feed.hpp"

#include <map>
#include <set>

#include "hub/agents/release_controller.hpp"
#include "hub/api/router.hpp"
#include "shared/common/log.hpp"
#include "shared/kube/hooks.hpp"
#include "shared/model/control_plane_types.hpp"
#include "shared/protocol/messages.hpp"

namespace kflex::hub {
namespace {

// The metadata of a control plane an agent acts on. Its status, resourceVersion and
// managedFields are left out: they change with every status write, and an agent must not be
// sent its own reports back.
constexpr const char* kViewMetadata[] = {
    "name", "uid", "generation", "creationTimestamp", "deletionTimestamp", "labels", "annotations"};

// An agent that takes this many changes before its first sync is not keeping up.
constexpr size_t kMaxEarlyEvents = 100000;

}  // namespace

DesiredViews::DesiredViews(ObjectStore& store, const model::Registry& registry)
    : store_(store),
      cps_key_(resourceKey(
          *registry.find(model::kTenancyGroup, model::kTenancyVersion, "controlplanes"))),
      hooks_key_(resourceKey(
          *registry.find(model::kTenancyGroup, model::kTenancyVersion, "postcreatehooks"))) {}

std::string DesiredViews::viewOf(const ObjectRecord& rec) const {
  Json cp = Json::parse(rec.bytes, nullptr, false);
  if (!cp.is_object() || !cp.contains("metadata") || !cp["metadata"].is_object()) {
    return rec.bytes;  // (not expected of a stored object)
  }
  Json view = Json::object();
  for (const char* k : {"apiVersion", "kind", "spec"}) {
    if (auto it = cp.find(k); it != cp.end()) {
      view[k] = std::move(*it);
    }
  }
  Json& meta = cp["metadata"];
  Json& view_meta = view["metadata"] = Json::object();
  for (const char* k : kViewMetadata) {
    if (auto it = meta.find(k); it != meta.end()) {
      view_meta[k] = std::move(*it);
    }
  }
  if (view_meta.contains("deletionTimestamp")) {
    return view.dump();  // being deleted: it needs neither credentials nor hooks any more
  }
  const Json spec = view.value("spec", Json::object());
  const Json ref = spec.value("bootstrapSecretRef", Json::object());
  if (secrets_ != nullptr && ref.is_object() && !ref.empty() &&
      model::isAdopted(spec.value("type", "")) && model::servedByAgent(view)) {
    auto data = secrets_->bootstrap(ref.value("name", ""));
    std::string key = ref.value("inClusterKey", "kubeconfig-incluster");
    if (data && data->count(key)) {
      // The agent adopts the cluster with it (over the link's mutual TLS), then reports the
      // kubeconfig it made; the hub then deletes the bootstrap secret.
      view["kflexBootstrap"] = {{"kubeconfig", data->at(key)}};
    }
  }
  if (rec.bytes.find("postCreateHook") != std::string::npos) {
    Json delivered = Json::object();
    for (const auto& use : kube::hookUses(view)) {
      ObjectPtr hook_rec = store_.get(hooks_key_, use.hook);
      Json hook = hook_rec ? Json::parse(hook_rec->bytes, nullptr, false) : Json();
      if (!hook.is_object()) {
        continue;  // (the agent says it waits for it)
      }
      const Json hook_meta = hook["metadata"];
      Json slim_meta = Json::object();
      for (const char* k : {"name", "uid", "generation", "labels", "annotations"}) {
        if (hook_meta.contains(k)) {
          slim_meta[k] = hook_meta[k];
        }
      }
      delivered[use.hook] = {{"metadata", slim_meta}, {"spec", hook.value("spec", Json::object())}};
    }
    view[kube::kDeliveredHooksField] = std::move(delivered);
  }
  return view.dump();
}

std::vector<ObjectPtr> DesiredViews::usersOfHook(const std::string& agent,
                                                 const std::string& hook) const {
  std::vector<ObjectPtr> out;
  for (const auto& rec : store_.list(cps_key_).first) {
    if (rec->bytes.find(hook) == std::string::npos || placedOn(*rec) != agent) {
      continue;
    }
    for (const auto& use : kube::hookUses(Json::parse(rec->bytes, nullptr, false))) {
      if (use.hook == hook) {
        out.push_back(rec);
        break;
      }
    }
  }
  return out;
}

void DesiredFeed::sendFrame(bool snapshot, int64_t revision, const std::vector<std::string>& views,
                            const std::vector<std::string>& deletes) {
  std::vector<const std::string*> objects;
  objects.reserve(views.size());
  for (const auto& v : views) {
    objects.push_back(&v);
  }
  link_->send(protocol::encodeDesired(snapshot, link_->nextSeq(), revision, objects, deletes));
}

void DesiredFeed::sync(int64_t acknowledged) {
  ObjectStore& store = views_.store();
  const std::string& agent = link_->agent();
  bool snapshot = acknowledged <= 0 || acknowledged > store.revision();
  if (acknowledged > store.revision()) {
    // The hub's store is older than what the agent saw (restored from a backup): a full resync,
    // never an inference that everything was deleted.
    log::warn("agent is ahead of the hub's store; sending a full snapshot",
              {{"agent", agent},
               {"agent_revision", std::to_string(acknowledged)},
               {"hub_revision", std::to_string(store.revision())}});
  }
  std::vector<EventPtr> replay;
  int64_t at = 0;
  if (!snapshot) {
    auto sub = store.watch(acknowledged, link_->executor());
    if (sub) {
      replay = std::move(sub->replay);
      at = sub->revision;
      store.unwatch(sub->id);
    } else {
      snapshot = true;  // compacted: the events since then are gone
    }
  }
  if (snapshot) {
    auto [objects, rev] = store.list(views_.controlPlanes());
    at = rev;
    sent_.clear();
    std::vector<std::string> views;
    for (const auto& o : objects) {
      if (placedOn(*o) == agent) {
        views.push_back(views_.viewOf(*o));
        remember(o->name, views.back());
      }
    }
    sendFrame(true, at, views, {});
  } else {
    // Collapse the replay to the last state per control plane.
    std::map<std::string, EventPtr> last;
    std::set<std::string> hooks_changed;
    for (const auto& ev : replay) {
      if (ev->object->resource == views_.controlPlanes() && placedOn(*ev->object) == agent) {
        last[ev->object->name] = ev;
      } else if (ev->object->resource == views_.hooks()) {
        hooks_changed.insert(ev->object->name);
      }
    }
    std::vector<ObjectPtr> upserts;
    std::vector<std::string> deletes;
    for (const auto& [name, ev] : last) {
      if (ev->type == EventType::Deleted) {
        deletes.push_back(name);
      } else {
        upserts.push_back(ev->object);
      }
    }
    // Control planes whose hooks changed meanwhile: their current state (with the hooks as now).
    for (const auto& hook : hooks_changed) {
      for (auto& o : views_.usersOfHook(agent, hook)) {
        if (!last.count(o->name)) {
          last[o->name] = nullptr;
          upserts.push_back(std::move(o));
        }
      }
    }
    std::vector<std::string> views;
    views.reserve(upserts.size());
    for (const auto& o : upserts) {
      views.push_back(views_.viewOf(*o));
      remember(o->name, views.back());  // (sent whether or not it changed: the agent was away)
    }
    for (const auto& name : deletes) {
      sent_.erase(name);
    }
    sendFrame(false, at, views, deletes);
  }
  synced_ = at;
  auto early = std::move(early_);
  early_.clear();
  for (const auto& ev : early) {
    deliver(ev);
  }
}

void DesiredFeed::deliver(const EventPtr& ev) {
  if (synced_ < 0) {
    if (early_.size() >= kMaxEarlyEvents) {
      link_->close(protocol::code::kTooSlow, "too many changes before the first sync");
      return;
    }
    early_.push_back(ev);
    return;
  }
  if (ev->revision <= synced_) {
    return;  // already part of what was sent
  }
  std::vector<std::string> views;
  std::vector<std::string> deletes;
  if (ev->object->resource == views_.hooks()) {
    for (const auto& o :
         views_.usersOfHook(link_->agent(), ev->object->name)) {  // they get the hook as it is now
      std::string view = views_.viewOf(*o);
      if (remember(o->name, view)) {
        views.push_back(std::move(view));
      }
    }
  } else if (ev->type == EventType::Deleted) {
    deletes.push_back(ev->object->name);
    sent_.erase(ev->object->name);
  } else if (std::string view = views_.viewOf(*ev->object); remember(ev->object->name, view)) {
    views.push_back(std::move(view));
  }
  if (views.empty() && deletes.empty()) {
    return;  // nothing it acts on changed (the periodic progress mark tells it the revision)
  }
  sendFrame(false, ev->revision, views, deletes);
  synced_ = ev->revision;
}

bool DesiredFeed::remember(const std::string& name, const std::string& view) {
  const size_t digest = std::hash<std::string>{}(view);
  auto [it, added] = sent_.try_emplace(name, digest);
  if (!added && it->second == digest) {
    return false;
  }
  it->second = digest;
  return true;
}

void DesiredFeed::progress(int64_t revision) {
  if (synced_ < 0 || revision <= synced_) {
    return;
  }
  sendFrame(false, revision, {}, {});
  synced_ = revision;
}

bool DesiredFeed::acknowledge(int64_t revision) {
  if (revision > synced_) {
    return false;
  }
  acked_ = std::max(acked_, revision);
  return true;
}

}  // namespace kflex::hub
