// SPDX-License-Identifier: Apache-2.0
// The kinds of tenancy.kflex.kubestellar.org/v1alpha1, with the fields, enums, defaults and
// printer columns of upstream KubeFlex's CRDs, so that objects written for KubeFlex apply unchanged.
#include "shared/model/resource.hpp"

#include <algorithm>

#include "shared/common/time.hpp"
#include "shared/common/util.hpp"
#include "shared/kube/hooks.hpp"
#include "shared/model/selector.hpp"
#include "shared/tls/pki.hpp"

namespace kflex::model {
namespace {

constexpr const char* kConditionSchema = R"({
  "type": "object",
  "description": "ControlPlaneCondition describes the state of a control plane at a certain point.",
  "required": ["lastTransitionTime", "lastUpdateTime", "message", "reason", "status", "type"],
  "properties": {
    "type": {"type": "string", "description": "Ready or Synced."},
    "status": {"type": "string", "description": "True, False or Unknown."},
    "reason": {"type": "string", "description": "Machine-readable reason: Available, Unavailable, Creating, Deleting, WaitingForPostCreateHooks, ReconcileSuccess, ReconcileError, ..."},
    "message": {"type": "string", "description": "Human-readable detail."},
    "lastTransitionTime": {"type": "string", "format": "date-time"},
    "lastUpdateTime": {"type": "string", "format": "date-time"}
  }
})";

constexpr const char* kControlPlaneSchema = R"({
  "type": "object",
  "description": "ControlPlane is a dedicated Kubernetes control plane for one tenant.",
  "properties": {
    "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object: tenancy.kflex.kubestellar.org/v1alpha1."},
    "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents: ControlPlane."},
    "metadata": {"type": "object"},
    "spec": {
      "type": "object",
      "description": "ControlPlaneSpec defines the desired state of ControlPlane",
      "required": ["type"],
      "properties": {
        "type": {"type": "string"},
        "backend": {"type": "string", "enum": ["shared", "dedicated"], "description": "Database back-end of a k8s control plane: shared (default) or dedicated."},
        "bootstrapSecretRef": {
          "type": "object",
          "description": "bootstrapSecretRef contains a reference to the kubeconfig used to bootstrap adoption of an external cluster",
          "required": ["inClusterKey", "name", "namespace"],
          "properties": {
            "inClusterKey": {"type": "string", "description": "Key of the kubeconfig in the secret. Required"},
            "name": {"type": "string", "description": "`name` is the name of the secret. Required"},
            "namespace": {"type": "string", "description": "`namespace` is the namespace of the secret. Required"}
          }
        },
        "tokenExpirationSeconds": {"type": "integer", "format": "int64", "default": 31536000, "minimum": 1, "description": "tokenExpirationSeconds is the expiration time for generated auth token"},
        "postCreateHook": {"type": "string", "description": "Deprecated: Use PostCreateHooks instead"},
        "postCreateHookVars": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Deprecated: Use PostCreateHooks instead"},
        "postCreateHooks": {
          "type": "array",
          "description": "PostCreateHooks specifies multiple post-creation hooks to execute",
          "items": {
            "type": "object",
            "required": ["hookName"],
            "properties": {
              "hookName": {"type": "string", "description": "Name of the PostCreateHook resource to execute"},
              "vars": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Variables to pass to the hook template"}
            }
          }
        },
        "globalVars": {"type": "object", "additionalProperties": {"type": "string"}, "description": "GlobalVars defines shared variables for all post-creation hooks"},
        "waitForPostCreateHooks": {"type": "boolean", "default": false, "description": "WaitForPostCreateHooks determines if the control plane should wait for all post create hook resources to be ready before marking the control plane as ready"}
      }
    },
    "status": {
      "type": "object",
      "description": "ControlPlaneStatus defines the observed state of ControlPlane",
      "required": ["conditions", "observedGeneration"],
      "properties": {
        "conditions": {"type": "array", "items": CONDITION},
        "observedGeneration": {"type": "integer", "format": "int64"},
        "agent": {"type": "string", "description": "kflex: the agent this control plane is placed on (k8s, k3s, vcluster). Set once by the hub; see the Scheduled condition."},
        "endpoint": {"type": "string", "description": "kflex: the URL of the control plane's API server, as its agent reports it."},
        "components": {
          "type": "array",
          "description": "kflex: the programs that make up the control plane, as its agent supervises them.",
          "items": {
            "type": "object",
            "required": ["name", "state"],
            "properties": {
              "name": {"type": "string", "description": "The program: k3s, kine, kube-apiserver, kube-controller-manager."},
              "state": {"type": "string", "description": "Running, BackingOff, CrashLoopBackOff, Failed, Stopping or Stopped."},
              "restarts": {"type": "integer", "format": "int64", "description": "Restarts since the agent began supervising it."},
              "lastExit": {"type": "string", "description": "How its last run ended."}
            }
          }
        },
        "postCreateHookCompleted": {"type": "boolean"},
        "postCreateHooks": {"type": "object", "additionalProperties": {"type": "boolean"}},
        "secretRef": {
          "type": "object",
          "description": "SecretRef contains a reference to the secret containing the Kubeconfig for the control plane",
          "required": ["inClusterKey", "name", "namespace"],
          "properties": {
            "inClusterKey": {"type": "string", "description": "Required"},
            "key": {"type": "string", "description": "This field is present for control planes of type k8s, vcluster, ocm, host; it is not present for control planes of type external."},
            "name": {"type": "string", "description": "`name` is the name of the secret. Required"},
            "namespace": {"type": "string", "description": "`namespace` is the namespace of the secret. Required"}
          }
        }
      }
    }
  }
})";

