// SPDX-License-Identifier: Apache-2.0
#include "shared/common/time.hpp"

#include <cstdio>
#include <ctime>

namespace kflex {

namespace {
std::string format(TimePoint t, bool millis) {
  auto secs = std::chrono::time_point_cast<std::chrono::seconds>(t);
  std::time_t tt = std::chrono::system_clock::to_time_t(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  if (millis) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t - secs).count();
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  } else {
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  }
  return buf;
}
}  // namespace

std::string formatTime(TimePoint t) { return format(t, false); }
std::string formatTimeMillis(TimePoint t) { return format(t, true); }

std::optional<TimePoint> parseTime(std::string_view s) {
  std::tm tm{};
  int consumed = 0;
  std::string str(s);
  if (std::sscanf(str.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) != 6) {
    return std::nullopt;
  }
  std::string_view rest = s.substr(static_cast<size_t>(consumed));
  if (!rest.empty() && rest.front() == '.') {
    rest.remove_prefix(1);
    while (!rest.empty() && rest.front() >= '0' && rest.front() <= '9') {
      rest.remove_prefix(1);
    }
  }
  long offset = 0;
  if (rest == "Z" || rest == "z") {
  } else if (rest.size() == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':') {
    int h = 0;
    int m = 0;
    if (std::sscanf(std::string(rest.substr(1)).c_str(), "%2d:%2d", &h, &m) != 2) {
      return std::nullopt;
    }
    offset = (h * 3600L + m * 60L) * (rest[0] == '+' ? 1 : -1);
  } else {
    return std::nullopt;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  std::time_t tt = timegm(&tm);
  return std::chrono::system_clock::from_time_t(tt - offset);
}

std::string humanDuration(std::chrono::seconds d) {
  long s = d.count();
  if (s < 0) {
    s = 0;
  }
  if (s < 120) {
    return std::to_string(s) + "s";
  }
  long m = s / 60;
  if (m < 10) {
    long rs = s % 60;
    return rs == 0 ? std::to_string(m) + "m" : std::to_string(m) + "m" + std::to_string(rs) + "s";
  }
  if (m < 180) {
    return std::to_string(m) + "m";
  }
  long h = s / 3600;
  if (h < 8) {
    long rm = (s % 3600) / 60;
    return rm == 0 ? std::to_string(h) + "h" : std::to_string(h) + "h" + std::to_string(rm) + "m";
  }
  if (h < 48) {
    return std::to_string(h) + "h";
  }
  long days = h / 24;
  if (days < 8) {
    long rh = h % 24;
    return rh == 0 ? std::to_string(days) + "d" : std::to_string(days) + "d" + std::to_string(rh) + "h";
  }
  if (days < 365 * 2) {
    return std::to_string(days) + "d";
  }
  return std::to_string(days / 365) + "y";
}

std::optional<std::chrono::milliseconds> parseDuration(const std::string& s) {
  if (s.empty()) {
    return std::chrono::milliseconds(0);
  }
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  std::string unit = s.substr(used);
  double factor = unit == "ms" ? 1 : unit == "s" || unit.empty() ? 1000 : unit == "m" ? 60000
                : unit == "h" ? 3600000 : unit == "d" ? 86400000 : -1;
  if (factor < 0 || v < 0) {
    return std::nullopt;
  }
  return std::chrono::milliseconds(static_cast<long>(v * factor));
}

}  // namespace kflex
