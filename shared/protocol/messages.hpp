// SPDX-License-Identifier: Apache-2.0
// The messages of the agent link, one struct each: what hub and agent say to each other after
// the WebSocket is up. Each struct names its envelope type (kType) and has its encoding
// (toJson) and its decoding with every check (fromJson) here and nowhere else: the hub and the
// agent build and read messages only through these. A decoder never throws; what it refuses it
// names in the error, for the `error` reply and the log.
//
// Direction: agent→hub: Hello, Lease, Ack, StatusReport, Csr. hub→agent: Welcome, Snapshot,
// Delta, StatusAck, Certificate, CaBundle. Either way: ErrorBody (then the link closes).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/protocol/link.hpp"

namespace kflex::protocol {

/// The agent's first message.
struct Hello {
  static constexpr std::string_view kType = msg::kHello;
  std::string name;                   ///< The name it claims ("" when it claims none).
  int64_t acknowledged_revision = 0;  ///< The last hub revision it stored.
  std::string ca_bundle_hash;         ///< SHA-256 (hex) of the CA bundle it holds ("" when not said).
  /// hostname, os, arch, kernelVersion, agentVersion: those it gave, each cut to 256 characters.
  std::map<std::string, std::string> facts;
  /// Keys of fewer than 64 characters (others dropped), values cut to 64.
  std::map<std::string, std::string> capacity;
  /// The control plane types it runs: at most 16, of fewer than 32 characters (others dropped);
  /// nullopt when it does not say (an agent from before they were told: it may run any).
  std::optional<std::vector<std::string>> control_plane_types;
  /// The version of the tunnel's stream frames it speaks (docs/dev/tunnel.md); 0: none (an agent
  /// from before the tunnel).
  int64_t tunnel = 0;

  Json toJson() const;
  /// Facts and capacity are cut to size as documented; a field of the wrong JSON type is an error.
  static Result<Hello> fromJson(const Json& body);
};

/// The hub's answer to hello: the link is up.
struct Welcome {
  static constexpr std::string_view kType = msg::kWelcome;
  int64_t lease_renew_seconds = 10;     ///< Renew the lease this often (read as 1 to 3600).
  int64_t lease_duration_seconds = 50;  ///< The hub marks the agent lost after this long without one.
  std::string hub_version;
  bool certificate_expired = false;  ///< The agent's certificate expired: ask for a new one at once.

  Json toJson() const;
  static Result<Welcome> fromJson(const Json& body);
};

/// A lease renewal (no body).
struct Lease {
  static constexpr std::string_view kType = msg::kLease;
  Json toJson() const { return Json::object(); }
  static Result<Lease> fromJson(const Json&) { return Lease{}; }
};

/// The agent stored desired state up to the envelope's revision (no body).
struct Ack {
  static constexpr std::string_view kType = msg::kAck;
  Json toJson() const { return Json::object(); }
  static Result<Ack> fromJson(const Json&) { return Ack{}; }
};

/// One desired object as the agent receives it: a ControlPlane (with what the hub attaches to
/// it), kept as its JSON text.
struct DesiredObject {
  std::string name;  ///< metadata.name, never empty.
  std::string json;  ///< The object, compact.
};

/// Every control plane placed on the agent, as of the envelope's revision: what it holds and is
/// not in here is no longer its own.
struct Snapshot {
  static constexpr std::string_view kType = msg::kSnapshot;
  std::vector<DesiredObject> control_planes;

  Json toJson() const;
  static Result<Snapshot> fromJson(const Json& body);
};

/// The changes to the agent's desired state up to the envelope's revision (both lists may be
/// empty: a progress mark).
struct Delta {
  static constexpr std::string_view kType = msg::kDelta;
  std::vector<DesiredObject> upserts;
  std::vector<std::string> deletes;  ///< Names.

  Json toJson() const;
  static Result<Delta> fromJson(const Json& body);
};

/// A snapshot or delta frame made around objects' stored JSON bytes, for the hub, which sends
/// the same stored objects to many agents and never re-serializes them. `objects` must each be
/// one compact JSON object; the frame decodes as Snapshot (snapshot) or Delta.
std::string encodeDesired(bool snapshot, uint64_t id, int64_t revision, const std::vector<const std::string*>& objects,
                          const std::vector<std::string>& deletes);

/// One condition of a status report.
struct ReportedCondition {
  std::string type;     ///< 1 to 64 characters.
  std::string status;   ///< True, False or Unknown.
  std::string reason;   ///< At most 128 characters.
  std::string message;  ///< At most 4096 characters.
};

/// One program of a control plane, as reported.
struct Component {
  std::string name;   ///< At most 64 characters.
  std::string state;  ///< At most 64 characters.
  std::optional<int64_t> restarts;
  std::optional<std::string> last_exit;  ///< At most 256 characters.
};

/// An agent's report on one control plane: what it observed. Also what a runtime observes
/// (control_plane and seq are then filled in by the agent's reconciler and link).
struct StatusReport {
  static constexpr std::string_view kType = msg::kStatus;
  static constexpr size_t kMaxConditions = 16;
  static constexpr size_t kMaxComponents = 16;
  static constexpr size_t kMaxHooks = 64;