constexpr const char* kPostCreateHookSchema = R"({
  "type": "object",
  "description": "PostCreateHook holds templated resources applied after a control plane is created.",
  "properties": {
    "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object: tenancy.kflex.kubestellar.org/v1alpha1."},
    "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents: PostCreateHook."},
    "metadata": {"type": "object"},
    "spec": {
      "type": "object",
      "description": "PostCreateHookSpec defines the desired state of PostCreateHook",
      "properties": {
        "templates": {
          "type": "array",
          "description": "Templates are Kubernetes objects, rendered with Go template syntax and applied after the control plane is created.",
          "items": {"type": "object", "description": "Manifest represents a resource to be deployed", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}
        },
        "defaultVars": {
          "type": "array",
          "description": "DefaultVars are default values of template variables",
          "items": {
            "type": "object",
            "required": ["name", "value"],
            "properties": {"name": {"type": "string"}, "value": {"type": "string"}}
          }
        },
        "jobs": {
          "type": "array",
          "description": "Jobs to run against the control plane",
          "items": {
            "type": "object",
            "properties": {
              "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
              "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }
          }
        }
      }
    },
    "status": {
      "type": "object",
      "description": "PostCreateHookStatus defines the observed state of PostCreateHook",
      "properties": {
        "conditions": {"type": "array", "items": CONDITION},
        "observedGeneration": {"type": "integer", "format": "int64"},
        "secretRef": {
          "type": "object",
          "properties": {
            "inClusterKey": {"type": "string"}, "key": {"type": "string"},
            "name": {"type": "string"}, "namespace": {"type": "string"}
          }
        },
        "jobStatuses": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
      }
    }
  }
})";

