// SPDX-License-Identifier: Apache-2.0
// Sources this imitates (kubectl, client-go and apimachinery at their v1.27–v1.33 tags, the
// kubelet's streaming server of v1.30, moby/spdystream v0.2–v0.5): docs/launch-contract.md,
// "Pod streams". The wire details that matter to kubectl are noted where they are used.
#include "tests/standins/pod_streams.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include "hub/api/router.hpp"
#include "shared/common/log.hpp"
#include "shared/common/util.hpp"

namespace kflex::standin {
namespace {

namespace fs = std::filesystem;
namespace websocket = boost::beast::websocket;
using Headers = std::map<std::string, std::string>;
using Json = nlohmann::json;
using Executor = net::any_io_executor;

// ---------------------------------------------------------------------------------------------
// Requests

std::string percentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
               std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// Every value of every query parameter (exec repeats `command`).
std::multimap<std::string, std::string> queryOf(std::string_view target) {
  std::multimap<std::string, std::string> out;
  auto q = target.find('?');
  if (q == std::string_view::npos) {
    return out;
  }
  for (const auto& kv : split(std::string(target.substr(q + 1)), '&')) {
    if (kv.empty()) {
      continue;
    }
    auto eq = kv.find('=');
    out.emplace(percentDecode(kv.substr(0, eq)), eq == std::string::npos ? "" : percentDecode(kv.substr(eq + 1)));
  }
  return out;
}

std::string one(const std::multimap<std::string, std::string>& q, const std::string& key) {
  auto it = q.find(key);
  return it == q.end() ? "" : it->second;
}

bool isTrue(const std::multimap<std::string, std::string>& q, const std::string& key) {
  std::string v = one(q, key);
  return v == "true" || v == "1";
}

std::string statusJson(const std::string& status, unsigned code, const std::string& reason, const std::string& message,
                       const Json& details = Json()) {
  Json s = {{"kind", "Status"}, {"apiVersion", "v1"}, {"metadata", Json::object()}, {"status", status}};
  if (!message.empty()) {
    s["message"] = message;
  }
  if (!reason.empty()) {
    s["reason"] = reason;
  }
  if (!details.is_null()) {
    s["details"] = details;
  }
  if (code != 0) {
    s["code"] = code;
  }
  return s.dump();
}

// A plain answer before any upgrade: a Status, then the connection ends.
net::awaitable<void> answer(hub::HttpStream& stream, unsigned version, unsigned code, const std::string& reason,
                            const std::string& message) {
  http::response<http::string_body> res{static_cast<http::status>(code), version};
  res.set(http::field::content_type, "application/json");
  res.keep_alive(false);
  res.body() = statusJson("Failure", code, reason, message);
  res.prepare_payload();
  co_await http::async_write(stream, res, net::as_tuple(net::use_awaitable));
}

// ---------------------------------------------------------------------------------------------
// Queued writes to a stream that takes one write at a time; end() closes its sending side once
// what is queued has gone (a socket's shutdown, a pipe's close).

void endSending(net::ip::tcp::socket& s) {
  boost::system::error_code ec;
  s.shutdown(net::ip::tcp::socket::shutdown_send, ec);
}
void endSending(net::posix::stream_descriptor& d) {
  boost::system::error_code ec;
  d.close(ec);
}
void endSending(hub::HttpStream& s) {
  boost::system::error_code ec;
  beast::get_lowest_layer(s).socket().shutdown(net::ip::tcp::socket::shutdown_send, ec);
}

// (S may be a reference: the upgraded connection a SPDY session writes to, owned by the server.)
template <class S>
class Outbox : public std::enable_shared_from_this<Outbox<S>> {
 public:
  explicit Outbox(S s) : s_(std::forward<S>(s)) {}
  S& stream() { return s_; }
  void write(std::string bytes) {
    if (!failed_ && !ended_) {
      queue_.push_back(std::move(bytes));
      pump();
    }
  }
  void end() {
    ended_ = true;
    pump();
  }
  /// Holds writes back until release() (a socket still connecting).
  void hold() { held_ = true; }
  void release() {
    held_ = false;
    pump();
  }

 private:
  void pump() {
    if (busy_ || held_) {
      return;
    }
    if (queue_.empty()) {
      if (ended_ && !closed_) {
        closed_ = true;
        endSending(s_);
      }
      return;
    }
    busy_ = true;
    net::async_write(s_, net::buffer(queue_.front()),
                     [self = this->shared_from_this()](boost::system::error_code ec, size_t) {
                       self->busy_ = false;
                       self->queue_.pop_front();
                       if (ec) {
                         self->failed_ = true;
                         self->queue_.clear();
                         return;
                       }
                       self->pump();
                     });
  }
  S s_;
  std::deque<std::string> queue_;
  bool busy_ = false;
  bool ended_ = false;
  bool closed_ = false;
  bool failed_ = false;
  bool held_ = false;
};

// ---------------------------------------------------------------------------------------------
// A command in the pod: a process of this program in the pod's directory, its output read as it
// comes, its exit code in the Status the exec ends with (v4.channel.k8s.io's error stream).

class Command : public std::enable_shared_from_this<Command> {
 public:
  /// Channel 1 stdout, 2 stderr.
  std::function<void(int channel, std::string bytes)> output;
  /// The Status JSON, once the process has exited and its output is read.
  std::function<void(std::string status)> finished;

