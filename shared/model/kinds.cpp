// SPDX-License-Identifier: Apache-2.0
// The kinds of tenancy.kflex.kubestellar.org/v1alpha1, with the fields, enums, defaults and
// printer columns of upstream KubeFlex's CRDs, so that objects written for KubeFlex apply unchanged.
#include "shared/model/resource.hpp"

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
        "type": {"type": "string", "enum": ["k8s", "ocm", "vcluster", "host", "external", "k3s"], "description": "Kind of control plane: k8s (Kine + kube-apiserver + kube-controller-manager), k3s, vcluster, host (the hub's hosting cluster) or external (an adopted cluster). ocm is accepted by the schema for compatibility but rejected by kflex."},
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

void validateControlPlane(const Json& obj, std::vector<FieldError>& errors) {
  const Json spec = obj.value("spec", Json::object());
  if (spec.value("type", "") == "ocm") {
    errors.push_back({"FieldValueNotSupported", "spec.type",
                      "Unsupported value: \"ocm\": type ocm is deprecated upstream and not run by kflex; "
                      "supported values: \"k8s\", \"k3s\", \"vcluster\", \"host\", \"external\""});
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
  cp.columns = tenancyColumns();
  cp.validate = validateControlPlane;
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
  r.add(std::move(pch));
  return r;
}

}  // namespace kflex::model