constexpr const char* kAgentSchema = R"({
  "type": "object",
  "description": "Agent is an enrolled edge host that runs control planes. Agents are created by enrollment (kflex-agent run with a bootstrap token); deleting one revokes it.",
  "properties": {
    "apiVersion": {"type": "string", "description": "tenancy.kflex.kubestellar.org/v1alpha1."},
    "kind": {"type": "string", "description": "Agent."},
    "metadata": {"type": "object"},
    "spec": {
      "type": "object",
      "description": "AgentSpec is what the administrator decides about an agent.",
      "properties": {
        "unschedulable": {"type": "boolean", "default": false, "description": "No new control planes are placed on an unschedulable agent; those it runs stay."}
      }
    },
    "status": {
      "type": "object",
      "description": "AgentStatus is what the agent reported and what the hub observed.",
      "properties": {
        "conditions": {"type": "array", "items": {
          "type": "object",
          "required": ["type", "status"],
          "properties": {
            "type": {"type": "string", "description": "Ready: the agent's lease is current."},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": {"type": "string", "description": "AgentReady, LeaseExpired, Enrolled, Revoked, ..."},
            "message": {"type": "string"},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
            "lastHeartbeatTime": {"type": "string", "format": "date-time"}
          }
        }},
        "address": {"type": "string", "description": "The address the agent's link comes from."},
        "hostname": {"type": "string"},
        "os": {"type": "string", "description": "Operating system (linux)."},
        "arch": {"type": "string", "description": "CPU architecture (amd64, arm64, ...)."},
        "kernelVersion": {"type": "string"},
        "agentVersion": {"type": "string", "description": "The kflex-agent version."},
        "capacity": {"type": "object", "additionalProperties": {"type": "string"}, "description": "cpu (cores), memory and disk (bytes, as Kubernetes quantities)."},
        "controlPlaneTypes": {"type": "array", "items": {"type": "string"}, "description": "The control plane types this agent can run (vcluster only with a cluster near it; k8s only with a shared PostgreSQL). Placement without --agent considers only agents that can."},
        "hubPeer": {"type": "string", "description": "The peer URL of the hub replica the agent's link is on (kflex-hub --peer-url), where other replicas pass tunnel streams on to."},
        "tunnelVersion": {"type": "integer", "format": "int64", "description": "The version of the hub tunnel's stream frames the agent speaks (docs/dev/tunnel.md); absent: an agent without the tunnel, whose control planes the hub cannot reach for a user."},
        "allocated": {"type": "object", "additionalProperties": {"type": "string"}, "description": "What the control planes placed on it have reserved."},
        "controlPlanes": {"type": "integer", "format": "int64", "description": "Control planes placed on this agent."},
        "lastHeartbeatTime": {"type": "string", "format": "date-time", "description": "When the hub last recorded a lease renewal (written at most every few renewals)."},
        "acknowledgedRevision": {"type": "integer", "format": "int64", "description": "The hub revision of desired state the agent has stored."},
        "certificate": {
          "type": "object",
          "description": "The agent's current client certificate.",
          "properties": {
            "publicKeyPin": {"type": "string", "description": "sha256:<hex> of the agent's public key; only certificates for this key are accepted."},
            "notAfter": {"type": "string", "format": "date-time"},
            "pendingPublicKeyPin": {"type": "string", "description": "The key of a renewed certificate not yet used to connect; accepted as well until it is, then it replaces publicKeyPin."},
            "pendingNotAfter": {"type": "string", "format": "date-time"}
          }
        }
      }
    }
  }
})";

constexpr const char* kBootstrapTokenSchema = R"({
  "type": "object",
  "description": "BootstrapToken lets an agent enroll once (like a kubeadm bootstrap token). The name is the token's public id; the secret is stored only as a hash.",
  "properties": {
    "apiVersion": {"type": "string", "description": "tenancy.kflex.kubestellar.org/v1alpha1."},
    "kind": {"type": "string", "description": "BootstrapToken."},
    "metadata": {"type": "object"},
    "spec": {
      "type": "object",
      "required": ["usages"],
      "properties": {
        "secret": {"type": "string", "description": "Write-only: the 16-character secret part of the token. The hub stores its SHA-256 in secretHash and never returns it."},
        "secretHash": {"type": "string", "description": "Hex SHA-256 of the secret."},
        "description": {"type": "string", "description": "What the token is for."},
        "expiration": {"type": "string", "format": "date-time", "description": "When the token stops working (RFC 3339). Absent: never."},
        "usages": {"type": "array", "items": {"type": "string", "enum": ["enroll", "tunnel"]}, "description": "What the token may be used for: enroll (an agent's enrollment), tunnel (reaching the control planes in controlPlanes through the hub)."},
        "controlPlanes": {"type": "array", "items": {"type": "string"}, "description": "With usage tunnel: the control planes the token reaches through the hub (kflex ctx makes one per control plane)."},
        "singleUse": {"type": "boolean", "default": false, "description": "The token works for one enrollment only."}
      }
    },
    "status": {
      "type": "object",
      "properties": {
        "uses": {"type": "integer", "format": "int64", "description": "Successful enrollments with this token."},
        "lastUsedTime": {"type": "string", "format": "date-time"},
        "lastUsedBy": {"type": "string", "description": "The agent that last enrolled with it."}
      }
    }
  }
})";

