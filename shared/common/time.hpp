// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace kflex {

using TimePoint = std::chrono::system_clock::time_point;

/// Wall-clock source, injectable so tests can use FakeClock.
class Clock {
 public:
  virtual ~Clock() = default;
  /// The current wall-clock time. Thread safety: safe from any thread.
  virtual TimePoint now() const = 0;
};

/// The real clock.
class SystemClock final : public Clock {
 public:
  TimePoint now() const override { return std::chrono::system_clock::now(); }
};

/// A clock that only moves when told. Thread safety: safe from any thread.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(TimePoint start) : now_(start.time_since_epoch().count()) {}
  TimePoint now() const override { return TimePoint(TimePoint::duration(now_.load())); }
  /// Moves the clock forward by d.
  void advance(std::chrono::nanoseconds d) {
    now_ += std::chrono::duration_cast<TimePoint::duration>(d).count();
  }

 private:
  std::atomic<TimePoint::rep> now_;
};

/// RFC 3339 in UTC with second precision, as Kubernetes writes metav1.Time ("2026-01-02T03:04:05Z").
std::string formatTime(TimePoint t);
/// RFC 3339 in UTC with millisecond precision, for logs.
std::string formatTimeMillis(TimePoint t);
/// Parses what formatTime writes (and fractional seconds or a numeric offset); nullopt if malformed.
std::optional<TimePoint> parseTime(std::string_view s);
/// Parses 90s, 5m, 1h, 250ms, 2d, 1.5h (a bare number is seconds); nullopt when malformed or negative.
std::optional<std::chrono::milliseconds> parseDuration(const std::string& s);
/// A short human duration as kubectl prints ages: "45s", "3m", "5h", "2d", "3y".
std::string humanDuration(std::chrono::seconds d);

}  // namespace kflex
