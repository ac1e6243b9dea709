// SPDX-License-Identifier: Apache-2.0
// The kflex CLI without a hub: its kubeconfig edits, condition tracking, completion scripts and
// argument parsing, run in-process through runCli.
#include <gtest/gtest.h>

#include <sstream>

#include "cli/commands.hpp"
#include "cli/condition_tracker.hpp"
#include "cli/hub_client.hpp"
#include "cli/kubeconfig_file.hpp"
#include "shared/common/util.hpp"
#include "tests/support/test_support.hpp"

namespace kflex::test {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

struct Ran {
  int code = -1;
  std::string out;
  std::string err;
};

Ran kflexIn(const std::vector<std::string>& args) {
  std::vector<std::string> all = {"kflex"};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) {
    argv.push_back(a.data());
  }
  std::ostringstream out;
  std::ostringstream err;
  int code = cli::runCli(int(argv.size()), argv.data(), out, err);
  return {code, out.str(), err.str()};
}

// A kubeconfig with the hub's context (remembered), a control plane's and one of the user's own.
constexpr const char* kKubeconfig = R"(apiVersion: v1
kind: Config
clusters:
- {name: kflex-hub-cluster, cluster: {server: "https://127.0.0.1:1"}}
- {name: cp1-cluster, cluster: {server: "https://127.0.0.1:2"}}
- {name: shared, cluster: {server: "https://127.0.0.1:3"}}
users:
- {name: kflex-hub-admin, user: {token: a}}
- {name: cp1-admin, user: {token: b}}
- {name: me, user: {token: c}}
contexts:
- {name: kflex-hub, context: {cluster: kflex-hub-cluster, user: kflex-hub-admin}}
- {name: cp1, context: {cluster: cp1-cluster, user: cp1-admin}}
- {name: mine, context: {cluster: shared, user: me}}
- {name: mine-too, context: {cluster: shared, user: me}}
current-context: cp1
preferences:
  extensions:
  - {name: kflex, extension: {hubContext: kflex-hub, initialContext: kflex-hub}}
)";

class CliOffline : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(writeFileAtomic(kc_, kKubeconfig, 0600)); }
  cli::KubeconfigFile file() {
    auto f = cli::KubeconfigFile::load(kc_);
    EXPECT_TRUE(f) << f.error().message;
    return f.value();
  }
  TempDir dir_;
  fs::path kc_ = dir_.path() / "config";
};