bool allOf(std::string_view s, size_t n) {
  if (s.size() != n) {
    return false;
  }
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
      return false;
    }
  }
  return true;
}

void validateBootstrapToken(const Json& obj, std::vector<FieldError>& errors) {
  const Json& meta = obj.at("metadata");
  std::string name = meta.value("name", "");
  if (!name.empty() && !allOf(name, 6)) {
    errors.push_back({"FieldValueInvalid", "metadata.name",
                      "Invalid value: " + Json(name).dump() + ": a token id is 6 characters of [a-z0-9]"});
  }
  const Json spec = obj.value("spec", Json::object());
  bool has_secret = spec.contains("secret");
  if (has_secret && !(spec["secret"].is_string() && allOf(spec["secret"].get<std::string>(), 16))) {
    // Never echo the secret back.
    errors.push_back({"FieldValueInvalid", "spec.secret", "Invalid value: a token secret is 16 characters of [a-z0-9]"});
  }
  if (auto h = spec.find("secretHash"); h != spec.end()) {
    std::string v = h->is_string() ? h->get<std::string>() : "";
    bool ok = v.size() == 64 && v.find_first_not_of("0123456789abcdef") == std::string::npos;
    if (!ok) {
      errors.push_back({"FieldValueInvalid", "spec.secretHash", "Invalid value: must be 64 lower-case hex digits"});
    }
  } else if (!has_secret) {
    errors.push_back({"FieldValueRequired", "spec.secret", "Required value: the token's secret"});
  }
  const bool tunnel = spec.contains("usages") && spec["usages"].is_array() &&
                      std::find(spec["usages"].begin(), spec["usages"].end(), Json("tunnel")) != spec["usages"].end();
  auto cps = spec.find("controlPlanes");
  if (tunnel && (cps == spec.end() || !cps->is_array() || cps->empty())) {
    errors.push_back({"FieldValueRequired", "spec.controlPlanes",
                      "Required value: a tunnel token names the control planes it reaches"});
  } else if (!tunnel && cps != spec.end()) {
    errors.push_back({"FieldValueForbidden", "spec.controlPlanes", "Forbidden: only a token with usage tunnel names control planes"});
  }
  if (cps != spec.end() && cps->is_array()) {
    for (size_t i = 0; i < cps->size(); ++i) {
      const Json& n = (*cps)[i];
      if (!n.is_string() || !isDns1123Subdomain(n.get<std::string>())) {
        errors.push_back({"FieldValueInvalid", "spec.controlPlanes[" + std::to_string(i) + "]",
                          "Invalid value: " + n.dump() + ": a control plane's name"});
      }
    }
  }
  if (auto e = spec.find("expiration"); e != spec.end()) {
    if (!e->is_string() || !parseTime(e->get<std::string>())) {
      errors.push_back({"FieldValueInvalid", "spec.expiration",
                        "Invalid value: " + e->dump() + ": must be an RFC 3339 time such as 2026-01-02T15:04:05Z"});
    }
  }
}

void admitBootstrapToken(Json& obj) {
  auto spec = obj.find("spec");
  if (spec == obj.end() || !spec->is_object()) {
    return;
  }
  if (auto s = spec->find("secret"); s != spec->end() && s->is_string()) {
    (*spec)["secretHash"] = tls::sha256Hex(s->get<std::string>());
    spec->erase("secret");
  }
}

