// SPDX-License-Identifier: Apache-2.0
// Shared parts of the stand-ins for programs that cannot be installed on test machines (k3s,
// Kine, kube-apiserver, kube-controller-manager): flag parsing as strict as the real programs',
// an API server built from the hub's own machinery, and the start-up delay real servers have.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hub/api/api_service.hpp"
#include "hub/api/errors.hpp"
#include "hub/api/http_server.hpp"
#include "hub/store/object_store.hpp"
#include "shared/common/result.hpp"
#include "shared/model/resource.hpp"
#include "tests/standins/pod_streams.hpp"

namespace kflex::standin {

/// One flag a program accepts.
struct FlagSpec {
  std::string name;               ///< Long name without dashes.
  bool is_bool = false;           ///< Takes no value (`--x` or `--x=true|false`).
  std::vector<std::string> aliases;  ///< Short or old names.
  std::string env;                ///< Environment variable that sets it, if any.
};

/// Parsed flags: every value given, by long name.
class Flags {
 public:
  /// Parses args (after the program or subcommand name). Style: "go" = Go's flag package and
  /// urfave/cli (`-x`/`--x`, `--x value` or `--x=value`); unknown flags and positional arguments
  /// are errors worded as the real programs word them.
  static Result<Flags> parse(const std::vector<std::string>& args, const std::vector<FlagSpec>& specs,
                             bool pflag = false);
  bool has(const std::string& name) const { return values_.count(name) > 0; }
  /// The last value (or def).
  std::string get(const std::string& name, const std::string& def = "") const;
  /// Every value, comma-separated lists split (StringSlice flags).
  std::vector<std::string> all(const std::string& name) const;
  bool flag(const std::string& name) const;

 private:
  std::map<std::string, std::vector<std::string>> values_;
};

/// The stand-in's start-up delay: KFLEX_STANDIN_STARTUP_MS, else def. Real servers answer
/// /readyz with 503 for a while after they start listening.
std::chrono::milliseconds startupDelay(std::chrono::milliseconds def);

/// Binds ADDRESS:PORT for a fixed port a real program holds (and fails on, as the real one does).
Result<void> holdPort(const std::string& address, uint16_t port, std::vector<int>& held);

/// The Kubernetes kinds a stand-in API server serves (core, RBAC, apps, batch, apiextensions).
model::Registry clusterRegistry();

/// Service-account tokens as kube-apiserver issues them through TokenRequest: signed with a key
/// kept beside the database, so they stay valid across restarts, and checked on every request.
class TokenIssuer {
 public:
  static Result<TokenIssuer> open(const std::filesystem::path& key_file);
  /// A token for system:serviceaccount:NS:NAME valid until `expires` (seconds since the epoch).
  std::string issue(const std::string& ns, const std::string& name, int64_t expires) const;
  /// The service account "NS:NAME" a valid, unexpired token stands for, or an error saying why not.
  Result<std::string> verify(const std::string& token, int64_t now) const;

 private:
  std::string mac(const std::string& payload) const;
  std::string key_;
};

/// A Kubernetes API server made of the hub's machinery, on a TLS context given by the caller.
class ApiServer {
 public:
  /// Opens the store at db and serves on host:port; until `ready_at` every request but the ones
  /// in `always` gets 503 as a starting kube-apiserver answers.
  static Result<std::unique_ptr<ApiServer>> start(net::io_context& ioc, std::shared_ptr<ssl::context> tls,
                                                  const std::filesystem::path& db, const std::string& host,
                                                  uint16_t port, std::chrono::steady_clock::time_point ready_at,
                                                  std::map<std::string, std::string> always);
  uint16_t port() const;
  hub::ObjectStore& store() { return *store_; }
  hub::ApiService& api() { return *api_; }
  const model::Registry& registry() const { return registry_; }
  const TokenIssuer& tokens() const { return *tokens_; }
  void stop();
  /// An extra readiness condition for /readyz (after start-up): false fills the 503 body.
  void setReadiness(std::function<bool(std::string& body)> check) { *readiness_ = std::move(check); }
  /// Admission, as kube-apiserver's plugins: sees every authenticated client request first, may
  /// edit it (defaults) or answer it (a refusal). The server's own internal() calls skip it.
  using Admission = std::function<std::optional<hub::ApiResponse>(hub::ApiRequest&)>;
  void setAdmission(Admission admission) { *admission_ = std::move(admission); }
  /// Serves pods' exec, portforward and log (PodStreams), their directories under `root`: what
  /// a server with a node agent (kubelet) does.
  void servePodStreams(const std::filesystem::path& root) {
    *pod_streams_ = std::make_unique<PodStreams>(*store_, registry_, root);
  }

 private:
  ApiServer() = default;
  SystemClock clock_;
  model::Registry registry_;
  std::unique_ptr<hub::ObjectStore> store_;
  std::unique_ptr<hub::ApiService> api_;
  std::unique_ptr<hub::HttpServer> server_;
  std::unique_ptr<TokenIssuer> tokens_;
  std::shared_ptr<std::function<bool(std::string&)>> readiness_ = std::make_shared<std::function<bool(std::string&)>>();
  std::shared_ptr<Admission> admission_ = std::make_shared<Admission>();
  std::shared_ptr<std::unique_ptr<PodStreams>> pod_streams_ = std::make_shared<std::unique_ptr<PodStreams>>();
};

/// One round of the Job controller: starts new Jobs and ends them as their containers' command
/// lines say (jobs.cpp: sleep N, sleep infinity, exit N, activeDeadlineSeconds). Call it
/// periodically.
net::awaitable<void> runJobs(ApiServer& server);
/// One round of a kubelet: bare pods start (Running, startTime) and end (Succeeded or Failed) as
/// their containers' command lines say, as Jobs do in runJobs().
net::awaitable<void> runPods(ApiServer& server);
/// One round of a Job controller that runs Jobs through pods (a vCluster's: another cluster runs
/// the pods): each unfinished Job gets a pod, and ends as that pod's phase says (or at its
/// activeDeadlineSeconds).
net::awaitable<void> runJobsThroughPods(ApiServer& server);
/// One round of the CRD controller: new CustomResourceDefinitions become Established (the stand-ins
/// do not serve their kinds).
net::awaitable<void> runCrds(ApiServer& server);

/// A one-line health exchange the Kine stand-in answers on its etcd port ("health\n" ->
/// "ok\n" or "unhealthy: why\n"), standing in for etcd's gRPC status call. "" when healthy.
std::string etcdHealth(const std::string& endpoint, std::chrono::milliseconds timeout);

/// Prints "Error: MSG" as Kubernetes' programs (cobra) do and returns their exit code, 1.
int commandError(const std::string& msg);

/// Runs ioc until SIGTERM or SIGINT; returns 0.
int runUntilSignalled(net::io_context& ioc, const std::function<void()>& on_stop);

}  // namespace kflex::standin
