// SPDX-License-Identifier: Apache-2.0
// PostCreateHook template rendering: what upstream KubeFlex's sample hooks use, and the errors.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "shared/kube/hooks.hpp"
#include "shared/kube/template.hpp"

namespace kflex::kube {
namespace {

using Json = nlohmann::json;

const std::map<std::string, std::string> kVars = {
    {"Namespace", "cp1-system"}, {"ControlPlaneName", "cp1"}, {"HookName", "kubestellar"}, {"MESSAGE", "hello"}};

TEST(Template, RendersUpstreamSampleHooksOverTheirJson) {
  // A template of upstream's kubestellar sample hook, as the controller renders it: its JSON.
  Json tmpl = {{"apiVersion", "rbac.authorization.k8s.io/v1"},
               {"kind", "ClusterRoleBinding"},
               {"metadata", {{"name", "{{.Namespace}}-{{.HookName}}"}}},
               {"roleRef", {{"apiGroup", "rbac.authorization.k8s.io"}, {"kind", "ClusterRole"},
                            {"name", "{{.Namespace}}-{{.HookName}}"}}},
               {"subjects", Json::array({{{"kind", "ServiceAccount"}, {"name", "default"},
                                          {"namespace", "{{.Namespace}}"}}})}};
  auto out = renderTemplate(tmpl.dump(), kVars, "kubestellar");
  ASSERT_TRUE(out) << out.error().message;
  Json obj = Json::parse(out.value());
  EXPECT_EQ(obj["metadata"]["name"], "cp1-system-kubestellar");
  EXPECT_EQ(obj["subjects"][0]["namespace"], "cp1-system");
  Json job = {{"args", Json::array({"--set", "ControlPlaneName={{.ControlPlaneName}}"})},
              {"command", Json::array({"echo", "{{ .MESSAGE }}"})}};
  obj = Json::parse(renderTemplate(job.dump(), kVars, "hello").value());
  EXPECT_EQ(obj["args"][1], "ControlPlaneName=cp1");
  EXPECT_EQ(obj["command"][1], "hello");
}

TEST(Template, GoSyntaxBeyondVariables) {
  EXPECT_EQ(renderTemplate("a  {{- .MESSAGE -}}  b", kVars, "t").value(), "ahellob");
  EXPECT_EQ(renderTemplate("a {{/* a comment */}}b", kVars, "t").value(), "a b");
  EXPECT_EQ(renderTemplate("a {{- /* trimmed */ -}} b", kVars, "t").value(), "ab");
  EXPECT_EQ(renderTemplate("{{\"x\\ty\"}}{{`raw`}}", kVars, "t").value(), "x\tyraw");
  EXPECT_EQ(renderTemplate("no actions at all", kVars, "t").value(), "no actions at all");
  EXPECT_EQ(renderTemplate("{{-1}}", {}, "t").error().message,
            "template: t:1:1: unsupported action {{-1}}: kflex renders variables ({{.Name}}), string literals and "
            "comments, as KubeFlex's hooks use them");
  // A value is inserted as it is, never rendered again.
  EXPECT_EQ(renderTemplate("{{.X}}", {{"X", "{{.Y}}"}}, "t").value(), "{{.Y}}");
}

TEST(Template, ErrorsNameTheTemplateLineAndColumn) {
  auto r = renderTemplate("line one\n  name: {{.Missing}}\n", kVars, "hook1[0]");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message.rfind("template: hook1[0]:2:9: executing \"hook1[0]\" at <.Missing>: map has no entry "
                                    "for key \"Missing\"",
                                    0),
            0u)
      << r.error().message;
  EXPECT_NE(renderTemplate("x {{ .A", kVars, "t").error().message.find("t:1:3: unclosed action"), std::string::npos);
  EXPECT_NE(renderTemplate("{{ if .MESSAGE }}x{{ end }}", kVars, "t").error().message.find("unsupported action"),
            std::string::npos);
  EXPECT_NE(renderTemplate("{{ .A | quote }}", kVars, "t").error().message.find("unsupported"), std::string::npos);
  EXPECT_NE(renderTemplate("{{ }}", kVars, "t").error().message.find("missing value"), std::string::npos);
  EXPECT_NE(renderTemplate("{{/* open", kVars, "t").error().message.find("unclosed comment"), std::string::npos);
  EXPECT_NE(renderTemplate("{{\"bad\\q\"}}", kVars, "t").error().message.find("unsupported"), std::string::npos);
}

}  // namespace
}  // namespace kflex::kube

namespace kflex::kube {
namespace {

TEST(Hooks, UsesInUpstreamOrderEachOnce) {
  Json cp = {{"metadata", {{"name", "cp1"}}},
             {"spec", {{"type", "k3s"},
                       {"postCreateHook", "legacy"},
                       {"postCreateHookVars", {{"A", "from-legacy"}}},
                       {"postCreateHooks", Json::array({{{"hookName", "one"}, {"vars", {{"B", "b"}}}},
                                                        {{"hookName", "legacy"}, {"vars", {{"A", "ignored"}}}},
                                                        {{"hookName", "two"}}})}}}};
  auto uses = hookUses(cp);
  ASSERT_EQ(uses.size(), 3u);
  EXPECT_EQ(uses[0].hook, "legacy");
  EXPECT_EQ(uses[0].vars.at("A"), "from-legacy");
  EXPECT_EQ(uses[1].hook, "one");
  EXPECT_EQ(uses[2].hook, "two");
  EXPECT_TRUE(uses[2].vars.empty());
  EXPECT_TRUE(hookUses(Json{{"spec", {{"type", "k8s"}}}}).empty());
}

TEST(Hooks, VariablePrecedenceAsUpstream) {
  Json cp = {{"metadata", {{"name", "cp1"}}},
             {"spec", {{"globalVars", {{"G", "global"}, {"D", "global-wins-over-default"}}}}}};
  Json hook = {{"metadata", {{"name", "hello"}}},
               {"spec", {{"defaultVars", Json::array({{{"name", "D"}, {"value", "default"}},
                                                      {{"name", "U"}, {"value", "default"}},
                                                      {{"name", "ONLY"}, {"value", "default"}},
                                                      {{"name", "Namespace"}, {"value", "never"}}})}}}};
  HookUse use{"hello", {{"U", "use-wins"}, {"G", "use-wins-over-global"}, {"HookName", "never"}}};
  auto vars = hookVars(cp, hook, use);
  EXPECT_EQ(vars.at("ONLY"), "default");
  EXPECT_EQ(vars.at("D"), "global-wins-over-default");
  EXPECT_EQ(vars.at("G"), "use-wins-over-global");
  EXPECT_EQ(vars.at("U"), "use-wins");
  EXPECT_EQ(vars.at("Namespace"), "cp1-system");
  EXPECT_EQ(vars.at("ControlPlaneName"), "cp1");
  EXPECT_EQ(vars.at("HookName"), "hello");
}

}  // namespace
}  // namespace kflex::kube
