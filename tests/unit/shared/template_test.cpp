// SPDX-License-Identifier: Apache-2.0
// PostCreateHook template rendering: what upstream KubeFlex's sample hooks use, and the errors.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "shared/kube/hook_runner.hpp"
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

// Shaped as upstream's sample hooks (a Role, its binding and a helm Job using HookName and
// Namespace; a Job echoing a default var), with the order mixed up on purpose.
Json sampleHook() {
  return Json::parse(R"({
    "apiVersion": "tenancy.kflex.kubestellar.org/v1alpha1", "kind": "PostCreateHook",
    "metadata": {"name": "tools"},
    "spec": {
      "defaultVars": [{"name": "MESSAGE", "value": "from defaults"}],
      "templates": [
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "{{.HookName}}"},
         "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "helm",
           "args": ["upgrade", "--install", "-n", "{{.Namespace}}", "{{.HookName}}", "--set",
                    "ControlPlaneName={{.ControlPlaneName}}", "{{ .MESSAGE }}"]}], "restartPolicy": "Never"}},
                  "backoffLimit": 1}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "{{.HookName}}"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "{{.HookName}}"},
         "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "{{.Namespace}}"}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "{{.HookName}}"},
         "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "extra-{{.ControlPlaneName}}"}}
      ],
      "jobs": [{"metadata": {"name": "second"}, "spec": {"template": {"spec": {"containers": [
        {"name": "c", "image": "busybox", "command": ["echo", "{{.MESSAGE}}"]}], "restartPolicy": "Never"}}}}]
    }})");
}

TEST(Hooks, RendersEveryTemplateInDependencyOrder) {
  Json cp = {{"metadata", {{"name", "cp1"}}}, {"spec", {{"type", "k3s"}}}};
  auto objects = renderHook(cp, sampleHook(), HookUse{"tools", {{"MESSAGE", "from the use"}}});
  ASSERT_TRUE(objects) << objects.error().message;
  ASSERT_EQ(objects->size(), 5u);
  std::vector<std::string> kinds;
  for (const auto& o : *objects) {
    kinds.push_back(o["kind"]);
  }
  EXPECT_EQ(kinds, (std::vector<std::string>{"Namespace", "Role", "RoleBinding", "Job", "Job"}));
  EXPECT_EQ((*objects)[0]["metadata"]["name"], "extra-cp1");
  EXPECT_EQ((*objects)[2]["subjects"][0]["namespace"], "cp1-system");
  const Json& helm = (*objects)[3];
  EXPECT_EQ(helm["metadata"]["name"], "tools");
  EXPECT_EQ(helm["spec"]["template"]["spec"]["containers"][0]["args"][3], "cp1-system");
  EXPECT_EQ(helm["spec"]["template"]["spec"]["containers"][0]["args"][6], "ControlPlaneName=cp1");
  EXPECT_EQ(helm["spec"]["template"]["spec"]["containers"][0]["args"][7], "from the use");
  const Json& second = (*objects)[4];  // spec.jobs: a batch/v1 Job
  EXPECT_EQ(second["apiVersion"], "batch/v1");
  EXPECT_EQ(second["metadata"]["name"], "second");
  EXPECT_EQ(second["spec"]["template"]["spec"]["containers"][0]["command"][1], "from the use");
}

TEST(Hooks, ABadTemplateFailsTheWholeHookNamingTemplateAndLine) {
  Json cp = {{"metadata", {{"name", "cp1"}}}};
  Json hook = sampleHook();
  hook["spec"]["templates"][2]["rules"][0]["verbs"][0] = "{{.UNDEFINED}}";
  auto out = renderHook(cp, hook, HookUse{"tools", {}});
  ASSERT_FALSE(out);
  // The third template, rendered from indented JSON: the line of the field, not line 1.
  EXPECT_NE(out.error().message.find("template: tools.templates[2]:"), std::string::npos) << out.error().message;
  EXPECT_EQ(out.error().message.find("templates[2]:1:"), std::string::npos) << out.error().message;
  EXPECT_NE(out.error().message.find("map has no entry for key \"UNDEFINED\""), std::string::npos);

  hook = sampleHook();
  hook["spec"]["templates"][1]["metadata"]["name"] = "{{.HookName";
  out = renderHook(cp, hook, HookUse{"tools", {}});
  ASSERT_FALSE(out);
  EXPECT_NE(out.error().message.find("tools.templates[1]"), std::string::npos) << out.error().message;

  hook = sampleHook();
  hook["spec"]["templates"][0].erase("kind");
  out = renderHook(cp, hook, HookUse{"tools", {}});
  ASSERT_FALSE(out);
  EXPECT_NE(out.error().message.find("needs apiVersion, kind and metadata.name"), std::string::npos);

  hook = sampleHook();  // a value that breaks the JSON it lands in
  out = renderHook(cp, hook, HookUse{"tools", {{"MESSAGE", "say \"hi\""}}});
  ASSERT_FALSE(out);
  EXPECT_NE(out.error().message.find("does not render to valid JSON"), std::string::npos) << out.error().message;
  // Where: the line of the Job's args in the rendered JSON, and that line.
  EXPECT_NE(out.error().message.find("template: tools.templates[0]:"), std::string::npos) << out.error().message;
  EXPECT_NE(out.error().message.find("\"say \"hi\"\""), std::string::npos) << out.error().message;
}