void validateControlPlaneUpdate(const Json& old_obj, const Json& new_obj, std::vector<FieldError>& errors) {
  const Json old_spec = old_obj.value("spec", Json::object());
  const Json new_spec = new_obj.value("spec", Json::object());
  // Adopted (its kubeconfig made): another bootstrap secret would silently swap in another
  // cluster's credentials under the same name.
  if (old_obj.value("status", Json::object()).contains("secretRef") &&
      old_spec.value("bootstrapSecretRef", Json()) != new_spec.value("bootstrapSecretRef", Json())) {
    errors.push_back({"FieldValueForbidden", "spec.bootstrapSecretRef",
                      "Forbidden: the cluster is adopted already; to adopt another one, delete this control plane and "
                      "adopt it again (kflex adopt)"});
  }
  std::string placed = old_obj.value("status", Json::object()).value("agent", "");
  if (placed.empty()) {
    return;
  }
  auto backend = [](const Json& spec) {
    auto it = spec.find("backend");
    return it != spec.end() && it->is_string() ? it->get<std::string>() : std::string("shared");
  };
  if (backend(old_spec) != backend(new_spec)) {
    errors.push_back({"FieldValueForbidden", "spec.backend",
                      "Forbidden: a placed control plane keeps its datastore (\"" + backend(old_spec) +
                          "\"): another backend would start it empty; delete and re-create it to change the backend"});
  }
  auto annotation = [](const Json& o, const char* key) {
    const Json meta = o.value("metadata", Json::object());
    const Json ann = meta.value("annotations", Json::object());
    return ann.is_object() ? ann.value(key, "") : std::string();
  };
  for (const char* key : {kAgentAnnotation, kAgentSelectorAnnotation}) {
    if (annotation(old_obj, key) != annotation(new_obj, key)) {
      errors.push_back({"FieldValueForbidden", std::string("metadata.annotations[") + key + "]",
                        "Forbidden: the control plane is placed on agent \"" + placed +
                            "\" and stays there; moving a control plane is not supported yet (delete and re-create it "
                            "to place it elsewhere)"});
    }
  }
  std::string now_agent = new_obj.value("status", Json::object()).value("agent", "");
  if (now_agent != placed) {
    errors.push_back({"FieldValueForbidden", "status.agent",
                      "Forbidden: the control plane is placed on agent \"" + placed + "\" and stays there"});
  }
  if (new_obj.value("spec", Json::object()).value("type", "") != old_obj.value("spec", Json::object()).value("type", "")) {
    errors.push_back({"FieldValueForbidden", "spec.type", "Forbidden: the type of a placed control plane cannot change"});
  }
}

Json schemaWithConditions(const char* text) {
  std::string s = text;
  for (size_t pos = s.find("CONDITION"); pos != std::string::npos; pos = s.find("CONDITION")) {
    s.replace(pos, 9, kConditionSchema);
  }
  return Json::parse(s);
}

std::vector<PrinterColumn> tenancyColumns() {
  return {
      {"SYNCED", "string", ".status.conditions[?(@.type=='Synced')].status", "Synced condition status", 0},
      {"READY", "string", ".status.conditions[?(@.type=='Ready')].status", "Ready condition status", 0},
      {"TYPE", "string", ".spec.type", "Control plane type", 0},
      {"AGE", "date", ".metadata.creationTimestamp", "Time since creation", 0},
  };
}

// A PostCreateHook: templates of a bounded size, and kflex's annotations with values it understands.
void validatePostCreateHook(const Json& obj, std::vector<FieldError>& errors) {
  constexpr size_t kMaxTemplateBytes = 512 * 1024;  // rendered per control plane, carried to agents
  const Json spec = obj.value("spec", Json::object());
  size_t bytes = 0;
  for (const char* field : {"templates", "jobs"}) {
    if (spec.contains(field)) {
      bytes += spec[field].dump().size();
    }
  }
  if (bytes > kMaxTemplateBytes) {
    errors.push_back({"FieldValueTooLong", "spec.templates",
                      "Too long: spec.templates and spec.jobs hold " + std::to_string(bytes) +
                          " bytes of JSON; at most " + std::to_string(kMaxTemplateBytes) +
                          " are allowed (split the hook, or install large manifests from a Job)"});
  }
  const Json ann = obj.value("metadata", Json::object()).value("annotations", Json::object());
  if (!ann.is_object()) {
    return;
  }
  if (ann.contains(kube::kHookTargetAnnotation)) {
    std::string target = ann[kube::kHookTargetAnnotation].is_string() ? ann[kube::kHookTargetAnnotation].get<std::string>() : "";
    if (target != "hosted" && target != "hosting") {
      errors.push_back({"FieldValueNotSupported", std::string("metadata.annotations[") + kube::kHookTargetAnnotation + "]",
                        "Unsupported value: \"" + target + "\": supported values: \"hosted\", \"hosting\""});
    }
  }
  if (ann.contains(kube::kHookTimeoutAnnotation)) {
    std::string text = ann[kube::kHookTimeoutAnnotation].is_string() ? ann[kube::kHookTimeoutAnnotation].get<std::string>() : "";
    auto d = parseDuration(text);
    if (!d || d->count() <= 0) {
      errors.push_back({"FieldValueInvalid", std::string("metadata.annotations[") + kube::kHookTimeoutAnnotation + "]",
                        "Invalid value: \"" + text + "\": must be a positive duration such as 90s, 10m or 1h"});
    }
  }
}

