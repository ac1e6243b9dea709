// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <sys/types.h>

namespace kflex::test {

/// A fresh directory under the system temp dir, removed when the object goes.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

/// Where the built binaries are (KFLEX_BIN_DIR from CTest, else ./bin).
std::filesystem::path binDir();
/// "postgres" when the suite runs its hubs on PostgreSQL (KFLEX_TEST_HUB_DATASTORE), else "".
std::string hubDatastore();
/// The source tree (KFLEX_SOURCE_DIR from the environment, else the one this was built from).
std::filesystem::path sourceDir();

/// Output and exit code of a finished command.
struct CommandResult {
  int exit_code = -1;
  std::string out;  ///< stdout
  std::string err;  ///< stderr
  bool timed_out = false;
};

/// Runs argv with an environment addition (NAME=VALUE entries), input on stdin, and a deadline.
CommandResult run(const std::vector<std::string>& argv, const std::vector<std::string>& env = {},
                  const std::string& input = "", std::chrono::milliseconds timeout = std::chrono::seconds(60));

/// A background process whose stdout+stderr go to a log file. Killed (SIGKILL) in the destructor if running.
class Process {
 public:
  Process(const std::vector<std::string>& argv, const std::filesystem::path& log);
  ~Process();
  pid_t pid() const { return pid_; }
  /// Sends a signal.
  void signal(int sig);
  /// Waits for exit up to timeout; returns the exit code, or -1 on timeout.
  int wait(std::chrono::milliseconds timeout);
  bool running();
  /// The log so far.
  std::string log() const;

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  bool reaped_ = false;
  std::filesystem::path log_;
};

/// Polls pred every 20 ms until it holds or the timeout passes.
testing::AssertionResult waitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
                                 const std::string& what);

/// A kflex-hub started from the build on 127.0.0.1 port 0 with its own data dir.
class HubProcess {
 public:
  /// Starts the hub and waits until it serves (its log shows the URL).
  explicit HubProcess(const std::filesystem::path& data_dir, const std::vector<std::string>& extra_args = {});
  ~HubProcess();
  /// True when it started and serves.
  bool ok() const { return !url_.empty(); }
  const std::string& url() const { return url_; }
  std::filesystem::path kubeconfig() const { return data_dir_ / "admin.kubeconfig"; }
  Process& process() { return *proc_; }
  /// SIGTERM and wait; returns the exit code.
  int stop();
  std::string log() const { return proc_->log(); }

 private:
  std::filesystem::path data_dir_;
  std::unique_ptr<Process> proc_;
  std::string url_;
};

/// What an agent joins a hub with, as `kflex token create` prints it in the agent's command.
struct AgentJoin {
  std::string token;
  std::string pin;  ///< sha256:HEX of the hub's CA key
};
/// The token and CA pin in the output of `kflex token create`; nullopt when it holds none.
std::optional<AgentJoin> agentJoinIn(const std::string& token_create_output);

/// Path of kubectl, or empty when it is not installed.
std::string kubectlPath();
/// The versioned kubectls shipped beside the real path of kubectlPath() (`kubectl.1.27`,
/// `kubectl.1.28`, ...), oldest first; empty when there are none.
std::vector<std::string> versionedKubectls();
/// Runs kubectl against a kubeconfig (its discovery cache in a `.kube-cache` beside it).
CommandResult kubectl(const std::filesystem::path& kubeconfig, const std::vector<std::string>& args,
                      const std::string& input = "", std::chrono::milliseconds timeout = std::chrono::seconds(60));

/// Which kubectl runs and where it caches discovery.
struct KubectlOptions {
  std::string binary;               ///< The kubectl to run; empty means kubectlPath().
  std::filesystem::path cache_dir;  ///< Its --cache-dir; empty means `.kube-cache` beside the kubeconfig.
};
/// Runs the kubectl `options` name against a kubeconfig.
CommandResult kubectl(const KubectlOptions& options, const std::filesystem::path& kubeconfig,
                      const std::vector<std::string>& args, const std::string& input = "",
                      std::chrono::milliseconds timeout = std::chrono::seconds(60));

/// A service manager's notification socket (what systemd gives a Type=notify service in
/// $NOTIFY_SOCKET): a datagram socket bound at `path` that collects what a daemon sends.
class NotifySocket {
 public:
  explicit NotifySocket(const std::filesystem::path& path);
  ~NotifySocket();
  bool ok() const { return fd_ >= 0; }
  const std::filesystem::path& path() const { return path_; }
  /// Reads datagrams until one contains `line` (a whole line such as "READY=1") or the timeout
  /// passes; every datagram read is appended to received().
  bool waitFor(const std::string& line, std::chrono::milliseconds timeout);
  /// How many datagrams so far contained `line`.
  size_t count(const std::string& line) const;
  const std::vector<std::string>& received() const { return received_; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  std::vector<std::string> received_;
};

/// A throwaway PostgreSQL server from Debian's postgresql package: initdb into a private
/// directory with a password for user postgres (scram-sha-256), listening on 127.0.0.1 on a free
/// port, stopped and removed at the end. Runs as user postgres when the test runs as root.
class PostgresServer {
 public:
  /// Serving TLS (ssl=on) with this certificate and key (PEM files, copied), or without.
  struct Tls {
    std::filesystem::path cert;
    std::filesystem::path key;
  };
  explicit PostgresServer(std::optional<Tls> tls = std::nullopt);
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  /// Empty when it runs; otherwise why not (for GTEST_SKIP when PostgreSQL is not installed).
  const std::string& problem() const { return problem_; }
  /// postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable (no password in it).
  std::string dsn() const;
  const std::string& password() const { return password_; }
  /// A file holding the password (0600).
  std::filesystem::path passwordFile() const { return dir_ / "password"; }
  int port() const { return port_; }
  /// Fast shutdown (SIGINT) and wait.
  void stop();
  /// Starts it again on the same port and data.
  bool start();

 private:
  std::filesystem::path dir_;
  std::string bin_;
  std::string password_;
  int port_ = 0;
  std::unique_ptr<Process> proc_;
  std::string problem_;
  bool tls_ = false;
};

}  // namespace kflex::test