TEST(Hooks, WhenAnObjectIsDoneAsUpstreamChecks) {
  std::string failure;
  EXPECT_TRUE(hookObjectDone(Json{{"kind", "Secret"}}, failure));
  EXPECT_FALSE(hookObjectDone(Json{{"kind", "Job"}, {"status", {{"active", 1}}}}, failure));
  EXPECT_TRUE(hookObjectDone(Json{{"kind", "Job"}, {"status", {{"succeeded", 1}}}}, failure));
  EXPECT_TRUE(failure.empty());
  Json failed = {{"kind", "Job"},
                 {"status", {{"failed", 2}, {"conditions", Json::array({{{"type", "Failed"}, {"status", "True"},
                                                                         {"reason", "BackoffLimitExceeded"},
                                                                         {"message", "Job has reached the specified backoff limit"}}})}}}};
  EXPECT_FALSE(hookObjectDone(failed, failure));
  EXPECT_EQ(failure, "BackoffLimitExceeded: Job has reached the specified backoff limit");
  failure.clear();
  EXPECT_FALSE(hookObjectDone(Json{{"kind", "Deployment"}, {"spec", {{"replicas", 2}}}, {"status", {{"readyReplicas", 1}}}}, failure));
  EXPECT_TRUE(hookObjectDone(Json{{"kind", "StatefulSet"}, {"spec", Json::object()}, {"status", {{"readyReplicas", 1}}}}, failure));
  EXPECT_FALSE(hookObjectDone(Json{{"kind", "CustomResourceDefinition"}}, failure));
  EXPECT_TRUE(hookObjectDone(Json{{"kind", "CustomResourceDefinition"},
                                  {"status", {{"conditions", Json::array({{{"type", "Established"}, {"status", "True"}}})}}}},
                             failure));
  EXPECT_TRUE(failure.empty());
}

TEST(Hooks, AReportHoldsReadyWhileWaitingAndFailsSynced) {
  auto observed = [] {
    protocol::StatusReport r;
    r.conditions = {{"Synced", "True", "ReconcileSuccess", ""}, {"Ready", "True", "Available", ""}};
    return r;
  };
  Json running = {{"postCreateHooks", {{"hello", false}}}, {"postCreateHookCompleted", false},
                  {"condition", {{"type", "PostCreateHooks"}, {"status", "False"}, {"reason", "Running"}}},
                  {"failed", ""}, {"labels", Json::object()}};
  Json cp = {{"spec", {{"waitForPostCreateHooks", true}}}};
  protocol::StatusReport o = observed();
  Json j;
  foldHookReport(o, running, cp);
  j = o.toJson();
  EXPECT_EQ(j["conditions"][0]["status"], "True");
  EXPECT_EQ(j["conditions"][1]["status"], "False");
  EXPECT_EQ(j["conditions"][1]["reason"], "WaitingForPostCreateHooks");
  EXPECT_EQ(j["conditions"][1]["message"], "Waiting for PostCreateHook completion");
  EXPECT_EQ(j["conditions"][2]["type"], "PostCreateHooks");
  EXPECT_EQ(j["postCreateHooks"]["hello"], false);
  EXPECT_EQ(j["postCreateHookCompleted"], false);

  o = observed();  // not waiting: Ready as the runtime says
  foldHookReport(o, running, Json{{"spec", Json::object()}});
  j = o.toJson();
  EXPECT_EQ(j["conditions"][1]["status"], "True");

  Json failed = running;
  failed["failed"] = "hello: Failed (Job cp1-system/hello failed: BackoffLimitExceeded: ...)";
  o = observed();
  foldHookReport(o, failed, cp);
  j = o.toJson();
  EXPECT_EQ(j["conditions"][0]["status"], "False");
  EXPECT_EQ(j["conditions"][0]["reason"], "ReconcileError");
  EXPECT_NE(j["conditions"][0]["message"].get<std::string>().find("BackoffLimitExceeded"), std::string::npos);

  Json done = {{"postCreateHooks", {{"hello", true}}}, {"postCreateHookCompleted", true},
               {"condition", {{"type", "PostCreateHooks"}, {"status", "True"}, {"reason", "Completed"}}},
               {"failed", ""}, {"labels", {{"kflex.kubestellar.io/cptype", "wds"}}}};
  o = observed();
  foldHookReport(o, done, cp);
  j = o.toJson();
  EXPECT_EQ(j["conditions"][1]["status"], "True");
  EXPECT_EQ(j["hookLabels"]["kflex.kubestellar.io/cptype"], "wds");
  o = observed();  // no hooks: nothing added
  foldHookReport(o, Json{{"postCreateHooks", Json::object()}}, cp);
  j = o.toJson();
  EXPECT_EQ(j, observed().toJson());
}

}  // namespace
}  // namespace kflex::kube
