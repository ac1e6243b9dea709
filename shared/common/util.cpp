// SPDX-License-Identifier: Apache-2.0
#include "shared/common/util.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <pthread.h>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <fstream>
#include <sstream>
#include <unistd.h>
#include <vector>

#include <openssl/rand.h>

namespace kflex {

namespace {
constexpr std::string_view kB64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string errnoText(int err) { return std::strerror(err); }
}  // namespace

std::string base64Encode(std::string_view data) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  while (i + 3 <= data.size()) {
    uint32_t v = (uint8_t(data[i]) << 16) | (uint8_t(data[i + 1]) << 8) | uint8_t(data[i + 2]);
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += kB64[v & 63];
    i += 3;
  }
  size_t rest = data.size() - i;
  if (rest == 1) {
    uint32_t v = uint8_t(data[i]) << 16;
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += "==";
  } else if (rest == 2) {
    uint32_t v = (uint8_t(data[i]) << 16) | (uint8_t(data[i + 1]) << 8);
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

Result<std::string> base64Decode(std::string_view text) {
  std::array<int, 256> table;
  table.fill(-1);
  for (size_t i = 0; i < kB64.size(); ++i) {
    table[uint8_t(kB64[i])] = int(i);
  }
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  size_t pad = 0;
  for (char c : text) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
      continue;
    }
    if (c == '=') {
      ++pad;
      continue;
    }
    if (pad > 0 || table[uint8_t(c)] < 0) {
      return fail("invalid base64 data");
    }
    acc = (acc << 6) | uint32_t(table[uint8_t(c)]);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += char((acc >> bits) & 0xff);
    }
  }
  if (pad > 2) {
    return fail("invalid base64 padding");
  }
  return out;
}

std::string newUuid() {
  // Random bytes are fetched 512 at a time: RAND_bytes costs thousands of instructions a call
  // whatever the size, and the hub makes a UUID for every object it creates. A forked child
  // refills before its first use, so it never repeats its parent's bytes.
  static std::atomic<unsigned> fork_generation{0};
  static const bool hooked = [] {
    return ::pthread_atfork(nullptr, nullptr, [] { fork_generation.fetch_add(1, std::memory_order_relaxed); }) == 0;
  }();
  (void)hooked;
  struct Pool {
    std::array<unsigned char, 512> bytes{};
    size_t used = sizeof(bytes);
    unsigned generation = 0;
  };
  thread_local Pool pool;
  unsigned generation = fork_generation.load(std::memory_order_relaxed);
  if (pool.used + 16 > pool.bytes.size() || pool.generation != generation) {
    if (RAND_bytes(pool.bytes.data(), int(pool.bytes.size())) != 1) {
      std::abort();  // no secure randomness: nothing sensible can go on
    }
    pool.used = 0;
    pool.generation = generation;
  }
  std::array<unsigned char, 16> b{};
  std::memcpy(b.data(), pool.bytes.data() + pool.used, b.size());
  std::memset(pool.bytes.data() + pool.used, 0, b.size());
  pool.used += b.size();
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < b.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) {
      out += '-';
    }
    out += kHex[b[i] >> 4];
    out += kHex[b[i] & 15];
  }
  return out;
}

Result<std::string> readFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return fail("cannot read " + path.string() + ": " + errnoText(errno));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) {
    return fail("cannot read " + path.string());
  }
  return ss.str();
}

Result<void> writeFileAtomic(const std::filesystem::path& path, std::string_view data, mode_t mode) {
  std::filesystem::path tmp = path;
  tmp += ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) {
    return fail("cannot write " + tmp.string() + ": " + errnoText(errno));
  }
  // An existing file keeps its old mode under O_CREAT; force the one asked for.
  ::fchmod(fd, mode);
  const char* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return fail("cannot write " + tmp.string() + ": " + errnoText(err));
    }
    p += n;
    left -= size_t(n);
  }
  if (::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return fail("cannot sync " + tmp.string() + ": " + errnoText(err));
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return fail("cannot rename " + tmp.string() + " to " + path.string() + ": " + errnoText(err));
  }
  int dfd = ::open(path.parent_path().empty() ? "." : path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

bool isDns1123Label(std::string_view s) {
  if (s.empty() || s.size() > 63) {
    return false;
  }
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(s.front()) || !alnum(s.back())) {
    return false;
  }
  for (char c : s) {
    if (!alnum(c) && c != '-') {
      return false;
    }
  }
  return true;
}

bool isDns1123Subdomain(std::string_view s) {
  if (s.empty() || s.size() > 253) {
    return false;
  }
  for (const auto& part : split(s, '.')) {
    if (!isDns1123Label(part)) {
      return false;
    }
  }
  return true;
}

size_t utf8Prefix(std::string_view s, size_t max) {
  if (s.size() <= max) {
    return s.size();
  }
  size_t n = max;
  // Back off over continuation bytes (10xxxxxx) to the start of the character that crosses max.
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) {
    --n;
  }
  return n;
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t pos = s.find(sep, start);
    if (pos == std::string_view::npos) {
      out.emplace_back(s.substr(start));
      return out;
    }
    out.emplace_back(s.substr(start, pos - start));
    start = pos + 1;
  }
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) {
    s.remove_prefix(1);
  }
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) {
    s.remove_suffix(1);
  }
  return s;
}

Result<void> reportProblems(const std::vector<std::string>& problems) {
  if (problems.empty()) {
    return {};
  }
  std::string msg;
  for (const auto& p : problems) {
    msg += (msg.empty() ? "" : "\n") + p;
  }
  return fail(msg);
}

void setThreadName(std::string_view name) {
  char buf[16] = {};
  std::memcpy(buf, name.data(), std::min(name.size(), sizeof buf - 1));
  (void)pthread_setname_np(pthread_self(), buf);
}

Result<void> splitHttpsUrl(const std::string& url, std::string& host, std::string& port) {
  std::string rest = url;
  if (rest.rfind("https://", 0) != 0) {
    return fail("server \"" + url + "\" must be an https:// URL");
  }
  rest = rest.substr(8);
  rest = rest.substr(0, rest.find('/'));
  port = "443";
  if (!rest.empty() && rest.front() == '[') {
    auto close = rest.find(']');
    if (close == std::string::npos) {
      return fail("server \"" + url + "\" has a malformed IPv6 address");
    }
    host = rest.substr(1, close - 1);
    if (close + 1 < rest.size() && rest[close + 1] == ':') {
      port = rest.substr(close + 2);
    }
  } else {
    auto colon = rest.rfind(':');
    host = rest.substr(0, colon);
    if (colon != std::string::npos) {
      port = rest.substr(colon + 1);
    }
  }
  if (host.empty()) {
    return fail("server \"" + url + "\" has no host");
  }
  return {};
}

std::string joinHostPort(const std::string& host, const std::string& port) {
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + port;
}

}  // namespace kflex