void validateControlPlane(const Json& obj, std::vector<FieldError>& errors) {
  const Json spec = obj.value("spec", Json::object());
  const Json ann = obj.value("metadata", Json::object()).value("annotations", Json::object());
  if (ann.is_object()) {
    std::string type = spec.value("type", "");
    for (const char* key : {kAgentAnnotation, kAgentSelectorAnnotation}) {
      // (An external one may name the agent that adopts and probes it: a cluster only that
      // edge host reaches.)
      bool external_agent = isAdopted(type) && std::string(key) == kAgentAnnotation;
      if (ann.contains(key) && !runsOnAgent(type) && !external_agent) {
        errors.push_back({"FieldValueInvalid", std::string("metadata.annotations[") + key + "]",
                          "Invalid value: control planes of type \"" + type +
                              "\" do not run on an agent; placement applies to " +
                              joinNames(typeNames([](const ControlPlaneType& t) { return t.runs_on == RunsOn::Agent; }),
                                        " and ") +
                              " (and kflex.kubestellar.org/agent to " +
                              joinNames(typeNames([](const ControlPlaneType& t) { return t.adopted; }), " and ") +
                              " ones an agent adopts)"});
      }
    }
    if (auto a = ann.find(kAgentAnnotation); a != ann.end() && a->is_string() && !isDns1123Label(a->get<std::string>())) {
      errors.push_back({"FieldValueInvalid", std::string("metadata.annotations[") + kAgentAnnotation + "]",
                        "Invalid value: " + a->dump() + ": must be an agent name"});
    }
    if (auto sel = ann.find(kAgentSelectorAnnotation); sel != ann.end() && sel->is_string()) {
      if (auto parsed = LabelSelector::parse(sel->get<std::string>()); !parsed) {
        errors.push_back({"FieldValueInvalid", std::string("metadata.annotations[") + kAgentSelectorAnnotation + "]",
                          "Invalid value: " + sel->dump() + ": " + parsed.error().message});
      }
    }
  }
  if (spec.value("type", "") == kDeprecatedType) {
    const std::string ocm(kDeprecatedType);
    errors.push_back({"FieldValueNotSupported", "spec.type",
                      "Unsupported value: \"" + ocm + "\": type " + ocm + " is deprecated upstream and not run by kflex; "
                      "supported values: " + joinNames(typeNames([](const ControlPlaneType&) { return true; }), ", ", true)});
  }
  if (auto hooks = spec.find("postCreateHooks"); hooks != spec.end() && hooks->is_array()) {
    for (size_t i = 0; i < hooks->size(); ++i) {
      const Json& h = (*hooks)[i];
      if (h.is_object() && h.contains("hookName") && h["hookName"].is_string() &&
          h["hookName"].get<std::string>().empty()) {
        errors.push_back({"FieldValueRequired", "spec.postCreateHooks[" + std::to_string(i) + "].hookName",
                          "Required value: the name of a PostCreateHook"});
      }
    }
  }
}

}  // namespace

