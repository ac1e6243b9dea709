// SPDX-License-Identifier: Apache-2.0
#include "shared/common/time.hpp"

#include <cstdio>
#include <ctime>

namespace kflex {

namespace {
void put2(char* p, unsigned v) {
  p[0] = char('0' + v / 10);
  p[1] = char('0' + v % 10);
}

// RFC 3339 in UTC, as Kubernetes writes timestamps. Digits are written by hand: this runs several
// times for every write the hub takes (timestamps, managedFields, the request log line), where
// gmtime_r (which takes glibc's time zone lock) and snprintf cost thousands of instructions.
std::string format(TimePoint t, bool millis) {
  using namespace std::chrono;
  auto secs = floor<seconds>(t);
  auto day = floor<days>(secs);
  year_month_day ymd{day};
  hh_mm_ss hms{secs - day};
  // A system_clock time point (nanoseconds in 64 bits) spans the years 1677 to 2262: always four
  // digits.
  auto year = unsigned(int(ymd.year()));
  char buf[24];
  put2(buf, year / 100);
  put2(buf + 2, year % 100);
  buf[4] = '-';
  put2(buf + 5, unsigned(ymd.month()));
  buf[7] = '-';
  put2(buf + 8, unsigned(ymd.day()));
  buf[10] = 'T';
  put2(buf + 11, unsigned(hms.hours().count()));
  buf[13] = ':';
  put2(buf + 14, unsigned(hms.minutes().count()));
  buf[16] = ':';
  put2(buf + 17, unsigned(hms.seconds().count()));
  size_t n = 19;
  if (millis) {
    auto ms = unsigned(duration_cast<milliseconds>(t - secs).count());
    buf[n++] = '.';
    buf[n++] = char('0' + ms / 100);
    put2(buf + n, ms % 100);
    n += 2;
  }
  buf[n++] = 'Z';
  return std::string(buf, n);
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
