// SPDX-License-Identifier: Apache-2.0
// Everything the hub and the tools decode from text a client, a file or a hook author wrote:
// JSON and YAML bodies (validated against the ControlPlane schema, as the API does), label and
// field selectors, kubeconfigs and PostCreateHook templates. The first byte picks the decoder.
#include <string>
#include <string_view>

#include "fuzz/fuzz_target.hpp"
#include "shared/common/json_decode.hpp"
#include "shared/config/kubeconfig.hpp"
#include "shared/config/yaml_json.hpp"
#include "shared/kube/template.hpp"
#include "shared/model/resource.hpp"
#include "shared/model/schema.hpp"
#include "shared/model/selector.hpp"

namespace {

using Json = nlohmann::json;

// What the API does with a decoded object: validate it against every kind's schema and rules,
// then serialize it (dumpSafe never throws; a plain dump may, on text that is not UTF-8).
void exercise(const Json& obj) {
  static const kflex::model::Registry registry = kflex::model::kflexRegistry();
  if (!obj.is_object()) {
    return;
  }
  for (const auto& t : registry.all()) {
    Json copy = obj;
    if (!copy.contains("metadata") || !copy["metadata"].is_object()) {
      copy["metadata"] = Json::object();
    }
    std::vector<kflex::model::FieldError> errors;
    std::vector<std::string> dropped;
    kflex::model::validateObjectMeta(copy["metadata"], t->namespaced, t->name_is_label, errors);
    Json metadata = std::move(copy["metadata"]);
    copy.erase("metadata");
    kflex::model::validateAndDefault(*t->compiled_schema, copy, "", kflex::model::UnknownFields::Drop, errors, dropped);
    copy["metadata"] = std::move(metadata);
    kflex::model::applyKindRules(*t, copy, errors);
    (void)kflex::dumpSafe(copy);
  }
}

}  // namespace

KFLEX_FUZZ_TARGET(decoders) {
  if (size == 0) {
    return 0;
  }
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 6) {
    case 0: {
      std::vector<std::string> duplicates;
      if (auto j = kflex::decodeJson(text, {kflex::kMaxJsonDepth, &duplicates})) {
        exercise(*j);
      }
      break;
    }
    case 1:
      if (auto j = kflex::config::yamlToJson(text)) {
        exercise(*j);
        (void)kflex::config::jsonToYaml(*j);
      }
      break;
    case 2:
      if (auto s = kflex::model::LabelSelector::parse(std::string(text))) {
        (void)s->matches({{"app", "x"}, {"tier", "edge"}});
      }
      break;
    case 3:
      if (auto s = kflex::model::FieldSelector::parse(std::string(text))) {
        (void)s->matches("cp1");
      }
      break;
    case 4:
      if (auto k = kflex::config::Kubeconfig::parse(std::string(text))) {
        (void)k->access();
      }
      break;
    case 5:
      (void)kflex::kube::renderTemplate(text, {{"Namespace", "cp1-system"}, {"ControlPlaneName", "cp1"}}, "fuzz");
      break;
  }
  return 0;
}