  Command(Executor ex, std::vector<std::string> argv, fs::path dir, bool with_stdin, bool with_stderr)
      : ex_(std::move(ex)), argv_(std::move(argv)), dir_(std::move(dir)), with_stdin_(with_stdin),
        with_stderr_(with_stderr), reaper_(ex_) {}
  ~Command() { kill(); }

  void start() {
    if (argv_.empty()) {
      finish(statusJson("Failure", 400, "BadRequest", "you must specify at least one command for the container"));
      return;
    }
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, report[2] = {-1, -1};
    bool ok = (!with_stdin_ || ::pipe2(in, O_CLOEXEC) == 0) && ::pipe2(out, O_CLOEXEC) == 0 &&
              (!with_stderr_ || ::pipe2(err, O_CLOEXEC) == 0) && ::pipe2(report, O_CLOEXEC) == 0;
    std::error_code ec;
    fs::create_directories(dir_, ec);
    pid_t pid = ok ? ::fork() : -1;
    if (pid == 0) {
      ::dup2(with_stdin_ ? in[0] : ::open("/dev/null", O_RDONLY), 0);
      ::dup2(out[1], 1);
      ::dup2(with_stderr_ ? err[1] : out[1], 2);
      if (::chdir(dir_.c_str()) != 0) {
        _exit(127);
      }
      std::vector<char*> args;
      for (auto& a : argv_) {
        args.push_back(a.data());
      }
      args.push_back(nullptr);
      ::execvp(args[0], args.data());
      int e = errno;
      (void)!::write(report[1], &e, sizeof e);
      _exit(127);
    }
    for (int fd : {in[0], out[1], err[1], report[1]}) {
      if (fd >= 0) {
        ::close(fd);
      }
    }
    int exec_errno = 0;
    if (pid > 0 && ::read(report[0], &exec_errno, sizeof exec_errno) != sizeof exec_errno) {
      exec_errno = 0;
    }
    if (report[0] >= 0) {
      ::close(report[0]);
    }
    if (pid < 0 || exec_errno != 0) {
      for (int fd : {in[1], out[0], err[0]}) {
        if (fd >= 0) {
          ::close(fd);
        }
      }
      if (pid > 0) {
        ::waitpid(pid, nullptr, 0);
      }
      // As containerd words a command that cannot start (through the kubelet's InternalError).
      std::string why = exec_errno == ENOENT ? "executable file not found in $PATH" : std::strerror(exec_errno);
      finish(statusJson("Failure", 500, "InternalError",
                        "Internal error occurred: error executing command in container: failed to exec in container: "
                        "OCI runtime exec failed: exec failed: unable to start container process: exec: \"" +
                            argv_[0] + "\": " + why + ": unknown"));
      return;
    }
    pid_ = pid;
    if (with_stdin_) {
      stdin_ = std::make_shared<Outbox<net::posix::stream_descriptor>>(net::posix::stream_descriptor(ex_, in[1]));
    }
    open_outputs_ = with_stderr_ ? 2 : 1;
    read(std::make_shared<net::posix::stream_descriptor>(ex_, out[0]), 1);
    if (with_stderr_) {
      read(std::make_shared<net::posix::stream_descriptor>(ex_, err[0]), 2);
    }
  }
  void input(std::string bytes) {
    if (stdin_) {
      stdin_->write(std::move(bytes));
    }
  }
  void endInput() {
    if (stdin_) {
      stdin_->end();
    }
  }
  void kill() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }

 private:
  void read(std::shared_ptr<net::posix::stream_descriptor> d, int channel) {
    auto buf = std::make_shared<std::array<char, 32 * 1024>>();
    d->async_read_some(net::buffer(*buf), [self = shared_from_this(), d, buf, channel](boost::system::error_code ec,
                                                                                       size_t n) {
      if (n > 0 && self->output) {
        self->output(channel, std::string(buf->data(), n));
      }
      if (ec) {
        if (--self->open_outputs_ == 0) {
          self->reap();
        }
        return;
      }
      self->read(d, channel);
    });
  }
  void reap() {
    int st = 0;
    pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == 0) {
      reaper_.expires_after(std::chrono::milliseconds(10));
      reaper_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
        if (!ec) {
          self->reap();
        }
      });
      return;
    }
    pid_ = -1;
    int code = r < 0 ? 1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (code == 0) {
      finish(statusJson("Success", 0, "", ""));
    } else {
      finish(statusJson("Failure", 0, "NonZeroExitCode",
                        "command terminated with non-zero exit code: error executing command [" + join(argv_, " ") +
                            "], exit code " + std::to_string(code),
                        {{"causes", {{{"reason", "ExitCode"}, {"message", std::to_string(code)}}}}}));
    }
  }
  void finish(std::string status) {
    if (finished) {
      auto f = std::move(finished);
      finished = nullptr;
      f(std::move(status));
    }
  }
  static std::string join(const std::vector<std::string>& v, const std::string& sep) {
    std::string out;
    for (const auto& s : v) {
      out += (out.empty() ? "" : sep) + s;
    }
    return out;
  }

  Executor ex_;
  std::vector<std::string> argv_;
  fs::path dir_;
  bool with_stdin_;
  bool with_stderr_;
  pid_t pid_ = -1;
  int open_outputs_ = 0;
  std::shared_ptr<Outbox<net::posix::stream_descriptor>> stdin_;
  net::steady_timer reaper_;
};

