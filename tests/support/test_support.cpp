// SPDX-License-Identifier: Apache-2.0
#include "tests/support/test_support.hpp"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <map>
#include <mutex>
#include <poll.h>
#include <random>
#include <regex>
#include <sstream>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace kflex::test {
namespace fs = std::filesystem;

TempDir::TempDir() {
  std::random_device rd;
  std::string tmpl = (fs::temp_directory_path() / "kflex-test-XXXXXX").string();
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  char* p = ::mkdtemp(buf.data());
  path_ = p != nullptr ? fs::path(p) : fs::temp_directory_path() / ("kflex-test-" + std::to_string(rd()));
  fs::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  // Restore write permission on anything a test made read-only, then remove.
  for (auto it = fs::recursive_directory_iterator(path_, ec); it != fs::recursive_directory_iterator(); it.increment(ec)) {
    fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, ec);
  }
  fs::remove_all(path_, ec);
}

fs::path sourceDir() {
  const char* d = std::getenv("KFLEX_SOURCE_DIR");
  return d != nullptr ? fs::path(d) : fs::path(KFLEX_SOURCE_DIR);
}

fs::path binDir() {
  const char* d = std::getenv("KFLEX_BIN_DIR");
  return d != nullptr ? fs::path(d) : fs::path(KFLEX_DEFAULT_BIN_DIR);
}

std::string hubDatastore() {
  const char* d = std::getenv("KFLEX_TEST_HUB_DATASTORE");
  return d != nullptr ? d : "";
}

namespace {
std::vector<char*> cargs(const std::vector<std::string>& v) {
  std::vector<char*> out;
  for (const auto& s : v) {
    out.push_back(const_cast<char*>(s.c_str()));
  }
  out.push_back(nullptr);
  return out;
}
}  // namespace

