// SPDX-License-Identifier: Apache-2.0
#include "shared/common/log.hpp"

#include <atomic>
#include <cstdio>
#include <mutex>

#include "shared/common/time.hpp"

namespace kflex::log {
namespace {
std::atomic<Level> g_level{Level::Info};
std::mutex g_mutex;

const char* name(Level l) {
  switch (l) {
    case Level::Debug: return "debug";
    case Level::Info: return "info";
    case Level::Warn: return "warn";
    case Level::Error: return "error";
  }
  return "info";
}

void appendValue(std::string& out, std::string_view v) {
  bool quote = v.empty() || v.find_first_of(" \"=\t\n") != std::string_view::npos;
  if (!quote) {
    out.append(v);
    return;
  }
  out.push_back('"');
  for (char c : v) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out.append("\\n");
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
}
}  // namespace

void setLevel(Level level) { g_level = level; }

void write(Level level, std::string_view msg, std::initializer_list<Field> fields) {
  if (level < g_level.load()) {
    return;
  }
  std::string line = "time=" + formatTimeMillis(SystemClock().now()) + " level=" + name(level) + " msg=";
  appendValue(line, msg);
  for (const auto& [k, v] : fields) {
    line.push_back(' ');
    line.append(k);
    line.push_back('=');
    appendValue(line, v);
  }
  line.push_back('\n');
  std::lock_guard lock(g_mutex);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace kflex::log