  std::string control_plane;  ///< A DNS-1123 label.
  int64_t seq = 0;            ///< The agent's outbox entry, echoed in status-ack.
  int64_t observed_generation = 0;
  std::vector<ReportedCondition> conditions;  ///< At most 16.
  std::optional<std::string> endpoint;        ///< An https:// URL of at most 256 characters.
  std::optional<std::vector<Component>> components;  ///< At most 16.
  /// postCreateHooks: at most 64 hook names (up to 253 characters) to whether each completed.
  std::optional<std::map<std::string, bool>> hook_states;
  std::optional<bool> hooks_done;  ///< postCreateHookCompleted.
  /// hookLabels: at most 64 label keys (up to 253 characters) to values.
  std::optional<std::map<std::string, std::string>> hook_labels;
  /// The control plane's kubeconfig: {secretName, data: {KEY: TEXT}} (the hub checks the names
  /// and sizes).
  struct Kubeconfig {
    std::string secret_name;
    std::map<std::string, std::string> data;
  };
  std::optional<Kubeconfig> kubeconfig;
  bool removed = false;  ///< The agent stopped the control plane and removed its data.

  /// The condition of `type`, or null.
  ReportedCondition* condition(std::string_view type);
  /// Cuts every string and list to the bounds above, so that what this side reports always
  /// decodes on the other (an overlong message is cut, not refused).
  void clampToBounds();
  /// The components as the ControlPlane's status.components holds them.
  Json componentsJson() const;

  Json toJson() const;
  /// A field of the wrong JSON type, or out of its bounds, is an error naming it.
  static Result<StatusReport> fromJson(const Json& body);
};

/// The hub stored (or superseded) the report with this seq: the agent may forget it.
struct StatusAck {
  static constexpr std::string_view kType = msg::kStatusAck;
  int64_t seq = 0;

  Json toJson() const;
  static Result<StatusAck> fromJson(const Json& body);
};

/// The agent asks for a certificate for a new key.
struct Csr {
  static constexpr std::string_view kType = msg::kCsr;
  std::string csr_pem;  ///< PKCS#10 (checked as one by the hub, not here).

  Json toJson() const;
  static Result<Csr> fromJson(const Json& body);
};

/// The hub's answer to a Csr.
struct Certificate {
  static constexpr std::string_view kType = msg::kCertificate;
  std::string certificate_pem;
  std::string ca_bundle_pem;  ///< "" when not sent.

  Json toJson() const;
  static Result<Certificate> fromJson(const Json& body);
};

/// The hub's CA bundle (after a CA rotation).
struct CaBundle {
  static constexpr std::string_view kType = msg::kCaBundle;
  std::string ca_bundle_pem;
  bool renew_certificate = false;  ///< The agent's certificate is from a CA being retired: renew now.

  Json toJson() const;
  static Result<CaBundle> fromJson(const Json& body);
};

/// Why the sender closes the link (one of code::*).
struct ErrorBody {
  static constexpr std::string_view kType = msg::kError;
  std::string code;
  std::string message;

  Json toJson() const;
  static Result<ErrorBody> fromJson(const Json& body);
};

/// An optional part of a message as JSON: null when absent.
template <class T>
Json orNull(const std::optional<T>& part) {
  return part ? Json(*part) : Json();
}

/// Serializes message `m` in an envelope.
template <class Message>
std::string encode(const Message& m, uint64_t id, int64_t revision = 0) {
  return encode(Message::kType, std::to_string(id), revision, m.toJson());
}

/// The body of a decoded envelope as message type `Message` (the envelope's type must be its).
template <class Message>
Result<Message> bodyOf(const Envelope& e) {
  if (e.type != Message::kType) {
    return fail("expected a " + std::string(Message::kType) + " message, not " + e.type);
  }
  return Message::fromJson(e.body);
}

}  // namespace kflex::protocol