Registry kflexRegistry() {
  Registry r;
  ResourceType cp;
  cp.group = kTenancyGroup;
  cp.version = kTenancyVersion;
  cp.kind = "ControlPlane";
  cp.list_kind = "ControlPlaneList";
  cp.plural = "controlplanes";
  cp.singular = "controlplane";
  cp.short_names = {"cp", "cps"};
  cp.categories = {"kflex"};
  cp.schema = schemaWithConditions(kControlPlaneSchema);
  cp.schema["properties"]["spec"]["properties"]["type"] = specTypeSchema();  // (its enum from the type table)
  cp.columns = tenancyColumns();
  cp.validate = validateControlPlane;
  cp.validate_update = validateControlPlaneUpdate;
  // A control plane an agent runs stays until the agent has stopped it and removed its data; a
  // host one until the hub has removed its account from the hosting cluster. (An adopted one:
  // kflex made nothing there.)
  cp.on_create = [](Json& obj) {
    const ControlPlaneType* type = findControlPlaneType(obj.value("spec", Json::object()).value("type", ""));
    if (type == nullptr || type->adopted) {
      return;
    }
    Json& f = obj["metadata"]["finalizers"];
    if (!f.is_array()) {
      f = Json::array();
    }
    if (std::find(f.begin(), f.end(), Json(kControlPlaneFinalizer)) == f.end()) {
      f.push_back(kControlPlaneFinalizer);
    }
  };
  r.add(std::move(cp));

  ResourceType pch;
  pch.group = kTenancyGroup;
  pch.version = kTenancyVersion;
  pch.kind = "PostCreateHook";
  pch.list_kind = "PostCreateHookList";
  pch.plural = "postcreatehooks";
  pch.singular = "postcreatehook";
  pch.short_names = {"pch", "pchs"};
  pch.categories = {"kflex"};
  pch.schema = schemaWithConditions(kPostCreateHookSchema);
  pch.columns = tenancyColumns();
  pch.name_is_label = false;
  pch.validate = validatePostCreateHook;
  r.add(std::move(pch));

  ResourceType agent;
  agent.group = kTenancyGroup;
  agent.version = kTenancyVersion;
  agent.kind = "Agent";
  agent.list_kind = "AgentList";
  agent.plural = "agents";
  agent.singular = "agent";
  agent.short_names = {"ag"};
  agent.categories = {"kflex"};
  agent.schema = Json::parse(kAgentSchema);
  agent.columns = {
      {"READY", "string", ".status.conditions[?(@.type=='Ready')].status", "Ready condition status", 0},
      {"VERSION", "string", ".status.agentVersion", "kflex-agent version", 0},
      {"CONTROL-PLANES", "integer", ".status.controlPlanes", "Control planes placed on the agent", 0},
      {"LAST-SEEN", "date", ".status.lastHeartbeatTime", "Last recorded lease renewal", 0},
      {"AGE", "date", ".metadata.creationTimestamp", "Time since enrollment", 0},
      {"ADDRESS", "string", ".status.address", "Where the link comes from", 1},
      {"OS", "string", ".status.os", "Operating system", 1},
      {"ARCH", "string", ".status.arch", "CPU architecture", 1},
  };
  r.add(std::move(agent));

  ResourceType token;
  token.group = kTenancyGroup;
  token.version = kTenancyVersion;
  token.kind = "BootstrapToken";
  token.list_kind = "BootstrapTokenList";
  token.plural = "bootstraptokens";
  token.singular = "bootstraptoken";
  token.short_names = {"bt"};
  token.categories = {"kflex"};
  token.schema = Json::parse(kBootstrapTokenSchema);
  token.columns = {
      {"EXPIRATION", "string", ".spec.expiration", "When the token stops working", 0},
      {"USAGES", "string", ".spec.usages", "What it may be used for", 0},
      {"SINGLE-USE", "boolean", ".spec.singleUse", "Works for one enrollment only", 0},
      {"USES", "integer", ".status.uses", "Enrollments made with it", 0},
      {"DESCRIPTION", "string", ".spec.description", "What it is for", 0},
      {"AGE", "date", ".metadata.creationTimestamp", "Time since creation", 0},
  };
  token.validate = validateBootstrapToken;
  token.admit = admitBootstrapToken;
  r.add(std::move(token));
  return r;
}

bool servedByAgent(const Json& cp) {
  if (!cp.is_object()) {
    return false;
  }
  std::string type = cp.value("spec", Json::object()).value("type", "");
  if (runsOnAgent(type)) {
    return true;
  }
  const Json ann = cp.value("metadata", Json::object()).value("annotations", Json::object());
  return isAdopted(type) && ann.is_object() && ann.contains(kAgentAnnotation);
}

bool isBootstrapToken(std::string_view s) {
  return s.size() == 23 && s[6] == '.' && allOf(s.substr(0, 6), 6) && allOf(s.substr(7), 16);
}

}  // namespace kflex::model