CommandResult run(const std::vector<std::string>& argv, const std::vector<std::string>& env, const std::string& input,
                  std::chrono::milliseconds timeout) {
  CommandResult r;
  int in_pipe[2];
  int out_pipe[2];
  int err_pipe[2];
  if (::pipe2(in_pipe, O_CLOEXEC) != 0 || ::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) {
    return r;
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(in_pipe[0], 0);
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    for (const auto& e : env) {
      ::putenv(const_cast<char*>(e.c_str()));
    }
    auto a = cargs(argv);
    ::execvp(a[0], a.data());
    std::fprintf(stderr, "cannot run %s\n", a[0]);
    ::_exit(127);
  }
  ::close(in_pipe[0]);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (!input.empty()) {
    std::thread([fd = in_pipe[1], input] {
      size_t off = 0;
      while (off < input.size()) {
        ssize_t n = ::write(fd, input.data() + off, input.size() - off);
        if (n <= 0) {
          break;
        }
        off += size_t(n);
      }
      ::close(fd);
    }).detach();
  } else {
    ::close(in_pipe[1]);
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[65536];
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      r.timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
    if (::poll(fds, 2, int(left.count())) <= 0) {
      continue;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd >= 0 && (fds[i].revents & (POLLIN | POLLHUP)) != 0) {
        ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
        if (n <= 0) {
          ::close(fds[i].fd);
          fds[i].fd = -1;
          --open_fds;
        } else {
          (i == 0 ? r.out : r.err).append(buf, size_t(n));
        }
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) {
      ::close(f.fd);
    }
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

Process::Process(const std::vector<std::string>& argv, const fs::path& log) : log_(log) {
  pid_ = ::fork();
  if (pid_ == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
    auto a = cargs(argv);
    ::execvp(a[0], a.data());
    ::_exit(127);
  }
}

Process::~Process() {
  if (running()) {
    ::kill(pid_, SIGKILL);
    wait(std::chrono::seconds(10));
  }
}

void Process::signal(int sig) {
  if (!reaped_) {
    ::kill(pid_, sig);
  }
}

bool Process::running() {
  if (reaped_ || pid_ <= 0) {
    return false;
  }
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    reaped_ = true;
    status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  return true;
}

int Process::wait(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return status_;
}

std::string Process::log() const {
  std::ifstream in(log_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

testing::AssertionResult waitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
                                 const std::string& what) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) {
      return testing::AssertionSuccess();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return testing::AssertionFailure() << "timed out after " << timeout.count() << " ms waiting for " << what;
}

HubProcess::HubProcess(const fs::path& data_dir, const std::vector<std::string>& extra_args) : data_dir_(data_dir) {
  std::vector<std::string> argv = {(binDir() / "kflex-hub").string(), "serve", "--config", "/dev/null",
                                   "--data-dir", data_dir.string(), "--listen", "127.0.0.1:0"};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  if (hubDatastore() == "postgres" && std::find(extra_args.begin(), extra_args.end(), "--datastore") == extra_args.end()) {
    // The suite on PostgreSQL: one private server per data dir, so that a hub restarted on the
    // same data dir finds its objects again (kept until the test process ends).
    static std::mutex mutex;
    static std::map<fs::path, std::unique_ptr<PostgresServer>> servers;
    std::lock_guard lock(mutex);
    auto& pg = servers[data_dir];
    if (!pg) {
      pg = std::make_unique<PostgresServer>();
    }
    if (!pg->problem().empty()) {
      ADD_FAILURE() << "KFLEX_TEST_HUB_DATASTORE=postgres, but no PostgreSQL: " << pg->problem();
    }
    for (std::string a : {std::string("--datastore"), pg->dsn(), std::string("--datastore-password-file"),
                          pg->passwordFile().string()}) {
      argv.push_back(a);
    }
  }
  static int counter = 0;
  fs::path log = data_dir.parent_path() / ("hub-" + data_dir.filename().string() + "-" + std::to_string(++counter) + ".log");
  proc_ = std::make_unique<Process>(argv, log);
  auto found = waitFor(
      [&] {
        std::string text = proc_->log();
        auto pos = text.find("msg=\"kflex-hub serving\"");
        if (pos == std::string::npos) {
          return !proc_->running();
        }
        auto u = text.find("url=", pos);
        url_ = text.substr(u + 4, text.find(' ', u) - u - 4);
        return true;
      },
      std::chrono::seconds(20), "kflex-hub to serve");
  if (!found) {
    url_.clear();
  }
}

HubProcess::~HubProcess() {
  if (proc_ && proc_->running()) {
    stop();
  }
}

int HubProcess::stop() {
  proc_->signal(SIGTERM);
  int rc = proc_->wait(std::chrono::seconds(20));
  url_.clear();
  return rc;
}

std::string kubectlPath() {
  for (const char* p : {"/usr/bin/kubectl", "/usr/local/bin/kubectl"}) {
    if (::access(p, X_OK) == 0) {
      return p;
    }
  }
  return "";
}

std::optional<AgentJoin> agentJoinIn(const std::string& token_create_output) {
  // printf '%s\n' 'TOKEN' | sudo kflex-agent enroll --hub URL --token-file - --ca-cert-hash PIN
  static const std::regex kToken("printf '%s\\\\n' '([a-z0-9]{6}\\.[a-z0-9]{16})' \\| ");
  static const std::regex kPin("--ca-cert-hash (sha256:[0-9a-f]+)");
  std::smatch token;
  std::smatch pin;
  if (!std::regex_search(token_create_output, token, kToken) || !std::regex_search(token_create_output, pin, kPin)) {
    return std::nullopt;
  }
  return AgentJoin{token[1], pin[1]};
}

std::vector<std::string> versionedKubectls() {
  std::string kubectl = kubectlPath();
  if (kubectl.empty()) {
    return {};
  }
  std::error_code ec;
  fs::path dir = fs::canonical(kubectl, ec).parent_path();
  if (ec) {
    return {};
  }
  // kubectl.1.MINOR, ordered by the minor version as a number (1.9 before 1.27).
  std::vector<std::pair<int, std::string>> found;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.rfind("kubectl.1.", 0) != 0 || ::access(it->path().c_str(), X_OK) != 0) {
      continue;
    }
    std::string minor = name.substr(10);
    if (minor.empty() || minor.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    found.emplace_back(std::stoi(minor), it->path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& [minor, path] : found) {
    out.push_back(std::move(path));
  }
  return out;
}

CommandResult kubectl(const fs::path& kubeconfig, const std::vector<std::string>& args, const std::string& input,
                      std::chrono::milliseconds timeout) {
  return kubectl(KubectlOptions{}, kubeconfig, args, input, timeout);
}

CommandResult kubectl(const KubectlOptions& options, const fs::path& kubeconfig, const std::vector<std::string>& args,
                      const std::string& input, std::chrono::milliseconds timeout) {
  std::vector<std::string> argv = {options.binary.empty() ? kubectlPath() : options.binary, "--kubeconfig",
                                   kubeconfig.string()};
  // A private cache dir so discovery caching never leaks between tests.
  fs::path cache = kubeconfig.parent_path() / ".kube-cache";
  if (!options.cache_dir.empty()) {
    cache = options.cache_dir;
    argv.insert(argv.end(), {"--cache-dir", cache.string()});
  }
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, {"KUBECACHEDIR=" + cache.string(), "HOME=" + kubeconfig.parent_path().string()}, input, timeout);
}

namespace {
bool hasLine(const std::string& datagram, const std::string& line) {
  std::istringstream in(datagram);
  std::string l;
  while (std::getline(in, l)) {
    if (l == line) {
      return true;
    }
  }
  return false;
}
}  // namespace

NotifySocket::NotifySocket(const fs::path& path) : path_(path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.string().size() >= sizeof(addr.sun_path)) {
    return;
  }
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

NotifySocket::~NotifySocket() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

bool NotifySocket::waitFor(const std::string& line, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (fd_ >= 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return false;
    }
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, int(left.count())) <= 0) {
      continue;
    }
    char buf[4096];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) {
      continue;
    }
    received_.emplace_back(buf, size_t(n));
    if (hasLine(received_.back(), line)) {
      return true;
    }
  }
  return false;
}

