// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/model/control_plane_types.hpp"
#include "shared/model/schema.hpp"

namespace kflex::model {

/// A printer column, as CRDs declare additionalPrinterColumns.
struct PrinterColumn {
  std::string name;         ///< Header, e.g. "READY".
  std::string type;         ///< string, integer, number, boolean or date.
  std::string json_path;    ///< Simple JSONPath: ".spec.type", ".status.conditions[?(@.type=='Ready')].status".
  std::string description;  ///< Shown by kubectl with --show-kind style tools.
  int priority = 0;         ///< 0 = always shown; >0 only with -o wide.
};

/// Everything the generic API machinery needs to serve one kind.
struct ResourceType {
  std::string group;
  std::string version;
  std::string kind;
  std::string list_kind;
  std::string plural;
  std::string singular;
  std::vector<std::string> short_names;
  std::vector<std::string> categories;
  bool namespaced = false;
  bool has_status = true;  ///< The status subresource exists.
  bool name_is_label = true;  ///< Names must be DNS-1123 labels (else DNS-1123 subdomains).
  Json schema;             ///< OpenAPI v3 schema of the whole object.
  /// `schema` prepared for validation; set by Registry::add.
  std::shared_ptr<const CompiledSchema> compiled_schema;
  std::vector<PrinterColumn> columns;
  /// Rules beyond the schema (name format, cross-field checks). Appends to errors.
  std::function<void(const Json& obj, std::vector<FieldError>& errors)> validate;
  /// Rules about changes (immutable fields). Appends to errors. Runs on updates, after validate.
  std::function<void(const Json& old_obj, const Json& new_obj, std::vector<FieldError>& errors)> validate_update;
  /// Server-side rewriting after validation, before storage (e.g. a write-only secret becomes its
  /// hash, as a Secret's stringData becomes data). Runs on create and update.
  std::function<void(Json& obj)> admit;
  /// Server-side additions on create only (a controller's finalizer). Runs after validation.
  std::function<void(Json& obj)> on_create;

  /// "group/version", or "version" for the core group.
  std::string apiVersion() const { return group.empty() ? version : group + "/" + version; }
  /// "plural.group" (the resource's qualified name in messages, e.g. controlplanes.tenancy...).
  std::string qualifiedKind() const { return group.empty() ? kind : kind + "." + group; }
};

/// The set of kinds a server offers. Immutable once built; shareable across threads.
class Registry {
 public:
  void add(ResourceType type);
  /// Finds by group, version and plural; nullptr when absent.
  const ResourceType* find(const std::string& group, const std::string& version,
                           const std::string& plural) const;
  /// Finds by apiVersion and kind; nullptr when absent.
  const ResourceType* findKind(const std::string& api_version, const std::string& kind) const;
  const std::vector<std::unique_ptr<ResourceType>>& all() const { return types_; }
  /// Groups in registration order, each once.
  std::vector<std::string> groups() const;

 private:
  std::vector<std::unique_ptr<ResourceType>> types_;
};

/// The API group of kflex's kinds.
inline constexpr const char* kTenancyGroup = "tenancy.kflex.kubestellar.org";
inline constexpr const char* kTenancyVersion = "v1alpha1";

/// A Kubernetes quantity ("500m", "2", "16Gi") as an integer: in thousandths when `millis`
/// (CPU), else as is (bytes); nullopt when malformed or negative.
std::optional<int64_t> parseQuantity(const std::string& q, bool millis);

/// The kinds the hub serves: ControlPlane and PostCreateHook (as upstream KubeFlex), and kflex's
/// own Agent and BootstrapToken.
Registry kflexRegistry();

/// Runs a kind's own rules (`validate`) on an object the schema may have refused: rules that read
/// a field of the wrong type (which the schema already reported) stop there instead of throwing.
void applyKindRules(const ResourceType& t, const Json& obj, std::vector<FieldError>& errors);

/// Annotation and label keys and condition values kflex uses.
/// Upstream's finalizer: a ControlPlane that runs somewhere stays until its runtime is gone.
inline constexpr const char* kControlPlaneFinalizer = "kflex.kubestellar.org/finalizer";
inline constexpr const char* kAgentGroup = "kflex:agents";  ///< Certificate O of every agent.
inline constexpr const char* kAgentAnnotation = "kflex.kubestellar.org/agent";  ///< Place on this agent.
inline constexpr const char* kAgentSelectorAnnotation = "kflex.kubestellar.org/agent-selector";  ///< Or on one matching.
/// Reasons of a ControlPlane's Scheduled=False condition (docs/api.md); Synced and Ready say
/// Unschedulable for all three.
inline constexpr const char* kReasonUnschedulable = "Unschedulable";  ///< No matching agent is there or has room (yet).
inline constexpr const char* kReasonNoAgentForType = "NoAgentForType";  ///< No matching agent can run the type.
inline constexpr const char* kReasonInvalidSelector = "InvalidSelector";  ///< The agent-selector annotation is malformed.
/// True for control planes an agent serves: those that run on one, and external ones adopted and
/// probed by the agent their kflex.kubestellar.org/agent annotation names.
bool servedByAgent(const Json& cp);

/// True when s is a bootstrap token "[a-z0-9]{6}.[a-z0-9]{16}".
bool isBootstrapToken(std::string_view s);

/// Checks metadata the way kube-apiserver checks ObjectMeta (name, labels, annotations,
/// finalizers, no unknown fields). Appends to errors.
void validateObjectMeta(const Json& meta, bool namespaced, bool name_is_label, std::vector<FieldError>& errors);
/// The OpenAPI schema published for metadata (ObjectMeta), for explain.
const Json& objectMetaSchema();

/// Evaluates a printer-column JSONPath on obj; null when nothing matches.
Json evalJsonPath(const Json& obj, const std::string& path);

}  // namespace kflex::model