// ---------------------------------------------------------------------------------------------
// SPDY/3.1 as moby/spdystream speaks it (the server side): 8-byte frame headers, header blocks
// of 32-bit counts and lengths compressed by one zlib stream per direction primed with the
// SPDY/3 dictionary; no flow control (spdystream sends no WINDOW_UPDATE and ignores them).

// The SPDY/3 header compression dictionary (draft-mbelshe-httpbis-spdy-00, 2.6.10.1): these
// words, each after its length as 4 bytes, then the text below. Adler-32 0xe3c6a7c2.
const std::string& spdyDictionary() {
  static const std::string dict = [] {
    static const char* const words[] = {
        "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding",
        "accept-language", "accept-ranges", "age", "allow", "authorization", "cache-control", "connection",
        "content-base", "content-encoding", "content-language", "content-length", "content-location",
        "content-md5", "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host",
        "if-match", "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified",
        "location", "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
        "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via",
        "warning", "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url",
        "public", "set-cookie", "keep-alive", "origin"};
    std::string d;
    for (const char* w : words) {
      uint32_t n = static_cast<uint32_t>(std::strlen(w));
      d += {char(n >> 24), char(n >> 16), char(n >> 8), char(n)};
      d += w;
    }
    d += "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
         "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 "
         "Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service "
         "UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, "
         "Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/xml,"
         "application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch"
         "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.";
    return d;
  }();
  return dict;
}

std::string be32(uint32_t v) { return {char(v >> 24), char(v >> 16), char(v >> 8), char(v)}; }
uint32_t be32(std::string_view s, size_t at) {
  return uint32_t(uint8_t(s[at])) << 24 | uint32_t(uint8_t(s[at + 1])) << 16 | uint32_t(uint8_t(s[at + 2])) << 8 |
         uint32_t(uint8_t(s[at + 3]));
}

enum : uint16_t { kSynStream = 1, kSynReply = 2, kRstStream = 3, kSettings = 4, kPing = 6, kGoAway = 7, kHeaders = 8 };
constexpr uint8_t kFin = 0x01;
constexpr uint32_t kProtocolError = 1;

class HeaderCodec {
 public:
  HeaderCodec() {
    inflateInit(&in_);
    deflateInit(&out_, Z_BEST_COMPRESSION);
    const auto& d = spdyDictionary();
    deflateSetDictionary(&out_, reinterpret_cast<const Bytef*>(d.data()), static_cast<uInt>(d.size()));
  }
  ~HeaderCodec() {
    inflateEnd(&in_);
    deflateEnd(&out_);
  }
  HeaderCodec(const HeaderCodec&) = delete;
  HeaderCodec& operator=(const HeaderCodec&) = delete;

  Result<Headers> decode(std::string_view block) {
    std::string plain;
    in_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(block.data()));
    in_.avail_in = static_cast<uInt>(block.size());
    std::array<char, 4096> buf{};
    while (true) {
      in_.next_out = reinterpret_cast<Bytef*>(buf.data());
      in_.avail_out = static_cast<uInt>(buf.size());
      int rc = inflate(&in_, Z_SYNC_FLUSH);
      if (rc == Z_NEED_DICT) {
        const auto& d = spdyDictionary();
        rc = inflateSetDictionary(&in_, reinterpret_cast<const Bytef*>(d.data()), static_cast<uInt>(d.size()));
        if (rc != Z_OK) {
          return fail("header block: not the SPDY/3 dictionary");
        }
        continue;
      }
      plain.append(buf.data(), buf.size() - in_.avail_out);
      if (rc != Z_OK && rc != Z_BUF_ERROR) {
        return fail("header block: zlib error " + std::to_string(rc));
      }
      if (in_.avail_in == 0 && in_.avail_out != 0) {
        break;
      }
      if (plain.size() > 1 << 20) {
        return fail("header block too large");
      }
    }
    Headers out;
    size_t at = 0;
    auto take = [&](std::string& into) {
      if (at + 4 > plain.size()) {
        return false;
      }
      uint32_t n = be32(plain, at);
      at += 4;
      if (n > plain.size() - at) {
        return false;
      }
      into = plain.substr(at, n);
      at += n;
      return true;
    };
    if (plain.size() < 4) {
      return fail("header block: too short");
    }
    uint32_t count = be32(plain, 0);
    at = 4;
    for (uint32_t i = 0; i < count; ++i) {
      std::string name, value;
      if (!take(name) || !take(value)) {
        return fail("header block: truncated");
      }
      out[name] = value;
    }
    return out;
  }

  std::string encode(const Headers& h) {
    std::string plain = be32(static_cast<uint32_t>(h.size()));
    for (const auto& [k, v] : h) {
      plain += be32(static_cast<uint32_t>(k.size())) + k + be32(static_cast<uint32_t>(v.size())) + v;
    }
    std::string out;
    out_.next_in = reinterpret_cast<Bytef*>(plain.data());
    out_.avail_in = static_cast<uInt>(plain.size());
    std::array<char, 4096> buf{};
    do {
      out_.next_out = reinterpret_cast<Bytef*>(buf.data());
      out_.avail_out = static_cast<uInt>(buf.size());
      deflate(&out_, Z_SYNC_FLUSH);
      out.append(buf.data(), buf.size() - out_.avail_out);
    } while (out_.avail_out == 0);
    return out;
  }

 private:
  z_stream in_{};
  z_stream out_{};
};

