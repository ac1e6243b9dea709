// SPDX-License-Identifier: Apache-2.0
#include "bench/bench_common.hpp"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

namespace kflex::bench {

double Stats::pct(double p) {
  if (ms.empty()) {
    return 0;
  }
  std::sort(ms.begin(), ms.end());
  return ms[std::min(ms.size() - 1, size_t(p * double(ms.size())))];
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

long rssKb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      return std::stol(line.substr(6));
    }
  }
  return -1;
}

double cpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the command name (which may hold spaces) start after the last ')'.
  auto close = text.rfind(')');
  if (close == std::string::npos) {
    return 0;
  }
  std::istringstream fields(text.substr(close + 2));
  std::string f;
  double ticks = 0;
  for (int i = 3; fields >> f; ++i) {
    if (i == 14 || i == 15) {  // utime, stime
      ticks += std::stod(f);
    }
    if (i == 15) {
      break;
    }
  }
  return ticks / double(sysconf(_SC_CLK_TCK));
}

void raiseFdLimit() {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
}

fs::path workDir(const std::string& work, const char* prefix) {
  if (!work.empty()) {
    fs::create_directories(work);
    return work;
  }
  std::string tmpl = std::string("/tmp/") + prefix + "-XXXXXX";
  return ::mkdtemp(tmpl.data());
}

bool HubProcess::start(const std::string& hub_bin, const fs::path& data_dir, const std::string& listen,
                       const fs::path& log, const std::vector<std::string>& extra) {
  std::vector<std::string> args = {hub_bin, "serve", "--config", "/dev/null", "--data-dir", data_dir.string(),
                                   "--listen", listen};
  args.insert(args.end(), extra.begin(), extra.end());
  pid_ = fork();
  if (pid_ == 0) {
    FILE* f = std::freopen(log.c_str(), "w", stderr);
    (void)f;
    std::vector<char*> argv;
    for (auto& a : args) {
      argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    execv(hub_bin.c_str(), argv.data());
    _exit(127);
  }
  url_.clear();
  for (int i = 0; i < 400 && url_.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
    std::ifstream in(log);
    std::stringstream ss;
    ss << in.rdbuf();
    auto text = ss.str();
    auto pos = text.find("url=https://");
    if (pos != std::string::npos) {
      url_ = text.substr(pos + 4, text.find_first_of(" \n", pos) - pos - 4);
    }
  }
  if (url_.empty()) {
    kill();
    return false;
  }
  return true;
}

void HubProcess::stop() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }
}

void HubProcess::kill() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }
}

net::ip::tcp::endpoint HubProcess::endpoint() const {
  std::string hp = hostPort();
  return {net::ip::make_address(hp.substr(0, hp.rfind(':'))), uint16_t(std::stoi(hp.substr(hp.rfind(':') + 1)))};
}

net::awaitable<bool> Conn::connect(net::ip::tcp::endpoint ep) {
  auto [ec] = co_await beast::get_lowest_layer(stream_).async_connect(ep, net::as_tuple(net::use_awaitable));
  if (ec) {
    co_return false;
  }
  auto [hec] = co_await stream_.async_handshake(ssl::stream_base::client, net::as_tuple(net::use_awaitable));
  co_return !hec;
}

net::awaitable<unsigned> Conn::request(http::verb method, std::string target, std::string body,
                                       std::string content_type, std::string authorization) {
  http::request<http::string_body> req{method, target, 11};
  req.set(http::field::host, "localhost");
  req.set(http::field::content_type, content_type);
  if (!authorization.empty()) {
    req.set(http::field::authorization, authorization);
  }
  req.keep_alive(true);
  req.body() = std::move(body);
  req.prepare_payload();
  auto [wec, wn] = co_await http::async_write(stream_, req, net::as_tuple(net::use_awaitable));
  if (wec) {
    co_return 0;
  }
  http::response<http::string_body> res;
  auto [rec, rn] = co_await http::async_read(stream_, buffer_, res, net::as_tuple(net::use_awaitable));
  if (rec) {
    co_return 0;
  }
  last_body_ = std::move(res.body());
  co_return res.result_int();
}

