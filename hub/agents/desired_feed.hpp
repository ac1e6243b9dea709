// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "hub/agents/agent_link.hpp"
#include "hub/api/control_plane_secrets.hpp"
#include "hub/store/object_store.hpp"
#include "shared/model/resource.hpp"

namespace kflex::hub {

/**
 * What an agent is sent of a control plane placed on it: what it acts on (spec, the metadata it
 * uses, deletion) and what it carries beyond the stored object: the bootstrap kubeconfig of an
 * external control plane it adopts (until adopted), and the PostCreateHooks it uses
 * (kube::kDeliveredHooksField). Never its status: an agent is not sent its own reports back.
 * Thread safety: const methods may be called from any thread (the store is thread-safe).
 */
class DesiredViews {
 public:
  DesiredViews(ObjectStore& store, const model::Registry& registry);
  /// Where the bootstrap kubeconfigs of adopted clusters are read (before any link).
  void setSecrets(ControlPlaneSecrets* secrets) { secrets_ = secrets; }
  /// The view of one stored control plane (JSON text).
  std::string viewOf(const ObjectRecord& rec) const;
  /// The control planes on `agent` that use PostCreateHook `hook` (a hook changed or appeared).
  std::vector<ObjectPtr> usersOfHook(const std::string& agent, const std::string& hook) const;
  const std::string& controlPlanes() const { return cps_key_; }
  const std::string& hooks() const { return hooks_key_; }
  ObjectStore& store() const { return store_; }

 private:
  ObjectStore& store_;
  ControlPlaneSecrets* secrets_ = nullptr;
  const std::string cps_key_;
  const std::string hooks_key_;
};

/**
 * One agent's desired-state feed, on one link: the first sync after hello (a snapshot, or the
 * changes since the revision the agent acknowledged), then each change that concerns it, as
 * "desired" frames in revision order; a change to nothing the agent acts on (above all its own
 * status report) is not sent. Idle agents get progress marks, so that a reconnect replays little.
 * Thread safety: only on the link's executor.
 */
class DesiredFeed {
 public:
  DesiredFeed(std::shared_ptr<AgentLink> link, const DesiredViews& views)
      : link_(std::move(link)), views_(views) {}
  /// Sends everything since `acknowledged` (0: a snapshot of all), then any event that came
  /// before. Again after the hub lost events or the agent's control planes were marked Unknown.
  void sync(int64_t acknowledged);
  /// One store event (a control plane placed on this agent, or a PostCreateHook).
  void deliver(const EventPtr& ev);
  /// Tells the agent the hub has got to `revision` (nothing else changed for it).
  void progress(int64_t revision);
  /// Records the agent's acknowledgement; false when `revision` was never sent.
  bool acknowledge(int64_t revision);
  /// Whether the first sync was sent.
  bool started() const { return synced_ >= 0; }
  int64_t acknowledged() const { return acked_; }
  /// The highest revision sent (-1 before the first sync).
  int64_t sent() const { return synced_; }

 private:
  /// Records `view` as the last sent of control plane `name`; false when it was already.
  bool remember(const std::string& name, const std::string& view);
  void sendFrame(bool snapshot, int64_t revision, const std::vector<std::string>& views,
                 const std::vector<std::string>& deletes);

  std::shared_ptr<AgentLink> link_;
  const DesiredViews& views_;
  int64_t synced_ = -1;          // highest revision sent; -1 until the first sync
  int64_t acked_ = 0;            // the revision the agent last acknowledged
  std::vector<EventPtr> early_;  // events that arrived before the first sync
  // Per control plane: a digest of the view last sent, so that a write that changes nothing the
  // agent acts on (its own status report, above all) is not sent.
  std::unordered_map<std::string, size_t> sent_;
};

}  // namespace kflex::hub