std::string controlFrame(uint16_t type, uint8_t flags, const std::string& payload) {
  std::string f = {char(0x80), char(0x03), char(type >> 8), char(type), char(flags)};
  uint32_t n = static_cast<uint32_t>(payload.size());
  f += {char(n >> 16), char(n >> 8), char(n)};
  return f + payload;
}

std::string dataFrame(uint32_t id, uint8_t flags, std::string_view payload) {
  std::string f = be32(id & 0x7fffffff);
  uint32_t n = static_cast<uint32_t>(payload.size());
  f += {char(flags), char(n >> 16), char(n >> 8), char(n)};
  f.append(payload);
  return f;
}

// One upgraded SPDY connection: reads frames and hands them to its handlers; writes frames in
// order. Single-threaded (the connection's loop).
class SpdyConn : public std::enable_shared_from_this<SpdyConn> {
 public:
  std::function<void(uint32_t id, const Headers& headers)> on_stream;
  std::function<void(uint32_t id, std::string bytes, bool fin)> on_data;
  std::function<void(uint32_t id)> on_reset;

  explicit SpdyConn(hub::HttpStream& stream)
      : stream_(stream), out_(std::make_shared<Outbox<hub::HttpStream&>>(stream)), grace_(stream.get_executor()) {}

  /// Reads frames until the peer closes, sends GOAWAY, or a frame is malformed.
  net::awaitable<void> run() {
    std::string header(8, '\0');
    while (true) {
      auto [ec, n] = co_await net::async_read(stream_, net::buffer(header), net::as_tuple(net::use_awaitable));
      if (ec) {
        break;
      }
      uint32_t len = be32(header, 4) & 0xffffff;
      std::string payload(len, '\0');
      if (len > 0) {
        auto [pec, pn] = co_await net::async_read(stream_, net::buffer(payload), net::as_tuple(net::use_awaitable));
        if (pec) {
          break;
        }
      }
      const uint8_t flags = static_cast<uint8_t>(header[4]);
      if ((static_cast<uint8_t>(header[0]) & 0x80) == 0) {
        if (on_data) {
          on_data(be32(header, 0) & 0x7fffffff, std::move(payload), (flags & kFin) != 0);
        }
        continue;
      }
      const uint16_t version = static_cast<uint16_t>((uint8_t(header[0]) & 0x7f) << 8 | uint8_t(header[1]));
      const uint16_t type = static_cast<uint16_t>(uint8_t(header[2]) << 8 | uint8_t(header[3]));
      if (version != 3) {
        log::warn("spdy: a frame of another version; the connection ends", {{"version", std::to_string(version)}});
        break;
      }
      if (type == kSynStream && len >= 10) {
        uint32_t id = be32(payload, 0) & 0x7fffffff;
        auto headers = codec_.decode(std::string_view(payload).substr(10));
        if (!headers) {
          log::warn("spdy: a malformed header block; the connection ends", {{"error", headers.error().message}});
          break;
        }
        if (on_stream) {
          on_stream(id, headers.value());
        }
        if ((flags & kFin) != 0 && on_data) {
          on_data(id, "", true);
        }
      } else if (type == kHeaders && len >= 4) {
        (void)codec_.decode(std::string_view(payload).substr(4));  // keeps the zlib stream in step
      } else if (type == kRstStream && len >= 8) {
        if (on_reset) {
          on_reset(be32(payload, 0) & 0x7fffffff);
        }
      } else if (type == kPing && len == 4) {
        send(controlFrame(kPing, 0, payload));  // the client's (odd) ids are echoed
      } else if (type == kGoAway) {
        break;
      }
      // SYN_REPLY, SETTINGS, WINDOW_UPDATE: nothing to do (no flow control, as spdystream).
    }
    closed_ = true;
    grace_.cancel();
  }

  void reply(uint32_t id) { send(controlFrame(kSynReply, 0, be32(id) + codec_.encode({}))); }
  void data(uint32_t id, std::string_view bytes, bool fin) {
    do {
      std::string_view part = bytes.substr(0, 32 * 1024);
      bytes.remove_prefix(part.size());
      send(dataFrame(id, fin && bytes.empty() ? kFin : 0, part));
    } while (!bytes.empty());
  }
  void reset(uint32_t id, uint32_t status) { send(controlFrame(kRstStream, 0, be32(id) + be32(status))); }
  /// GOAWAY, then the connection ends when the client closes it, or after 10 s.
  void goAway() {
    send(controlFrame(kGoAway, 0, be32(0) + be32(0)));
    grace_.expires_after(std::chrono::seconds(10));
    grace_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec && !self->closed_) {
        boost::system::error_code ignored;
        beast::get_lowest_layer(self->stream_).socket().close(ignored);
      }
    });
  }

 private:
  void send(std::string frame) {
    if (!closed_) {
      out_->write(std::move(frame));
    }
  }
  hub::HttpStream& stream_;
  std::shared_ptr<Outbox<hub::HttpStream&>> out_;  // frames in order, one write at a time
  HeaderCodec codec_;
  bool closed_ = false;
  net::steady_timer grace_;
};