std::string wireRequest(http::verb method, std::string_view target, std::string_view body,
                        std::string_view content_type) {
  std::string out;
  out.reserve(target.size() + body.size() + 128);
  out.append(http::to_string(method)).append(" ").append(target).append(" HTTP/1.1\r\nHost: localhost\r\n");
  if (!body.empty()) {
    out.append("Content-Type: ").append(content_type).append("\r\n");
  }
  out.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n\r\n").append(body);
  return out;
}

net::awaitable<unsigned> Conn::send(const std::string& wire) {
  auto [wec, wn] = co_await net::async_write(stream_, net::buffer(wire), net::as_tuple(net::use_awaitable));
  if (wec) {
    co_return 0;
  }
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  auto [rec, rn] = co_await http::async_read(stream_, buffer_, parser, net::as_tuple(net::use_awaitable));
  if (rec) {
    co_return 0;
  }
  co_return parser.get().result_int();
}

net::awaitable<void> Conn::watch(std::string target, std::function<void(std::string_view)> on_line,
                                 std::atomic<bool>& stop) {
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, "localhost");
  auto [wec, wn] = co_await http::async_write(stream_, req, net::as_tuple(net::use_awaitable));
  if (wec) {
    co_return;
  }
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(boost::none);
  auto [hec, hn] = co_await http::async_read_header(stream_, buffer_, parser, net::as_tuple(net::use_awaitable));
  if (hec) {
    co_return;
  }
  std::string pending;
  char chunk[8192];
  while (!stop && !parser.is_done()) {
    parser.get().body().data = chunk;
    parser.get().body().size = sizeof chunk;
    auto [ec, n] = co_await http::async_read_some(stream_, buffer_, parser, net::as_tuple(net::use_awaitable));
    if (ec && ec != http::error::need_buffer) {
      co_return;
    }
    pending.append(chunk, sizeof chunk - parser.get().body().size);
    size_t nl;
    while ((nl = pending.find('\n')) != std::string::npos) {
      on_line(std::string_view(pending).substr(0, nl));
      pending.erase(0, nl + 1);
    }
  }
}

void Conn::close() {
  boost::system::error_code ec;
  beast::get_lowest_layer(stream_).socket().close(ec);
}

Stats runPhase(net::io_context& ioc, ssl::context& ctx, const net::ip::tcp::endpoint& ep, size_t clients, size_t n,
               const std::function<net::awaitable<unsigned>(Conn&, size_t)>& op, unsigned ok_status,
               const std::function<void()>& started) {
  Stats stats;
  std::atomic<size_t> next{0};
  std::mutex mu;
  // Keep-alive clients: every one connects (TLS handshake included) before the clock starts, as
  // the baselines open their database before theirs.
  size_t waiting = clients;
  net::steady_timer all_connected(ioc, net::steady_timer::time_point::max());
  Clock::time_point start;
  auto arrive = [&] {
    if (--waiting == 0) {
      if (started) {
        started();
      }
      start = Clock::now();
      all_connected.cancel();
    }
  };
  for (size_t c = 0; c < clients; ++c) {
    net::co_spawn(ioc, [&]() -> net::awaitable<void> {
      Conn conn(ioc, ctx);
      bool connected = co_await conn.connect(ep);
      if (!connected) {
        ++stats.errors;
      }
      arrive();
      if (waiting > 0) {
        co_await all_connected.async_wait(net::as_tuple(net::use_awaitable));
      }
      while (connected) {
        size_t i = next++;
        if (i >= n) {
          break;
        }
        auto t0 = Clock::now();
        unsigned status = co_await op(conn, i);
        double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        std::lock_guard lock(mu);
        if (status == ok_status) {
          stats.ms.push_back(ms);
        } else {
          ++stats.errors;
        }
      }
      conn.close();
    }, net::detached);
  }
  ioc.restart();
  ioc.run();
  stats.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return stats;
}

}  // namespace kflex::bench
