// SPDX-License-Identifier: Apache-2.0
#include "shared/common/log.hpp"

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "shared/common/time.hpp"
#include "shared/common/util.hpp"

namespace kflex::log {
namespace {

std::atomic<Level> g_level{Level::Info};

constexpr size_t kFlushAt = 64 * 1024;

// Where lines go. Never destroyed: the flusher thread and atexit() may use it while static
// destructors run.
struct Sink {
  std::mutex mutex;
  std::condition_variable wake;
  std::string waiting;
  std::chrono::milliseconds interval{0};  // 0: unbuffered
  bool flusher_running = false;
};

Sink& sink() {
  static Sink* s = new Sink;
  return *s;
}

// Caller holds the mutex. Writes with write(2) directly: stderr's stdio buffer is not used, so
// nothing is left behind in it either.
void drain(Sink& s) {
  const char* p = s.waiting.data();
  size_t left = s.waiting.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;  // nowhere to write to (closed, full disk): the lines are dropped, not retried forever
    }
    p += n;
    left -= size_t(n);
  }
  s.waiting.clear();
}

void flusherLoop() {
  setThreadName("log-flush");
  Sink& s = sink();
  std::unique_lock lock(s.mutex);
  while (true) {
    s.wake.wait(lock, [&] { return !s.waiting.empty(); });
    // Let more lines join the first one before writing them all.
    auto interval = s.interval;
    lock.unlock();
    std::this_thread::sleep_for(interval);
    lock.lock();
    drain(s);
  }
}

// fork() happens with the sink locked, so no other thread is halfway through it.
void beforeFork() { sink().mutex.lock(); }
void afterForkInParent() { sink().mutex.unlock(); }
void afterForkInChild() {
  // The child has no flusher thread, and the waiting lines are the parent's to write.
  Sink& s = sink();
  s.waiting.clear();
  s.interval = std::chrono::milliseconds(0);
  s.flusher_running = false;
  s.mutex.unlock();
}

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

void setBuffered(std::chrono::milliseconds interval) {
  Sink& s = sink();
  std::lock_guard lock(s.mutex);
  s.interval = interval;
  if (interval.count() > 0 && !s.flusher_running) {
    s.flusher_running = true;
    static std::once_flag hooks;
    std::call_once(hooks, [] {
      std::atexit(flush);
      pthread_atfork(beforeFork, afterForkInParent, afterForkInChild);
    });
    std::thread(flusherLoop).detach();
  }
}

void flush() {
  Sink& s = sink();
  std::lock_guard lock(s.mutex);
  drain(s);
}

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
  Sink& s = sink();
  std::lock_guard lock(s.mutex);
  bool was_empty = s.waiting.empty();
  s.waiting.append(line);
  if (s.interval.count() == 0 || level >= Level::Warn || s.waiting.size() >= kFlushAt) {
    drain(s);
  } else if (was_empty) {
    s.wake.notify_one();
  }
}

}  // namespace kflex::log