TEST_F(CliOffline, CtxListGetRenameDelete) {
  auto r = kflexIn({"ctx", "list", "--kubeconfig", kc_.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("kflex-hub   hub"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("*         cp1         controlplane   cp1"), std::string::npos) << r.out;
  r = kflexIn({"ctx", "list", "-o", "name", "-k", kc_.string()});
  EXPECT_EQ(r.out, "kflex-hub\ncp1\nmine\nmine-too\n");
  r = kflexIn({"ctx", "get", "-k", kc_.string()});
  EXPECT_EQ(r.out, "cp1\n");

  // Rename: kflex's cluster and user follow, and so does the current context.
  r = kflexIn({"ctx", "rename", "cp1", "cp2", "-k", kc_.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  auto f = file();
  EXPECT_EQ(f.currentContext(), "cp2");
  EXPECT_EQ(f.contextNames(), (std::vector<std::string>{"kflex-hub", "cp2", "mine", "mine-too"}));
  EXPECT_NE(f.doc().dump().find("cp2-cluster"), std::string::npos);
  EXPECT_EQ(f.doc().dump().find("cp1-admin"), std::string::npos);
  EXPECT_EQ(kflexIn({"ctx", "rename", "cp2", "mine", "-k", kc_.string()}).code, 1);  // taken
  EXPECT_EQ(kflexIn({"ctx", "rename", "nope", "x", "-k", kc_.string()}).code, 1);
  r = kflexIn({"ctx", "rename", "mine", "ours", "--switch", "-k", kc_.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(file().currentContext(), "ours");
  EXPECT_NE(file().doc().dump().find("\"shared\""), std::string::npos);  // shared with mine-too: kept

  // Delete: the user's own contexts and the hub's need --force; a current one goes back to the hub.
  r = kflexIn({"ctx", "delete", "ours", "-k", kc_.string()});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--force"), std::string::npos) << r.err;
  EXPECT_EQ(kflexIn({"ctx", "delete", "kflex-hub", "-k", kc_.string()}).code, 1);
  EXPECT_EQ(kflexIn({"ctx", "delete", "ours", "--force", "-k", kc_.string()}).code, 0);
  EXPECT_EQ(file().currentContext(), "kflex-hub");
  EXPECT_NE(file().doc().dump().find("\"shared\""), std::string::npos);  // still used by mine-too
  kflexIn({"ctx", "rename", "cp2", "cp3", "-S", "-k", kc_.string()});
  r = kflexIn({"ctx", "delete", "cp3", "-k", kc_.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("Switched to context \"kflex-hub\""), std::string::npos) << r.out;
  f = file();
  EXPECT_EQ(f.contextNames(), (std::vector<std::string>{"kflex-hub", "mine-too"}));
  EXPECT_EQ(f.doc().dump().find("cp3-cluster"), std::string::npos);
  EXPECT_EQ(f.doc().dump().find("cp3-admin"), std::string::npos);
  EXPECT_EQ(kflexIn({"ctx", "delete", "gone", "-k", kc_.string()}).code, 1);
}

TEST_F(CliOffline, BareCtxGoesBackToTheHubAndSetCurrentForHostingRemembersOne) {
  auto r = kflexIn({"ctx", "-k", kc_.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(file().currentContext(), "kflex-hub");
  // Another hub context, remembered from the current one.
  kflexIn({"ctx", "rename", "mine", "hub2", "-S", "-k", kc_.string()});
  r = kflexIn({"ctx", "--set-current-for-hosting", "-k", kc_.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(file().hubContext(), "hub2");
  kflexIn({"ctx", "rename", "cp1", "cpx", "-S", "-k", kc_.string()});
  ASSERT_EQ(kflexIn({"ctx", "-k", kc_.string()}).code, 0);
  EXPECT_EQ(file().currentContext(), "hub2");
  r = kflexIn({"config", "set-hosting", "kflex-hub", "-k", kc_.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(file().hubContext(), "kflex-hub");
  EXPECT_EQ(kflexIn({"config", "set-hosting", "nope", "-k", kc_.string()}).code, 1);

  // Without anything remembered, a bare ctx says how to remember one.
  fs::path bare = dir_.path() / "bare";
  ASSERT_TRUE(writeFileAtomic(bare, "apiVersion: v1\nkind: Config\ncurrent-context: x\ncontexts:\n- {name: x, context: {cluster: c, user: u}}\n", 0600));
  r = kflexIn({"ctx", "-k", bare.string()});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--set-current-for-hosting"), std::string::npos) << r.err;
  r = kflexIn({"config", "diagnose", "-k", bare.string()});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(Json::parse(r.out).value("status", ""), "critical") << r.out;
  r = kflexIn({"ctx", "-c", "-k", bare.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  r = kflexIn({"config", "diagnose", "-k", bare.string()});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(Json::parse(r.out).value("status", ""), "ok") << r.out;
  EXPECT_EQ(Json::parse(r.out)["data"].value("hubContext", ""), "x") << r.out;
}

TEST_F(CliOffline, ControlPlaneContextsAreMarkedAndFound) {
  auto f = file();
  f.markControlPlane("mine-too", "cp7");
  EXPECT_EQ(f.controlPlaneOf("mine-too"), "cp7");
  EXPECT_TRUE(f.managedByKflex("mine-too"));
  EXPECT_FALSE(f.managedByKflex("mine"));
  EXPECT_EQ(f.contextsOfControlPlane("cp1"), std::vector<std::string>{"cp1"});
  EXPECT_EQ(f.contextsOfControlPlane("cp7"), std::vector<std::string>{"mine-too"});
  EXPECT_TRUE(f.contextsOfControlPlane("kflex-hub").empty());
  ASSERT_TRUE(f.save());
  // kubectl reads the marked file.
  if (!kubectlPath().empty()) {
    auto r = kubectl(kc_, {"config", "get-contexts", "-o", "name"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("mine-too"), std::string::npos);
  }
}

TEST_F(CliOffline, InitRefusesTheHubsOwnAdminKubeconfig) {
  // A hub data directory: admin.kubeconfig beside hub.db and pki/.
  fs::path data = dir_.path() / "hub-data";
  fs::create_directories(data / "pki");
  ASSERT_TRUE(writeFileAtomic(data / "hub.db", "", 0600));
  ASSERT_TRUE(writeFileAtomic(data / "admin.kubeconfig", kKubeconfig, 0600));
  // The same file, spelled another way.
  auto r = kflexIn({"init", "--hub-kubeconfig", (data / "admin.kubeconfig").string(), "--kubeconfig",
                    (data / "." / "admin.kubeconfig").string()});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("hub's own admin.kubeconfig"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--kubeconfig"), std::string::npos) << r.err;
  // A copy of the hub's file given as --hub-kubeconfig, merging into one inside a data directory.
  fs::copy_file(data / "admin.kubeconfig", dir_.path() / "copy.kubeconfig");
  r = kflexIn({"init", "--hub-kubeconfig", (dir_.path() / "copy.kubeconfig").string(), "-k",
               (data / "admin.kubeconfig").string()});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("hub's own admin.kubeconfig"), std::string::npos) << r.err;
  EXPECT_TRUE(cli::isHubAdminKubeconfig(data / "admin.kubeconfig"));
  EXPECT_FALSE(cli::isHubAdminKubeconfig(kc_));
  EXPECT_FALSE(cli::isHubAdminKubeconfig(dir_.path() / "copy.kubeconfig"));
}

TEST_F(CliOffline, GlobalFlagsComeBeforeOrAfterTheCommand) {
  EXPECT_EQ(kflexIn({"-k", kc_.string(), "ctx", "get"}).out, "cp1\n");
  EXPECT_EQ(kflexIn({"ctx", "get", "-k", kc_.string()}).out, "cp1\n");
  EXPECT_EQ(kflexIn({"ctx", "get", "--kubeconfig=" + kc_.string(), "-v", "1", "--chatty-status=false"}).out, "cp1\n");
  auto r = kflexIn({"ctx", "list", "--bogus"});
  EXPECT_EQ(r.code, 2);
  r = kflexIn({"list", "-o", "table-ish", "-k", kc_.string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("json, yaml, wide or name"), std::string::npos) << r.err;
}

TEST_F(CliOffline, HookFlagsAreCheckedBeforeTheHubIsAsked) {
  // (The hub at 127.0.0.1:1 is never reached: these are usage errors.)
  auto r = kflexIn({"create", "cp", "-e", "a=b", "-p", "one", "-p", "two", "-k", kc_.string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("after its -p HOOK"), std::string::npos) << r.err;
  r = kflexIn({"create", "cp", "-p", "one", "-p", "one", "-k", kc_.string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("given twice"), std::string::npos) << r.err;
  r = kflexIn({"create", "cp", "-p", "one", "-e", "novalue", "-k", kc_.string()});
  EXPECT_EQ(r.code, 2);
  r = kflexIn({"create", "cp", "-e", "a=b", "-k", kc_.string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("needs --postcreate-hook"), std::string::npos) << r.err;
}

TEST(CliCompletion, EveryShellGetsAScriptItCanRead) {
  TempDir dir;
  for (const std::string shell : {"bash", "zsh", "fish"}) {
    auto r = kflexIn({"completion", shell});
    ASSERT_EQ(r.code, 0) << r.err;
    for (const char* word : {"create", "ctx", "rename", "chatty-status", "no-switch", "overwrite-existing-context",
                             "set-hosting", "wide"}) {
      EXPECT_NE(r.out.find(word), std::string::npos) << shell << " lacks " << word;
    }
    fs::path script = dir.path() / ("kflex." + shell);
    ASSERT_TRUE(writeFileAtomic(script, r.out, 0644));
    auto which = run({"sh", "-c", "command -v " + shell});
    if (which.exit_code != 0) {
      continue;  // (checked where the shell is installed; bash always is)
    }
    auto check = run({shell, "-n", script.string()});
    EXPECT_EQ(check.exit_code, 0) << shell << ": " << check.err;
  }
  EXPECT_EQ(kflexIn({"completion", "tcsh"}).code, 2);
}

TEST(CliCompletion, BashCompletesCommandsFlagsAndValues) {
  TempDir dir;
  fs::path script = dir.path() / "kflex.bash";
  ASSERT_TRUE(writeFileAtomic(script, kflexIn({"completion", "bash"}).out, 0644));
  auto complete = [&](const std::string& words) {
    std::string prog = "source '" + script.string() + "'; COMP_WORDS=(" + words +
                       "); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _kflex; echo \"${COMPREPLY[*]}\"";
    return run({"bash", "-c", prog}).out;
  };
  EXPECT_NE(complete("kflex ''").find("create"), std::string::npos);
  EXPECT_EQ(complete("kflex ctx ''"), "list get rename delete\n");
  EXPECT_EQ(complete("kflex create cp1 -t ''"), "k8s k3s vcluster host\n");
  EXPECT_EQ(complete("kflex list -o w"), "wide\n");
  EXPECT_NE(complete("kflex create cp1 --no-s").find("--no-switch"), std::string::npos);
  EXPECT_NE(complete("kflex delete cp1 --k").find("--kubeconfig"), std::string::npos);
}

// What the hub answered is in the error's code: callers branch on it, never on the message.
TEST(HubClient, AnswersBecomeErrorCodes) {
  EXPECT_EQ(cli::errcOfStatus(404), Errc::NotFound);
  EXPECT_EQ(cli::errcOfStatus(409), Errc::Conflict);
  EXPECT_EQ(cli::errcOfStatus(400), Errc::Invalid);
  EXPECT_EQ(cli::errcOfStatus(422), Errc::Invalid);
  EXPECT_EQ(cli::errcOfStatus(401), Errc::Refused);
  EXPECT_EQ(cli::errcOfStatus(403), Errc::Refused);
  EXPECT_EQ(cli::errcOfStatus(504), Errc::Timeout);
  EXPECT_EQ(cli::errcOfStatus(500), Errc::Unavailable);
  EXPECT_EQ(cli::errcOfStatus(503), Errc::Unavailable);
  EXPECT_EQ(cli::errcOfStatus(429), Errc::Unavailable);
  EXPECT_EQ(cli::errcOfStatus(405), Errc::Internal);

  auto ok = cli::decodeAnswer({200, R"({"kind":"ControlPlane"})", "application/json"});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->value("kind", ""), "ControlPlane");
  auto not_json = cli::decodeAnswer({200, "<html>", "text/html"});
  ASSERT_FALSE(not_json);
  EXPECT_EQ(not_json.error().code, Errc::Internal);

  auto missing = cli::decodeAnswer(
      {404, R"({"kind":"Status","status":"Failure","reason":"NotFound","message":"controlplanes \"x\" not found"})",
       "application/json"});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::NotFound);
  EXPECT_EQ(missing.error().message, "controlplanes \"x\" not found");
  // The code comes from the status, whatever the message says.
  auto taken = cli::decodeAnswer({409, R"({"kind":"Status","message":"not found"})", "application/json"});
  ASSERT_FALSE(taken);
  EXPECT_EQ(taken.error().code, Errc::Conflict);
  auto bare = cli::decodeAnswer({409, "", ""});
  ASSERT_FALSE(bare);
  EXPECT_EQ(bare.error().code, Errc::Conflict);
  EXPECT_EQ(bare.error().message, "the hub answered HTTP 409");
}

TEST(ConditionTracker, PrintsChangesAndKnowsWhatCannotSucceed) {
  cli::ConditionTracker t;
  auto cp = [](const Json& conditions, const std::string& agent = "") {
    Json status = {{"conditions", conditions}};
    if (!agent.empty()) {
      status["agent"] = agent;
    }
    return Json{{"metadata", {{"name", "cp"}}}, {"status", status}};
  };
  // As the hub words it when no agent is enrolled: an agent may still come.
  auto lines = t.update(cp(Json::array({{{"type", "Scheduled"}, {"status", "False"}, {"reason", "Unschedulable"},
                                         {"message", "no agent is enrolled; enroll one"}}})));
  EXPECT_EQ(lines, std::vector<std::string>{"Scheduled=False (Unschedulable): no agent is enrolled; enroll one"});
  EXPECT_EQ(t.hopeless(), "");
  EXPECT_TRUE(t.update(cp(Json::array({{{"type", "Scheduled"}, {"status", "False"}, {"reason", "Unschedulable"},
                                        {"message", "no agent is enrolled; enroll one"}}})))
                  .empty());
  lines = t.update(cp(Json::array({{{"type", "Scheduled"}, {"status", "True"}, {"reason", "Scheduled"},
                                    {"message", "placed on agent edge-1"}},
                                   {{"type", "Synced"}, {"status", "Unknown"}, {"reason", "Pending"}}}),
                      "edge-1"));
  EXPECT_EQ(lines, (std::vector<std::string>{"Scheduled on edge-1", "Synced=Unknown (Pending)"}));
  EXPECT_FALSE(t.ready());
  EXPECT_EQ(t.summary(), "Scheduled=True (Scheduled): placed on agent edge-1; Synced=Unknown (Pending)");

  // Reasons as hub/agents/placement.cpp sets them; the tracker decides by the reason alone.
  cli::ConditionTracker none_can;
  none_can.update(cp(Json::array({{{"type", "Scheduled"}, {"status", "False"}, {"reason", "NoAgentForType"},
                                   {"message", "none of the agents can run k8s control planes (vcluster needs ...)"}}})));
  EXPECT_EQ(none_can.hopeless(),
            "Scheduled=False (NoAgentForType): none of the agents can run k8s control planes (vcluster needs ...)");
  cli::ConditionTracker none_can_reworded;
  none_can_reworded.update(cp(Json::array({{{"type", "Scheduled"}, {"status", "False"}, {"reason", "NoAgentForType"},
                                            {"message", "whatever the hub says"}}})));
  EXPECT_NE(none_can_reworded.hopeless(), "");
  cli::ConditionTracker bad_selector;
  bad_selector.update(cp(Json::array({{{"type", "Scheduled"}, {"status", "False"}, {"reason", "InvalidSelector"},
                                       {"message", "the agent selector is not valid: ..."}}})));
  EXPECT_NE(bad_selector.hopeless(), "");
  cli::ConditionTracker busy;
  busy.update(cp(Json::array({{{"type", "Scheduled"}, {"status", "False"}, {"reason", "Unschedulable"},
                               {"message", "none of the Ready agents has 500m CPU and 512Mi memory free"}}})));
  EXPECT_EQ(busy.hopeless(), "");
  // Unschedulable can change by itself, whatever its message says.
  cli::ConditionTracker worded_like_hopeless;
  worded_like_hopeless.update(cp(Json::array({{{"type", "Scheduled"}, {"status", "False"}, {"reason", "Unschedulable"},
                                               {"message", "none of the agents can run k8s control planes"}}})));
  EXPECT_EQ(worded_like_hopeless.hopeless(), "");

  // A hook that does not exist fails the wait even once the control plane is Ready (as
  // kube::foldHookReport reports it: Synced=False with upstream's words, and PostCreateHooks=False).
  cli::ConditionTracker hook;
  hook.update(cp(Json::array({{{"type", "Synced"}, {"status", "False"}, {"reason", "ReconcileError"},
                               {"message", "postcreatehook: h: Missing (PostCreateHook h does not exist)"}},
                              {{"type", "Ready"}, {"status", "True"}, {"reason", "Available"}},
                              {{"type", "PostCreateHooks"}, {"status", "False"}, {"reason", "HookNotFound"},
                               {"message", "h: Missing (PostCreateHook h does not exist)"}}})));
  EXPECT_TRUE(hook.ready());
  EXPECT_NE(hook.hopeless().find("does not exist"), std::string::npos);
  // A ReconcileError alone may clear up, whatever its message says.
  cli::ConditionTracker reconcile_error;
  reconcile_error.update(cp(Json::array({{{"type", "Synced"}, {"status", "False"}, {"reason", "ReconcileError"},
                                          {"message", "postcreatehook: h: Missing"}}})));
  EXPECT_EQ(reconcile_error.hopeless(), "");
  cli::ConditionTracker failed;
  failed.update(cp(Json::array({{{"type", "PostCreateHooks"}, {"status", "False"}, {"reason", "HookNotFound"},
                                 {"message", "h: Missing"}}})));
  EXPECT_NE(failed.hopeless(), "");
  cli::ConditionTracker empty;
  EXPECT_EQ(empty.summary(), "no condition was reported");
}

}  // namespace
}  // namespace kflex::test