std::vector<std::string> offered(const http::request<http::string_body>& req);

// The SPDY upgrade to `protocol` when the client offers it (apimachinery httpstream.Handshake:
// 403 otherwise); false when the connection ends here.
net::awaitable<bool> upgradeToSpdy(hub::HttpStream& stream, const http::request<http::string_body>& req,
                                   const std::string& protocol) {
  const unsigned version = req.version();
  auto protocols = offered(req);
  if (std::find(protocols.begin(), protocols.end(), protocol) == protocols.end()) {
    co_await answer(stream, version, 403, "Forbidden", "unable to upgrade: no common stream protocol");
    co_return false;
  }
  http::response<http::empty_body> res{http::status::switching_protocols, version};
  res.set(http::field::connection, "Upgrade");
  res.set(http::field::upgrade, "SPDY/3.1");
  res.set("X-Stream-Protocol-Version", protocol);
  auto [ec, n] = co_await http::async_write(stream, res, net::as_tuple(net::use_awaitable));
  co_return !ec;
}

// The client's offered stream protocols (X-Stream-Protocol-Version, one header per value).
std::vector<std::string> offered(const http::request<http::string_body>& req) {
  std::vector<std::string> out;
  for (auto [it, end] = req.equal_range("X-Stream-Protocol-Version"); it != end; ++it) {
    for (auto& v : split(std::string(it->value()), ',')) {
      out.push_back(std::string(trim(v)));
    }
  }
  return out;
}

// exec over SPDY, remotecommand v4: the client opens error, stdin?, stdout, stderr? one by one,
// each waiting for its SYN_REPLY; then the command runs; its end is FIN on stdout and stderr,
// the Status on error, GOAWAY.
net::awaitable<void> execOverSpdy(hub::HttpStream& stream, std::shared_ptr<Command> cmd, bool with_stdin,
                                  bool with_stderr) {
  auto conn = std::make_shared<SpdyConn>(stream);
  auto ids = std::make_shared<std::map<std::string, uint32_t>>();
  const size_t expected = 2 + (with_stdin ? 1 : 0) + (with_stderr ? 1 : 0);
  std::weak_ptr<SpdyConn> weak = conn;
  cmd->output = [weak, ids](int channel, std::string bytes) {
    auto c = weak.lock();
    auto it = ids->find(channel == 1 ? "stdout" : "stderr");
    if (c && it != ids->end()) {
      c->data(it->second, bytes, false);
    }
  };
  cmd->finished = [weak, ids](std::string status) {
    auto c = weak.lock();
    if (!c) {
      return;
    }
    for (const char* t : {"stdout", "stderr"}) {
      if (auto it = ids->find(t); it != ids->end()) {
        c->data(it->second, "", true);
      }
    }
    if (auto it = ids->find("error"); it != ids->end()) {
      c->data(it->second, status.find("\"Success\"") != std::string::npos ? "" : status, true);
    }
    c->goAway();
  };
  conn->on_stream = [conn = conn.get(), ids, expected, cmd](uint32_t id, const Headers& h) {
    auto type = h.find("streamtype");
    if (type == h.end() || ids->count(type->second)) {
      conn->reset(id, kProtocolError);
      return;
    }
    (*ids)[type->second] = id;
    conn->reply(id);
    if (ids->size() == expected) {
      cmd->start();
    }
  };
  conn->on_data = [ids, cmd](uint32_t id, std::string bytes, bool fin) {
    auto it = ids->find("stdin");
    if (it == ids->end() || it->second != id) {
      return;  // resize and the like
    }
    if (!bytes.empty()) {
      cmd->input(std::move(bytes));
    }
    if (fin) {
      cmd->endInput();
    }
  };
  conn->on_reset = [ids, cmd](uint32_t id) {
    if (auto it = ids->find("stdin"); it != ids->end() && it->second == id) {
      cmd->endInput();
    }
  };
  co_await conn->run();
  cmd->output = nullptr;
  cmd->finished = nullptr;
  cmd->kill();
  conn->on_stream = nullptr;
  conn->on_data = nullptr;
  conn->on_reset = nullptr;
}