size_t NotifySocket::count(const std::string& line) const {
  size_t n = 0;
  for (const auto& d : received_) {
    n += hasLine(d, line) ? 1 : 0;
  }
  return n;
}

namespace {

// The directory of Debian's PostgreSQL server programs, or "".
std::string postgresBinDir() {
  std::error_code ec;
  std::string best;
  for (const auto& e : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    if (fs::exists(e.path() / "bin" / "postgres") && fs::exists(e.path() / "bin" / "initdb")) {
      best = std::max(best, (e.path() / "bin").string());
    }
  }
  return best;
}

// argv run as user postgres when we are root (PostgreSQL refuses to run as root).
std::vector<std::string> asPostgres(std::vector<std::string> argv) {
  if (::geteuid() != 0) {
    return argv;
  }
  std::vector<std::string> out = {"setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

int freeTcpPort() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(s);
  return port;
}

}  // namespace

PostgresServer::PostgresServer(std::optional<Tls> tls) {
  bin_ = postgresBinDir();
  if (bin_.empty()) {
    problem_ = "PostgreSQL is not installed (apt-get install postgresql)";
    return;
  }
  char tmpl[] = "/tmp/kflex-pg-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    problem_ = "mkdtemp failed";
    return;
  }
  dir_ = tmpl;
  if (::geteuid() == 0) {
    passwd* pw = ::getpwnam("postgres");
    if (pw == nullptr) {
      problem_ = "there is no user postgres to run PostgreSQL as";
      return;
    }
    (void)!::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid);
  }
  password_ = "pw-" + std::to_string(::getpid()) + "-%:@/x";  // characters a URI must encode
  {
    std::ofstream f(dir_ / "password");
    f << password_ << "\n";
  }
  ::chmod((dir_ / "password").c_str(), 0600);
  if (::geteuid() == 0) {
    passwd* pw = ::getpwnam("postgres");
    (void)!::chown((dir_ / "password").c_str(), pw->pw_uid, pw->pw_gid);
  }
  auto init = run(asPostgres({bin_ + "/initdb", "-D", (dir_ / "data").string(), "-U", "postgres", "-E", "UTF8",
                              "--auth=scram-sha-256", "--pwfile=" + (dir_ / "password").string()}),
                  {}, "", std::chrono::seconds(120));
  if (init.exit_code != 0) {
    problem_ = "initdb failed: " + init.err + init.out;
    return;
  }
  if (tls) {
    std::error_code ec;
    fs::copy_file(tls->cert, dir_ / "data" / "server.crt", fs::copy_options::overwrite_existing, ec);
    fs::copy_file(tls->key, dir_ / "data" / "server.key", fs::copy_options::overwrite_existing, ec);
    if (ec) {
      problem_ = "cannot copy the server certificate: " + ec.message();
      return;
    }
    ::chmod((dir_ / "data" / "server.key").c_str(), 0600);
    if (::geteuid() == 0) {
      passwd* pw = ::getpwnam("postgres");
      for (const char* f : {"server.crt", "server.key"}) {
        (void)!::chown((dir_ / "data" / f).c_str(), pw->pw_uid, pw->pw_gid);
      }
    }
    tls_ = true;
  }
  port_ = freeTcpPort();
  if (!start()) {
    problem_ = "PostgreSQL did not start: " + (proc_ ? proc_->log() : std::string());
  }
}

bool PostgresServer::start() {
  // A fresh log: "ready to accept connections" from an earlier start must not count.
  std::error_code ec;
  fs::remove(dir_ / "postgres.log", ec);
  proc_ = std::make_unique<Process>(
      asPostgres({bin_ + "/postgres", "-D", (dir_ / "data").string(), "-p", std::to_string(port_), "-k",
                  dir_.string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200",
                  "-c", tls_ ? "ssl=on" : "ssl=off"}),
      dir_ / "postgres.log");
  return waitFor([&] { return proc_->log().find("ready to accept connections") != std::string::npos || !proc_->running(); },
                 std::chrono::seconds(60), "PostgreSQL") &&
         proc_->running();
}

void PostgresServer::stop() {
  if (proc_ && proc_->running()) {
    proc_->signal(SIGINT);
    proc_->wait(std::chrono::seconds(30));
  }
}

PostgresServer::~PostgresServer() {
  stop();
  proc_.reset();
  if (!dir_.empty()) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
}

std::string PostgresServer::dsn() const {
  return "postgres://postgres@127.0.0.1:" + std::to_string(port_) + "/postgres?sslmode=disable";
}

}  // namespace kflex::test
