// SPDX-License-Identifier: Apache-2.0
// The real kflex CLI against the real kflex-hub.
#include <gtest/gtest.h>

#include <csignal>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/hub_client.hpp"
#include "shared/common/util.hpp"
#include "tests/support/test_support.hpp"

namespace kflex::test {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    // Short agent leases: an agent that stops is not Ready after a few seconds.
    ASSERT_TRUE(writeFileAtomic(dir_.path() / "hub.yaml",
                                "agent_lease_renew_seconds: 1\nagent_lease_duration_seconds: 3\n", 0644));
    hub_ = std::make_unique<HubProcess>(dir_.path() / "data",
                                        std::vector<std::string>{"--config", (dir_.path() / "hub.yaml").string()});
    ASSERT_TRUE(hub_->ok()) << hub_->log();
    auto r = kflex({"init", "--hub-kubeconfig", hub_->kubeconfig().string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  CommandResult kflex(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {(binDir() / "kflex").string(), "--kubeconfig", (dir_.path() / "user.kubeconfig").string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv);
  }
  fs::path userKubeconfig() const { return dir_.path() / "user.kubeconfig"; }
  Json userDoc() {
    auto r = kubectl(userKubeconfig(), {"config", "view", "--raw", "-o", "json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return Json::parse(r.out, nullptr, false);
  }
  std::string current() { return userDoc().value("current-context", ""); }
  bool hasContext(const std::string& name) {
    for (const auto& c : userDoc().value("contexts", Json::array())) {
      if (c.value("name", "") == name) {
        return true;
      }
    }
    return false;
  }
  // What an agent would report for a running control plane: Ready, and a kubeconfig (kept in a
  // kubeflex-system secret that status.secretRef names).
  void markRunning(const std::string& name) {
    std::string kc =
        "apiVersion: v1\nkind: Config\nclusters:\n- {name: c, cluster: {server: 'https://127.0.0.1:9'}}\n"
        "users:\n- {name: u, user: {token: t-" + name + "}}\ncontexts:\n- {name: x, context: {cluster: c, user: u}}\n"
        "current-context: x\n";
    Json secret = {{"apiVersion", "v1"},
                   {"kind", "Secret"},
                   {"metadata", {{"name", name + "-kc"}, {"namespace", "kubeflex-system"}}},
                   {"data", {{"kubeconfig", base64Encode(kc)}}}};
    auto made = kubectl(userKubeconfig(), {"--context", "kflex-hub", "create", "-f", "-"}, secret.dump());
    EXPECT_EQ(made.exit_code, 0) << made.err;
    Json status = {{"status",
                    {{"observedGeneration", 1},
                     {"secretRef", {{"namespace", "kubeflex-system"}, {"name", name + "-kc"}, {"key", "kubeconfig"},
                                    {"inClusterKey", "kubeconfig"}}},
                     {"conditions", Json::array({{{"type", "Ready"}, {"status", "True"}, {"reason", "Available"},
                                                  {"message", ""}, {"lastTransitionTime", "2026-01-01T00:00:00Z"},
                                                  {"lastUpdateTime", "2026-01-01T00:00:00Z"}}})}}}};
    auto patched = kubectl(userKubeconfig(), {"--context", "kflex-hub", "patch", "cp", name, "--subresource", "status",
                                              "--type", "merge", "-p", status.dump()});
    EXPECT_EQ(patched.exit_code, 0) << patched.err;
  }
  // Runs `kflex create ARGS` while another thread marks control plane name running once it exists.
  CommandResult createWhileMarked(const std::string& name, const std::vector<std::string>& args) {
    std::thread marker([&] {
      if (waitFor([&] { return kubectl(userKubeconfig(), {"--context", "kflex-hub", "get", "cp", name}).exit_code == 0; },
                  std::chrono::seconds(15), name)) {
        markRunning(name);
      }
    });
    auto r = kflex(args);
    marker.join();
    return r;
  }
  // Applies a PostCreateHook (hosted, one ConfigMap) on the hub.
  void addHook(const std::string& name) {
    std::string yaml = "apiVersion: tenancy.kflex.kubestellar.org/v1alpha1\nkind: PostCreateHook\nmetadata:\n  name: " +
                       name +
                       "\n  annotations: {kflex.kubestellar.org/target: hosted}\nspec:\n  templates:\n  - apiVersion: v1\n"
                       "    kind: ConfigMap\n    metadata: {name: " + name + "}\n    data: {a: b}\n";
    auto r = kubectl(userKubeconfig(), {"--context", "kflex-hub", "apply", "-f", "-"}, yaml);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  TempDir dir_;
  std::unique_ptr<HubProcess> hub_;
};

TEST_F(Cli, CreateListGetDelete) {
  auto r = kflex({"create", "--no-wait", "cp1", "-t", "k3s"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = kflex({"create", "--no-wait", "cp1", "-t", "k3s"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("already exists"), std::string::npos) << r.err;
  r = kflex({"create", "--no-wait", "cp2", "-t", "nope"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown type"), std::string::npos);
  if (!kubectlPath().empty()) {  // (the hook must exist on the hub: kubectl makes it)
    addHook("hook1");
    r = kflex({"create", "--no-wait", "cp3", "-p", "hook1", "-e", "a=b", "-e", "c=d"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    r = kflex({"get", "cp3", "-o", "json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("\"hookName\": \"hook1\""), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("\"type\": \"k8s\""), std::string::npos);
  }
  r = kflex({"list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("cp1"), std::string::npos);
  EXPECT_NE(r.out.find("k3s"), std::string::npos);
  r = kflex({"delete", "cp1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(kflex({"get", "cp1"}).exit_code, 1);
  r = kflex({"ctx"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("kflex-hub"), std::string::npos);
}

TEST_F(Cli, CreateWaitFollowsTheReadyCondition) {
  std::thread marker([&] {
    waitFor([&] {
      return kubectlPath().empty() ||
             kubectl(dir_.path() / "user.kubeconfig", {"get", "cp", "cpw"}).exit_code == 0;
    }, std::chrono::seconds(10), "cpw");
    if (!kubectlPath().empty()) {
      kubectl(dir_.path() / "user.kubeconfig",
              {"patch", "cp", "cpw", "--subresource", "status", "--type", "merge", "-p",
               R"({"status":{"observedGeneration":1,"conditions":[{"type":"Ready","status":"True","reason":"Available","message":"","lastTransitionTime":"2026-01-01T00:00:00Z","lastUpdateTime":"2026-01-01T00:00:00Z"}]}})"});
    }
  });
  if (kubectlPath().empty()) {
    marker.join();
    GTEST_SKIP() << "kubectl is not installed";
  }
  auto r = kflex({"create", "cpw", "--wait", "--timeout", "20s"});
  marker.join();
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("is ready"), std::string::npos) << r.out;
  r = kflex({"create", "never", "--wait", "--timeout", "2s"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not ready"), std::string::npos) << r.err;
}

TEST_F(Cli, HubDownIsAClearError) {
  hub_->stop();
  auto r = kflex({"list"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("connection refused"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("kflex-hub running"), std::string::npos) << r.err;
}

TEST_F(Cli, CreateSwitchesToTheControlPlaneAndDeleteRemovesItsContext) {
  if (kubectlPath().empty()) {
    GTEST_SKIP() << "kubectl is not installed";
  }
  auto r = createWhileMarked("cpa", {"create", "cpa", "--timeout", "30s"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("is ready"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Switched to context \"cpa\""), std::string::npos) << r.out;
  EXPECT_EQ(current(), "cpa");
  // kflex still reaches the hub (through the context it remembers), and ctx goes back to it.
  r = kflex({"list", "-o", "name"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "cpa\n");
  r = kflex({"ctx", "list"});
  EXPECT_NE(r.out.find("*         cpa         controlplane   cpa"), std::string::npos) << r.out;

  // --no-switch leaves the current context alone; so does --no-wait, which says how to switch later.
  r = createWhileMarked("cpb", {"create", "cpb", "--no-switch", "--timeout", "30s"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(current(), "cpa");
  EXPECT_FALSE(hasContext("cpb"));
  r = kflex({"create", "cpc", "--no-wait"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("kflex ctx cpc"), std::string::npos) << r.out;
  EXPECT_EQ(current(), "cpa");

  // delete removes the context, its cluster and user, and goes back to the hub when it was current.
  r = kflex({"delete", "cpa"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Switched to context \"kflex-hub\""), std::string::npos) << r.out;
  EXPECT_EQ(current(), "kflex-hub");
  EXPECT_FALSE(hasContext("cpa"));
  std::string dump = userDoc().dump();
  EXPECT_EQ(dump.find("cpa-cluster"), std::string::npos) << dump;
  EXPECT_EQ(dump.find("cpa-admin"), std::string::npos) << dump;
  // A context that is not current goes too, and the current one stays.
  ASSERT_EQ(kflex({"ctx", "cpb"}).exit_code, 0);
  ASSERT_EQ(kflex({"ctx"}).exit_code, 0);
  ASSERT_TRUE(hasContext("cpb"));
  ASSERT_EQ(kflex({"delete", "cpb"}).exit_code, 0);
  EXPECT_FALSE(hasContext("cpb"));
  EXPECT_EQ(current(), "kflex-hub");
}

TEST_F(Cli, CtxFromAHubContextRemembersItWithoutInit) {
  if (kubectlPath().empty()) {
    GTEST_SKIP() << "kubectl is not installed";
  }
  ASSERT_EQ(kflex({"create", "cpr", "--no-wait"}).exit_code, 0);
  markRunning("cpr");
  // A copy of the hub's kubeconfig: a hub context, and nothing kflex remembers.
  fs::path own = dir_.path() / "own.kubeconfig";
  fs::copy_file(hub_->kubeconfig(), own);
  auto ctx = [&](const std::vector<std::string>& args) {
    std::vector<std::string> argv = {(binDir() / "kflex").string()};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--kubeconfig", own.string()});  // (a global flag after the command)
    return run(argv);
  };
  auto r = ctx({"ctx"});
  EXPECT_EQ(r.exit_code, 1);
  r = ctx({"ctx", "cpr"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("Remembered context \"kflex-hub\""), std::string::npos) << r.err;
  EXPECT_EQ(kubectl(own, {"config", "current-context"}).out, "cpr\n");
  r = ctx({"ctx"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(kubectl(own, {"config", "current-context"}).out, "kflex-hub\n");

  // A context of the same name that kflex did not write is replaced only when asked to.
  ASSERT_EQ(kubectl(userKubeconfig(), {"config", "set-context", "cpr", "--cluster", "kflex-hub-cluster", "--user",
                                       "kflex-hub-admin"})
                .exit_code,
            0);
  r = kflex({"ctx", "cpr"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--overwrite-existing-context"), std::string::npos) << r.err;
  r = kflex({"ctx", "cpr", "--overwrite-existing-context"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(current(), "cpr");
  EXPECT_NE(userDoc().dump().find("cpr-cluster"), std::string::npos);
}

TEST_F(Cli, HooksAreCheckedOnTheHubAndKeptInOrderWithTheirVariables) {
  if (kubectlPath().empty()) {
    GTEST_SKIP() << "kubectl is not installed";
  }
  auto r = kflex({"create", "cpx", "-p", "nosuchhook"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("PostCreateHook nosuchhook does not exist"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("ready"), std::string::npos) << r.out;
  EXPECT_EQ(kflex({"get", "cpx"}).exit_code, 1);  // nothing was created

  addHook("one");
  addHook("two");
  r = kflex({"create", "cpm", "--no-wait", "-p", "one", "-e", "x=1", "-p", "two", "-e", "y=2", "-e", "z=3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json cp = Json::parse(kflex({"get", "cpm", "-o", "json"}).out, nullptr, false);
  ASSERT_TRUE(cp.is_object());
  EXPECT_EQ(cp["spec"]["postCreateHooks"],
            Json::parse(R"([{"hookName":"one","vars":{"x":"1"}},{"hookName":"two","vars":{"y":"2","z":"3"}}])"));
  // As upstream: with one hook its -e may come first.
  ASSERT_EQ(kflex({"create", "cpn", "--no-wait", "-e", "x=1", "-p", "one"}).exit_code, 0);
  cp = Json::parse(kflex({"get", "cpn", "-o", "json"}).out, nullptr, false);
  EXPECT_EQ(cp["spec"]["postCreateHooks"], Json::parse(R"([{"hookName":"one","vars":{"x":"1"}}])"));

  // A hook that is reported missing fails the wait, Ready or not.
  std::thread marker([&] {
    if (!waitFor([&] { return kubectl(userKubeconfig(), {"get", "cp", "cph"}).exit_code == 0; },
                 std::chrono::seconds(15), "cph")) {
      return;
    }
    Json status = {
        {"status",
         {{"observedGeneration", 1},
          {"conditions",
           Json::array({{{"type", "Synced"}, {"status", "False"}, {"reason", "ReconcileError"},
                         {"message", "postcreatehook: one: Missing (PostCreateHook one does not exist)"},
                         {"lastTransitionTime", "2026-01-01T00:00:00Z"}, {"lastUpdateTime", "2026-01-01T00:00:00Z"}},
                        {{"type", "Ready"}, {"status", "True"}, {"reason", "Available"}, {"message", ""},
                         {"lastTransitionTime", "2026-01-01T00:00:00Z"}, {"lastUpdateTime", "2026-01-01T00:00:00Z"}},
                        // (as kube::foldHookReport reports a missing hook, with the Synced above)
                        {{"type", "PostCreateHooks"}, {"status", "False"}, {"reason", "HookNotFound"},
                         {"message", "one: Missing (PostCreateHook one does not exist)"},
                         {"lastTransitionTime", "2026-01-01T00:00:00Z"}, {"lastUpdateTime", "2026-01-01T00:00:00Z"}}})}}}};
    kubectl(userKubeconfig(), {"patch", "cp", "cph", "--subresource", "status", "--type", "merge", "-p", status.dump()});
  });
  auto started = std::chrono::steady_clock::now();
  r = kflex({"create", "cph", "-p", "one", "--timeout", "60s"});
  marker.join();
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(30));
  EXPECT_NE(r.out.find("Synced=False (ReconcileError): postcreatehook: one: Missing"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("cannot become ready without a change"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("is ready"), std::string::npos) << r.out;
}

// The CLI's hub client says what the hub answered in the error's code (which `kflex create`,
// `delete` and the waits branch on), not in a side channel or the message.
TEST_F(Cli, HubClientErrorsSayWhatTheHubAnsweredInTheirCode) {
  auto hub = cli::HubClient::connect(userKubeconfig().string(), "");
  ASSERT_TRUE(hub) << hub.error().message;
  const std::string cps = cli::kControlPlanesPath;
  auto missing = hub.value()->get(cps + "/nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::NotFound) << missing.error().message;
  auto gone = hub.value()->remove(cps + "/nope");
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, Errc::NotFound) << gone.error().message;
  Json cp = {{"apiVersion", "tenancy.kflex.kubestellar.org/v1alpha1"}, {"kind", "ControlPlane"},
             {"metadata", {{"name", "twice"}}}, {"spec", {{"type", "k3s"}}}};
  auto first = hub.value()->post(cps, cp);
  ASSERT_TRUE(first) << first.error().message;
  auto second = hub.value()->post(cps, cp);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, Errc::Conflict) << second.error().message;
  cp["metadata"]["name"] = "Not_A_Name";
  auto invalid = hub.value()->post(cps, cp);
  ASSERT_FALSE(invalid);
  EXPECT_EQ(invalid.error().code, Errc::Invalid) << invalid.error().message;
  // A watch that outlasts its deadline: Timeout.
  auto watched = hub.value()->watch(cps + "?watch=1&fieldSelector=metadata.name%3Dtwice&timeoutSeconds=30",
                                    [](const Json&) { return true; }, std::chrono::milliseconds(1500));
  ASSERT_FALSE(watched);
  EXPECT_EQ(watched.error().code, Errc::Timeout) << watched.error().message;
  // And the commands that branch on them still say so.
  auto r = kflex({"create", "twice", "-t", "k3s", "--no-wait"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("control plane \"twice\" already exists"), std::string::npos) << r.err;
}

TEST_F(Cli, WaitingShowsConditionsAndATimeoutEndsWithTheirLastWord) {
  auto r = kflex({"create", "lonely", "--timeout", "2s"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("Scheduled=False (Unschedulable): no agent is enrolled"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("timed out after 2s; last conditions: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("Scheduled=False (Unschedulable): no agent is enrolled"), std::string::npos) << r.err;
  // Without chatty status only the result and the error are printed.
  r = kflex({"create", "quiet", "--timeout", "1s", "--chatty-status=false"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out.find("Scheduled="), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("Waiting"), std::string::npos) << r.out;

  // list -o json|yaml|wide
  r = kflex({"list", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json list = Json::parse(r.out, nullptr, false);
  ASSERT_TRUE(list.is_object()) << r.out;
  EXPECT_EQ(list["items"].size(), 2u);
  EXPECT_EQ(r.out.find("managedFields"), std::string::npos);
  r = kflex({"list", "-o", "yaml"});
  EXPECT_NE(r.out.find("name: lonely"), std::string::npos) << r.out;
  r = kflex({"list", "-o", "wide"});
  EXPECT_NE(r.out.find("BACKEND"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Scheduled: Unschedulable"), std::string::npos) << r.out;
}

TEST_F(Cli, InitRefusesTheHubsOwnKubeconfig) {
  auto r = run({(binDir() / "kflex").string(), "init", "--hub-kubeconfig", hub_->kubeconfig().string()},
               {"KUBECONFIG=" + (dir_.path() / "data" / "." / "admin.kubeconfig").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("hub's own admin.kubeconfig"), std::string::npos) << r.err;
  // And create does not switch contexts in it.
  r = run({(binDir() / "kflex").string(), "--kubeconfig", hub_->kubeconfig().string(), "create", "cpz", "--no-wait"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

// With a real agent: what no agent can run fails at once, and a delete its unreachable agent
// cannot confirm says that --force would help.
TEST_F(Cli, AgentsThatCannotHelp) {
  if (kubectlPath().empty()) {
    GTEST_SKIP() << "kubectl is not installed";
  }
  auto token = kflex({"token", "create"});
  auto join = agentJoinIn(token.out);
  ASSERT_TRUE(join) << token.out << token.err;
  ASSERT_TRUE(writeFileAtomic(dir_.path() / "edge.token", join->token + "\n", 0600));
  auto agent = std::make_unique<Process>(
      std::vector<std::string>{(binDir() / "kflex-agent").string(), "run", "--config", "/dev/null", "--data-dir",
                               (dir_.path() / "edge").string(), "--hub", hub_->url(), "--name", "edge-1",
                               "--token-file", (dir_.path() / "edge.token").string(), "--ca-cert-hash", join->pin,
                               "--bin-dir", (dir_.path() / "no-programs").string()},
      dir_.path() / "edge.log");
  auto agentReady = [&] {
    return kubectl(userKubeconfig(), {"get", "agent", "edge-1", "-o",
                                      "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"})
        .out;
  };
  ASSERT_TRUE(waitFor([&] { return agentReady() == "True"; }, std::chrono::seconds(30), "edge-1 Ready"))
      << agent->log();

  // The agent has no postgres_dsn: it cannot run k8s, and nothing will change that by waiting.
  auto started = std::chrono::steady_clock::now();
  auto r = kflex({"create", "cpk", "-t", "k8s", "--timeout", "2m"});
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(30));
  EXPECT_NE(r.err.find("cannot become ready without a change: Scheduled=False (NoAgentForType): none of the agents "
                       "can run k8s"),
            std::string::npos)
      << r.err;

  r = kflex({"create", "cpd", "-t", "k3s", "--agent", "edge-1", "--no-wait"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(waitFor([&] { return kubectl(userKubeconfig(), {"get", "cp", "cpd", "-o", "jsonpath={.status.agent}"}).out ==
                                   "edge-1"; },
                      std::chrono::seconds(15), "cpd placed"));
  agent->signal(SIGKILL);
  agent->wait(std::chrono::seconds(10));
  ASSERT_TRUE(waitFor([&] { return agentReady() != "True"; }, std::chrono::seconds(20), "edge-1 not Ready"));
  r = kflex({"delete", "cpd", "--timeout", "2s"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("its agent edge-1 is not Ready"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("kflex delete cpd --force"), std::string::npos) << r.err;
  r = kflex({"delete", "cpd", "--force", "--timeout", "10s"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(kflex({"get", "cpd"}).exit_code, 1);
}

}  // namespace
}  // namespace kflex::test