// exec over WebSocket v5.channel.k8s.io (kube-apiserver 1.30's StreamTranslatorHandler): binary
// messages whose first byte is the channel (0 stdin, 1 stdout, 2 stderr, 3 the Status, 4 resize,
// 255 a close signal: [255, 0] ends stdin); an empty stdout message first; the Status, then a
// normal close.
net::awaitable<void> execOverWebSocket(hub::HttpStream& stream, http::request<http::string_body> req,
                                       std::shared_ptr<Command> cmd) {
  auto ws = std::make_shared<websocket::stream<hub::HttpStream&>>(stream);
  ws->set_option(websocket::stream_base::decorator([](websocket::response_type& res) {
    res.set(http::field::sec_websocket_protocol, "v5.channel.k8s.io");
  }));
  auto [aec] = co_await ws->async_accept(req, net::as_tuple(net::use_awaitable));
  if (aec) {
    co_return;
  }
  ws->binary(true);
  struct Out {
    std::deque<std::string> queue;
    bool busy = false;
    bool close_after = false;
  };
  auto out = std::make_shared<Out>();
  auto pump = std::make_shared<std::function<void()>>();
  std::weak_ptr<std::function<void()>> weak_pump = pump;
  *pump = [ws, out, weak_pump]() {
    if (out->busy) {
      return;
    }
    if (out->queue.empty()) {
      if (out->close_after) {
        out->close_after = false;
        out->busy = true;
        ws->async_close(websocket::close_code::normal, [](boost::system::error_code) {});
      }
      return;
    }
    out->busy = true;
    ws->async_write(net::buffer(out->queue.front()), [out, weak_pump](boost::system::error_code ec, size_t) {
      out->busy = false;
      out->queue.pop_front();
      if (ec) {
        out->queue.clear();
        return;
      }
      if (auto p = weak_pump.lock()) {
        (*p)();
      }
    });
  };
  out->queue.push_back(std::string(1, '\x01'));
  (*pump)();
  cmd->output = [out, pump](int channel, std::string bytes) {
    out->queue.push_back(std::string(1, char(channel)) + bytes);
    (*pump)();
  };
  cmd->finished = [out, pump](std::string status) {
    out->queue.push_back("\x03" + status);
    out->close_after = true;
    (*pump)();
  };
  cmd->start();
  beast::flat_buffer buf;
  while (true) {
    buf.clear();
    auto [ec, n] = co_await ws->async_read(buf, net::as_tuple(net::use_awaitable));
    if (ec) {
      break;
    }
    std::string msg = beast::buffers_to_string(buf.data());
    if (msg.empty()) {
      continue;
    }
    if (msg[0] == 0) {
      cmd->input(msg.substr(1));
    } else if (static_cast<uint8_t>(msg[0]) == 255 && msg.size() >= 2 && msg[1] == 0) {
      cmd->endInput();
    }
  }
  cmd->output = nullptr;
  cmd->finished = nullptr;
  cmd->kill();
  *pump = nullptr;
}

// One forwarded connection: dials PORT in the pod, then passes what it sends to the data stream;
// its end ends both streams. A failed dial is a message on the error stream.
net::awaitable<void> forward(std::weak_ptr<SpdyConn> weak, std::shared_ptr<Outbox<net::ip::tcp::socket>> sock,
                             uint16_t port, std::string pod, uint32_t error_id, uint32_t data_id) {
  net::ip::tcp::endpoint to(net::ip::make_address("127.0.0.1"), port);
  auto [ec] = co_await sock->stream().async_connect(to, net::as_tuple(net::use_awaitable));
  sock->release();
  if (ec) {
    if (auto c = weak.lock()) {
      // The kubelet's words (its PortForward through the CRI).
      if (error_id != 0) {
        c->data(error_id,
                "error forwarding port " + std::to_string(port) + " to pod " + pod +
                    ": failed to connect to localhost:" + std::to_string(port) + " inside namespace: " + ec.message(),
                true);
      }
      c->data(data_id, "", true);
    }
    co_return;
  }
  std::array<char, 32 * 1024> buf{};
  while (true) {
    auto [rec, n] = co_await sock->stream().async_read_some(net::buffer(buf), net::as_tuple(net::use_awaitable));
    auto c = weak.lock();
    if (!c) {
      co_return;
    }
    if (n > 0) {
      c->data(data_id, std::string_view(buf.data(), n), false);
    }
    if (rec) {
      c->data(data_id, "", true);
      if (error_id != 0) {
        c->data(error_id, "", true);
      }
      co_return;
    }
  }
}

