// SPDX-License-Identifier: Apache-2.0
#include "agent/runtime/external_runtime.hpp"

#include "shared/common/log.hpp"
#include "shared/common/util.hpp"
#include "shared/config/kubeconfig.hpp"
#include "shared/kube/client.hpp"

namespace kflex::agent::runtime {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;
constexpr auto kRetry = std::chrono::seconds(5);

}  // namespace

struct ExternalRuntime::State {
  RuntimeEnv& env;
  std::string name;
  fs::path dir;
  bool adopting = false;
  std::string problem;
  std::string kubeconfig;  // token-only, as adopted
  std::unique_ptr<kube::Client> client;
  bool ready = false;
  std::string ready_message = "waiting for adoption";
  std::chrono::steady_clock::time_point next{};

  State(RuntimeEnv& e, std::string n) : env(e), name(std::move(n)), dir(e.cp_root / name) {}

  Result<void> useKubeconfig(const std::string& text) {
    auto kc = config::Kubeconfig::parse(text, "the adopted kubeconfig");
    auto access = kc ? kc->access() : Result<config::ClusterAccess>(kc.error());
    if (!access) {
      return access.error();
    }
    auto c = kube::Client::create(access.value(), std::chrono::seconds(5));
    if (!c) {
      return c.error();
    }
    client = std::move(c.value());
    kubeconfig = text;
    return {};
  }
};

namespace {

net::awaitable<void> adopt(std::shared_ptr<ExternalRuntime::State> s, std::string bootstrap, int64_t seconds) {
  auto made = co_await kube::adoptCluster(s->name, bootstrap, seconds, "kflex-agent", std::chrono::seconds(10));
  if (!made) {
    s->problem = made.error().message;
    co_return;
  }
  std::error_code ec;
  fs::create_directories(s->dir, ec);
  (void)writeFileAtomic(s->dir / "external", "adopted by this agent\n", 0600);  // (the folder's type)
  if (auto w = writeFileAtomic(s->dir / "kubeconfig.yaml", made.value(), 0600); !w) {
    s->problem = "cannot keep the adopted kubeconfig: " + w.error().message;
    co_return;
  }
  if (auto r = s->useKubeconfig(made.value()); !r) {
    s->problem = r.error().message;
    co_return;
  }
  s->problem.clear();
  log::info("adopted a cluster", {{"controlPlane", s->name}, {"server", s->client->server()}});
}

}  // namespace

ExternalRuntime::ExternalRuntime(RuntimeEnv& env, std::string name)
    : s_(std::make_shared<State>(env, std::move(name))) {
  // Adopted before this agent (re)started.
  if (auto text = readFile(s_->dir / "kubeconfig.yaml")) {
    if (auto r = s_->useKubeconfig(text.value()); !r) {
      s_->problem = r.error().message;
    }
  }
}

ExternalRuntime::~ExternalRuntime() = default;

void ExternalRuntime::ensure(const Json& cp) {
  if (s_->client || s_->adopting || std::chrono::steady_clock::now() < s_->next) {
    return;
  }
  const Json boot = cp.value("kflexBootstrap", Json::object());
  std::string text = boot.is_object() ? boot.value("kubeconfig", "") : "";
  if (text.empty()) {
    s_->problem = "waiting for the bootstrap kubeconfig from the hub (adopt the cluster again with kflex adopt " +
                  s_->name + " --agent AGENT if it was deleted)";
    return;
  }
  int64_t seconds = cp.value("spec", Json::object()).value("tokenExpirationSeconds", int64_t(31536000));
  auto s = s_;
  s->adopting = true;
  net::co_spawn(s->env.executor, adopt(s, text, seconds), [s](std::exception_ptr e) {
    s->adopting = false;
    s->next = std::chrono::steady_clock::now() + kRetry;
    if (e) {
      s->problem = "internal error while adopting";
    }
  });
}

net::awaitable<void> ExternalRuntime::probe() {
  auto s = s_;
  if (!s->client) {
    co_return;
  }
  auto r = co_await s->client->getRaw("/readyz");
  s->ready = r.has_value();
  s->ready_message = r ? "/readyz answered ok" : r.error().message;
}

bool ExternalRuntime::ready() const { return s_->ready; }

protocol::StatusReport ExternalRuntime::observe() const {
  const State& s = *s_;
  protocol::ReportedCondition synced{"Synced", "True", "ReconcileSuccess", "adopted by this agent with a service-account token"};
  if (!s.client) {
    synced = {"Synced", "False", "ReconcileError", s.problem.empty() ? "adopting" : s.problem};
  }
  std::string reason = s.ready ? "Available" : s.client ? "Unavailable" : "Creating";
  protocol::ReportedCondition ready{"Ready", s.ready ? "True" : "False", reason,
                                    s.client ? s.ready_message : "waiting for adoption"};
  protocol::StatusReport out;
  out.conditions = {synced, ready};
  if (s.client) {
    out.endpoint = s.client->server();
    out.kubeconfig = {"admin-kubeconfig", {{"kubeconfig", s.kubeconfig}, {"kubeconfig-incluster", s.kubeconfig}}};
  }
  return out;
}

bool ExternalRuntime::remove() {
  std::error_code ec;
  fs::remove_all(s_->dir, ec);
  s_->client.reset();
  s_->ready = false;
  return !ec;
}

}  // namespace kflex::agent::runtime
