// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>

namespace kflex::hub {

/// How often the status reports of agents reach the store.
struct StatusLimits {
  /// One control plane's status is written at most this often; the reports in between wait, and
  /// the latest of them wins.
  std::chrono::milliseconds interval{1000};
  /// One agent's status writes: this many a second on average (a token bucket's refill) ...
  double writes_per_second = 10;
  /// ... and this many at once after a quiet time (the bucket's size).
  size_t burst = 50;
};

/**
 * Decides when the status reports of one agent are written. A report waits per control plane (a
 * newer one replaces it: the latest wins, and the last one is always written), one control plane
 * is written at most once per `interval`, and every write takes a token from a bucket of `burst`
 * tokens that refills at `writes_per_second`. Of the reports whose time has come, the one that has
 * waited longest goes first, so a control plane that flaps never holds back the others.
 * Bookkeeping only (the caller passes the time and does the writing).
 * Thread safety: none; the caller serializes.
 */
template <class Report>
class StatusLimiter {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  /// What next() decided.
  struct Next {
    /// A report to write now (taken out, its write counted), with its control plane ...
    std::optional<std::pair<std::string, Report>> ready;
    /// ... else the time when the next one may be written (neither: nothing waits).
    std::optional<TimePoint> at;
  };

  StatusLimiter(StatusLimits limits, TimePoint now)
      : limits_(limits), tokens_(double(std::max<size_t>(limits.burst, 1))), refilled_(now) {}

  /// A report on `control_plane` waits to be written; returns the one it replaces, if any.
  std::optional<Report> offer(const std::string& control_plane, Report report) {
    ControlPlane& cp = cps_[control_plane];
    std::optional<Report> replaced = std::move(cp.waiting);
    cp.waiting = std::move(report);
    if (!replaced) {
      cp.since = ++arrivals_;  // it keeps its place in the line when replaced
    }
    return replaced;
  }

  /// The report to write at `now`, or when the next one may be written.
  Next next(TimePoint now) {
    refill(now);
    auto best = cps_.end();
    TimePoint best_at{};
    for (auto it = cps_.begin(); it != cps_.end();) {
      ControlPlane& cp = it->second;
      TimePoint at = cp.written ? std::max(now, *cp.written + limits_.interval) : now;
      if (!cp.waiting) {
        if (at <= now) {
          it = cps_.erase(it);  // nothing waits and its interval is over: nothing to remember
          continue;
        }
      } else if (best == cps_.end() || at < best_at || (at == best_at && cp.since < best->second.since)) {
        best = it;
        best_at = at;
      }
      ++it;
    }
    Next n;
    if (best == cps_.end()) {
      return n;
    }
    TimePoint token_at = tokenAt();
    if (best_at > now || token_at > now) {
      n.at = std::max(best_at, token_at);
      return n;
    }
    tokens_ -= 1;
    best->second.written = now;
    n.ready.emplace(best->first, std::move(*best->second.waiting));
    best->second.waiting.reset();
    return n;
  }

  /// The report that has waited longest, whatever the limits say (the hub is stopping).
  std::optional<std::pair<std::string, Report>> takeAny() {
    auto first = cps_.end();
    for (auto it = cps_.begin(); it != cps_.end(); ++it) {
      if (it->second.waiting && (first == cps_.end() || it->second.since < first->second.since)) {
        first = it;
      }
    }
    if (first == cps_.end()) {
      return std::nullopt;
    }
    std::optional<std::pair<std::string, Report>> out;
    out.emplace(first->first, std::move(*first->second.waiting));
    first->second.waiting.reset();
    return out;
  }

  /// When, if nothing more arrives, forgetting this limiter changes nothing: no report waits, no
  /// control plane's interval runs and the bucket is full again. (Meaningless while one waits.)
  TimePoint settledAt() const {
    TimePoint at = refilled_;
    if (double missing = double(std::max<size_t>(limits_.burst, 1)) - tokens_; missing > 0) {
      at += seconds(missing / rate());
    }
    for (const auto& [name, cp] : cps_) {
      if (cp.written) {
        at = std::max(at, *cp.written + limits_.interval);
      }
    }
    return at;
  }
  /// True when no report waits.
  bool empty() const {
    return std::none_of(cps_.begin(), cps_.end(), [](const auto& cp) { return cp.second.waiting.has_value(); });
  }

 private:
  struct ControlPlane {
    std::optional<Report> waiting;
    uint64_t since = 0;                // arrival order of the waiting report
    std::optional<TimePoint> written;  // the last write
  };
  static std::chrono::steady_clock::duration seconds(double s) {
    return std::chrono::ceil<std::chrono::steady_clock::duration>(std::chrono::duration<double>(s));
  }
  double rate() const { return std::max(limits_.writes_per_second, 1e-3); }
  void refill(TimePoint now) {
    if (now > refilled_) {
      double burst = double(std::max<size_t>(limits_.burst, 1));
      tokens_ = std::min(burst, tokens_ + std::chrono::duration<double>(now - refilled_).count() * rate());
      refilled_ = now;
    }
  }
  // When the next token is there (refilled_ when one is).
  TimePoint tokenAt() const {
    // (A hair under one counts: the time computed for it is rounded up to the clock's tick.)
    return tokens_ >= 1 - 1e-9 ? refilled_ : refilled_ + seconds((1 - tokens_) / rate());
  }

  StatusLimits limits_;
  double tokens_;
  TimePoint refilled_;
  uint64_t arrivals_ = 0;
  std::map<std::string, ControlPlane> cps_;
};

}  // namespace kflex::hub