// port-forward over SPDY (portforward.k8s.io): per forwarded connection the client opens an error
// stream and a data stream with the same `requestid` and `port`; the data stream is the
// connection to PORT in the pod; when that ends both streams end (the client waits for both).
// A failed dial is a message on the error stream (which ends kubectl's whole port-forward, as
// the kubelet's does).
net::awaitable<void> portForwardOverSpdy(hub::HttpStream& stream, const std::string& pod) {
  auto conn = std::make_shared<SpdyConn>(stream);
  struct Pair {
    uint32_t error = 0;
    uint32_t data = 0;
    std::shared_ptr<Outbox<net::ip::tcp::socket>> target;
  };
  auto pairs = std::make_shared<std::map<std::string, Pair>>();
  auto by_data = std::make_shared<std::map<uint32_t, std::string>>();
  auto ex = stream.get_executor();
  std::weak_ptr<SpdyConn> weak = conn;
  conn->on_stream = [conn = conn.get(), weak, pairs, by_data, ex, pod](uint32_t id, const Headers& h) {
    auto get = [&](const char* k) {
      auto it = h.find(k);
      return it == h.end() ? std::string() : it->second;
    };
    const std::string type = get("streamtype");
    const std::string request = get("requestid");
    int port = 0;
    try {
      port = std::stoi(get("port"));
    } catch (...) {
    }
    if ((type != "error" && type != "data") || port <= 0 || port > 65535) {
      conn->reset(id, kProtocolError);
      return;
    }
    conn->reply(id);
    Pair& p = (*pairs)[request];
    if (type == "error") {
      p.error = id;
      return;
    }
    p.data = id;
    (*by_data)[id] = request;
    auto sock = std::make_shared<Outbox<net::ip::tcp::socket>>(net::ip::tcp::socket(ex));
    p.target = sock;
    sock->hold();
    net::co_spawn(ex, forward(weak, sock, static_cast<uint16_t>(port), pod, p.error, p.data), net::detached);
  };
  conn->on_data = [pairs, by_data](uint32_t id, std::string bytes, bool fin) {
    auto it = by_data->find(id);
    if (it == by_data->end()) {
      return;  // the error stream: the client only closes it
    }
    auto& target = (*pairs)[it->second].target;
    if (!bytes.empty()) {
      target->write(std::move(bytes));
    }
    if (fin) {
      target->end();
    }
  };
  conn->on_reset = [pairs, by_data](uint32_t id) {
    if (auto it = by_data->find(id); it != by_data->end()) {
      boost::system::error_code ec;
      (*pairs)[it->second].target->stream().close(ec);
    }
  };
  co_await conn->run();
  for (auto& [request, p] : *pairs) {
    if (p.target) {
      boost::system::error_code ec;
      p.target->stream().close(ec);
    }
  }
  conn->on_stream = nullptr;
  conn->on_data = nullptr;
  conn->on_reset = nullptr;
}

// GET .../log: the container's log file, all of it (or its last tailLines), then with
// follow=true what is appended, as text/plain chunks flushed as they come (kube-apiserver's
// LocationStreamer with Flush), until the client goes.
net::awaitable<void> serveLog(hub::HttpStream& stream, unsigned version, fs::path file, bool follow,
                              std::optional<long> tail_lines) {
  http::response<http::empty_body> res{http::status::ok, version};
  res.set(http::field::content_type, "text/plain");
  res.set(http::field::cache_control, "no-cache, private");
  res.chunked(true);
  res.keep_alive(false);
  http::response_serializer<http::empty_body> head{res};
  auto [hec, hn] = co_await http::async_write_header(stream, head, net::as_tuple(net::use_awaitable));
  if (hec) {
    co_return;
  }
  auto gone = std::make_shared<bool>(false);
  net::steady_timer poll(stream.get_executor());
  if (follow) {
    // The client's end shows as its read ending (it sends nothing else).
    auto probe = std::make_shared<std::array<char, 256>>();
    stream.async_read_some(net::buffer(*probe), [gone, probe, &poll](boost::system::error_code, size_t) {
      *gone = true;
      poll.cancel();
    });
  }
  std::streamoff at = 0;
  bool first = true;
  while (!*gone) {
    std::string fresh;
    if (std::ifstream in(file, std::ios::binary); in) {
      in.seekg(at);
      fresh.assign(std::istreambuf_iterator<char>(in), {});
    }
    at += static_cast<std::streamoff>(fresh.size());
    if (first && tail_lines) {
      size_t cut = fresh.size();
      for (long i = 0; i <= *tail_lines && cut != std::string::npos && cut > 0; ++i) {
        cut = fresh.rfind('\n', cut - 1);
      }
      if (cut != std::string::npos && cut < fresh.size() && *tail_lines >= 0) {
        fresh = fresh.substr(cut + (fresh[cut] == '\n' ? 1 : 0));
      }
    }
    first = false;
    if (!fresh.empty()) {
      auto [wec, wn] = co_await net::async_write(stream, http::make_chunk(net::buffer(fresh)),
                                                 net::as_tuple(net::use_awaitable));
      if (wec) {
        co_return;
      }
    }
    if (!follow) {
      break;
    }
    poll.expires_after(std::chrono::milliseconds(100));
    co_await poll.async_wait(net::as_tuple(net::use_awaitable));
  }
  if (!*gone) {
    co_await net::async_write(stream, http::make_chunk_last(), net::as_tuple(net::use_awaitable));
  }
  if (follow && !*gone) {
    boost::system::error_code ignored;
    beast::get_lowest_layer(stream).socket().shutdown(net::ip::tcp::socket::shutdown_send, ignored);
    poll.expires_after(std::chrono::seconds(5));
    co_await poll.async_wait(net::as_tuple(net::use_awaitable));
  }
}

// /api/v1/namespaces/NS/pods/NAME/SUB -> NS, NAME, SUB.
bool parsePath(std::string_view path, std::string& ns, std::string& pod, std::string& sub) {
  auto parts = split(std::string(path), '/');
  if (parts.size() != 8 || !parts[0].empty() || parts[1] != "api" || parts[2] != "v1" || parts[3] != "namespaces" ||
      parts[5] != "pods") {
    return false;
  }
  ns = parts[4];
  pod = parts[6];
  sub = parts[7];
  return (sub == "exec" || sub == "portforward" || sub == "log") && !ns.empty() && !pod.empty();
}

}  // namespace

PodStreams::PodStreams(hub::ObjectStore& store, const model::Registry& registry, fs::path root)
    : store_(store), pods_(registry.find("", "v1", "pods")), root_(std::move(root)) {}

bool PodStreams::matches(std::string_view path) {
  std::string ns, pod, sub;
  return parsePath(path, ns, pod, sub);
}

net::awaitable<void> PodStreams::serve(std::unique_ptr<hub::HttpStream>& stream, http::request<http::string_body> req,
                                       tls::PeerIdentity id, std::string) {
  std::string target(req.target());
  std::string ns, name, sub;
  parsePath(target.substr(0, target.find('?')), ns, name, sub);
  const unsigned version = req.version();
  if (!id.verified) {
    co_await answer(*stream, version, 401, "Unauthorized", "Unauthorized");
    co_return;
  }
  auto rec = pods_ != nullptr ? store_.get(hub::resourceKey(*pods_, ns), name) : nullptr;
  Json pod = rec ? Json::parse(rec->bytes, nullptr, false) : Json();
  if (!pod.is_object()) {
    co_await answer(*stream, version, 404, "NotFound", "pods \"" + name + "\" not found");
    co_return;
  }
  auto query = queryOf(target);
  std::vector<std::string> containers;
  for (const auto& c : pod["spec"].value("containers", Json::array())) {
    containers.push_back(c.value("name", ""));
  }
  std::string container = one(query, "container");
  if (container.empty() && containers.size() == 1) {
    container = containers[0];
  }
  if (sub != "portforward") {
    if (container.empty()) {
      co_await answer(*stream, version, 400, "BadRequest",
                      "a container name must be specified for pod " + name + ", choose one of: [" +
                          (containers.empty() ? std::string() : containers[0]) + "]");
      co_return;
    }
    if (std::find(containers.begin(), containers.end(), container) == containers.end()) {
      co_await answer(*stream, version, 400, "BadRequest",
                      "container " + container + " is not valid for pod " + name);
      co_return;
    }
  }
  const fs::path dir = root_ / ns / name;
  const std::string upgrade(req[http::field::upgrade]);
  const bool ws = websocket::is_upgrade(req);
  const bool spdy = beast::iequals(upgrade, "SPDY/3.1");
  if (sub == "log") {
    std::optional<long> tail;
    if (auto t = one(query, "tailLines"); !t.empty()) {
      if (t.find_first_not_of("0123456789") != std::string::npos || t.size() > 12) {
        co_await answer(*stream, version, 400, "BadRequest", "tailLines: Invalid value: " + t);
        co_return;
      }
      tail = std::stol(t);
    }
    co_await serveLog(*stream, version, dir / (container + ".log"), isTrue(query, "follow"), tail);
    co_return;
  }
  if (sub == "portforward") {
    if (ws || !spdy) {
      // v1.30: PortForwardWebsockets is alpha and off, so a WebSocket request is not upgraded
      // (kubectl 1.31+ then falls back to SPDY).
      co_await answer(*stream, version, 400, "BadRequest", "Upgrade request required");
      co_return;
    }
    if (!co_await upgradeToSpdy(*stream, req, "portforward.k8s.io")) {
      co_return;
    }
    log::info("portforward", {{"pod", ns + "/" + name}, {"transport", "SPDY/3.1 portforward.k8s.io"}});
    co_await portForwardOverSpdy(*stream, name);
    co_return;
  }
  // exec
  if (pod.value("status", Json::object()).value("phase", "") == "Succeeded" ||
      pod.value("status", Json::object()).value("phase", "") == "Failed") {
    co_await answer(*stream, version, 400, "BadRequest", "cannot exec into a container in a completed pod");
    co_return;
  }
  std::vector<std::string> argv;
  for (auto [it, end] = query.equal_range("command"); it != end; ++it) {
    argv.push_back(it->second);
  }
  if (isTrue(query, "tty")) {
    co_await answer(*stream, version, 400, "BadRequest",
                    "the kflex k3s stand-in has no terminals: run kubectl exec without -t");
    co_return;
  }
  const bool with_stdin = isTrue(query, "stdin");
  const bool with_stderr = isTrue(query, "stderr");
  auto cmd = std::make_shared<Command>(stream->get_executor(), argv, dir, with_stdin, with_stderr);
  if (ws) {
    std::string protocols(req[http::field::sec_websocket_protocol]);
    if (protocols.find("v5.channel.k8s.io") == std::string::npos) {
      co_await answer(*stream, version, 400, "BadRequest", "websocket: the client offers no v5.channel.k8s.io");
      co_return;
    }
    log::info("exec", {{"pod", ns + "/" + name}, {"transport", "websocket v5.channel.k8s.io"}});
    co_await execOverWebSocket(*stream, std::move(req), cmd);
    co_return;
  }
  if (!spdy) {
    co_await answer(*stream, version, 400, "BadRequest", "Upgrade request required");
    co_return;
  }
  if (!co_await upgradeToSpdy(*stream, req, "v4.channel.k8s.io")) {
    co_return;
  }
  log::info("exec", {{"pod", ns + "/" + name}, {"transport", "SPDY/3.1 v4.channel.k8s.io"}});
  co_await execOverSpdy(*stream, cmd, with_stdin, with_stderr);
}

}  // namespace kflex::standin
