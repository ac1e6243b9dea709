// SPDX-License-Identifier: Apache-2.0
#include "agent/host/supervisor.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sstream>

#include <gtest/gtest.h>

#include "shared/common/util.hpp"
#include "tests/support/test_support.hpp"

namespace kflex::agent::runtime {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Whether any process of group `pgid` is still running (zombies that init has not reaped yet
// do not count).
bool groupAlive(pid_t pgid) {
  for (const auto& e : fs::directory_iterator("/proc")) {
    std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    auto text = readFile(e.path() / "stat");
    if (!text) {
      continue;
    }
    auto close = text->rfind(')');
    if (close == std::string::npos) {
      continue;
    }
    std::istringstream rest(text->substr(close + 2));
    std::string state, ppid, pgrp;
    rest >> state >> ppid >> pgrp;
    if (state != "Z" && pgrp == std::to_string(pgid)) {
      return true;
    }
  }
  return false;
}

class SupervisorTest : public ::testing::Test {
 protected:
  ProcessSpec shell(const std::string& script, const std::string& name = "p") {
    ProcessSpec s;
    s.argv = {"/bin/sh", "-c", script};
    s.work_dir = dir_.path() / name;
    s.log_file = dir_.path() / name / "logs" / "p.log";
    s.pid_file = dir_.path() / name / "run" / "p.pid";
    s.stop_grace = 2s;
    return s;
  }
  // Ticks (real time passes for the child) until pred holds.
  bool tickUntil(Supervisor& sup, const std::function<bool()>& pred, std::chrono::milliseconds timeout = 10s) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      sup.tick();
      if (pred()) {
        return true;
      }
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  std::string log(const std::string& name = "p") {
    auto text = readFile(dir_.path() / name / "logs" / "p.log");
    return text ? text.value() : std::string();
  }
  test::TempDir dir_;
  FakeClock clock_{std::chrono::system_clock::now()};
};

TEST_F(SupervisorTest, RestartsWithDoublingBackoffThenReportsACrashLoop) {
  SupervisorOptions o;
  o.backoff_initial = 1s;
  o.crash_loop_after = 3;
  Supervisor sup(clock_, o);
  sup.ensure("cp/p", shell("echo run; exit 3"));
  EXPECT_EQ(sup.status("cp/p").state, ProcessState::Running);
  ASSERT_TRUE(tickUntil(sup, [&] { return sup.status("cp/p").state == ProcessState::BackingOff; }));
  EXPECT_EQ(sup.status("cp/p").last_exit, "exit code 3");
  EXPECT_EQ(sup.status("cp/p").consecutive_failures, 1);
  sup.tick();  // not yet: the clock has not moved
  EXPECT_EQ(sup.status("cp/p").state, ProcessState::BackingOff);
  clock_.advance(1s);
  sup.tick();
  EXPECT_EQ(sup.status("cp/p").restarts, 1);
  ASSERT_TRUE(tickUntil(sup, [&] { return sup.status("cp/p").consecutive_failures == 2 &&
                                          sup.status("cp/p").state == ProcessState::BackingOff; }));
  clock_.advance(1s);  // the second delay is 2 s
  sup.tick();
  EXPECT_EQ(sup.status("cp/p").restarts, 1);
  clock_.advance(1s);
  sup.tick();
  EXPECT_EQ(sup.status("cp/p").restarts, 2);
  ASSERT_TRUE(tickUntil(sup, [&] { return sup.status("cp/p").state == ProcessState::CrashLoop; }));
  EXPECT_EQ(toString(sup.status("cp/p").state), std::string("CrashLoopBackOff"));
  EXPECT_NE(log().find("run\nrun\nrun\n"), std::string::npos) << log();
}

TEST_F(SupervisorTest, AMissingProgramIsAFailureWithAReasonNotACrash) {
  Supervisor sup(clock_);
  ProcessSpec s = shell("true");
  s.argv = {(dir_.path() / "bin" / "k3s").string(), "server"};
  sup.ensure("cp/k3s", s);
  auto st = sup.status("cp/k3s");
  EXPECT_EQ(st.state, ProcessState::Failed);
  EXPECT_NE(st.error.find("not found"), std::string::npos) << st.error;
  EXPECT_NE(st.error.find("--bin-dir"), std::string::npos) << st.error;
  // Once the program appears it starts at the next retry.
  fs::create_directories(dir_.path() / "bin");
  ASSERT_TRUE(writeFileAtomic(dir_.path() / "bin" / "k3s", "#!/bin/sh\nexec sleep 30\n", 0755));
  clock_.advance(1h);
  sup.tick();
  EXPECT_EQ(sup.status("cp/k3s").state, ProcessState::Running);
  sup.stop("cp/k3s");
  ASSERT_TRUE(tickUntil(sup, [&] { return sup.gone("cp/k3s"); }));
}

TEST_F(SupervisorTest, RunsInItsOwnGroupAndDirectoryWithoutTheServiceManagersVariables) {
  ::setenv("NOTIFY_SOCKET", "/run/systemd/notify", 1);
  ::setenv("WATCHDOG_USEC", "30000000", 1);
  Supervisor sup(clock_);
  ProcessSpec s = shell("pwd; env; exec sleep 30");
  s.env = {"KINE_ENDPOINT=postgres://x"};
  sup.ensure("cp/p", s);
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");
  pid_t pid = sup.status("cp/p").pid;
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(test::waitFor([&] { return log().find("KINE_ENDPOINT") != std::string::npos; }, 10s, "the env dump"));
  EXPECT_EQ(::getpgid(pid), pid);
  EXPECT_EQ(::getsid(pid), pid);
  EXPECT_NE(log().find(fs::canonical(s.work_dir).string() + "\n"), std::string::npos) << log();
  EXPECT_NE(log().find("KINE_ENDPOINT=postgres://x"), std::string::npos);
  EXPECT_EQ(log().find("NOTIFY_SOCKET"), std::string::npos);
  EXPECT_EQ(log().find("WATCHDOG_USEC"), std::string::npos);
  EXPECT_EQ(fs::status(s.log_file).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
  sup.stop("cp/p");
  ASSERT_TRUE(tickUntil(sup, [&] { return sup.gone("cp/p"); }));
  EXPECT_FALSE(fs::exists(s.pid_file));
}

TEST_F(SupervisorTest, StopSendsTermThenKillsTheWholeGroupAfterTheGracePeriod) {
  Supervisor sup(clock_);
  // The shell and its children ignore SIGTERM.
  sup.ensure("cp/p", shell("trap '' TERM; echo up; while true; do sleep 0.05; done"));
  pid_t pid = sup.status("cp/p").pid;
  ASSERT_TRUE(test::waitFor([&] { return log().find("up") != std::string::npos; }, 10s, "start"));
  sup.stop("cp/p");
  EXPECT_EQ(sup.status("cp/p").state, ProcessState::Stopping);
  std::this_thread::sleep_for(200ms);
  sup.tick();
  EXPECT_EQ(sup.status("cp/p").state, ProcessState::Stopping) << "SIGTERM is ignored";
  clock_.advance(3s);
  ASSERT_TRUE(tickUntil(sup, [&] { return sup.gone("cp/p"); }));
  EXPECT_TRUE(test::waitFor([&] { return !groupAlive(pid); }, 5s, "the whole group to end"));
}

TEST_F(SupervisorTest, AnotherSupervisorAdoptsWhatRunsAndNeverSignalsAReusedPid) {
  ProcessSpec s = shell("exec sleep 30");
  pid_t pid = 0;
  {
    Supervisor first(clock_);
    first.ensure("cp/p", s);
    pid = first.status("cp/p").pid;
    first.detachAll();  // the agent stops; the program does not
  }
  ASSERT_GT(pid, 0);
  ASSERT_EQ(runningPid(s.pid_file), pid);
  Supervisor second(clock_);
  second.ensure("cp/p", s);
  EXPECT_EQ(second.status("cp/p").pid, pid);
  EXPECT_TRUE(second.status("cp/p").adopted);
  EXPECT_EQ(second.status("cp/p").state, ProcessState::Running);
  // A changed command line replaces the adopted process.
  ProcessSpec changed = shell("exec sleep 31");
  second.ensure("cp/p", changed);
  EXPECT_EQ(second.status("cp/p").state, ProcessState::Stopping);
  ASSERT_TRUE(tickUntil(second, [&] {
    ::waitpid(pid, nullptr, WNOHANG);  // (the test process is its parent and reaps it)
    return second.status("cp/p").state == ProcessState::Running && second.status("cp/p").pid != pid;
  }));
  second.stop("cp/p");
  ASSERT_TRUE(tickUntil(second, [&] { return second.gone("cp/p"); }));

  // A pid file whose pid now belongs to someone else (here: this test) is not adopted or signalled.
  ProcessSpec other = shell("exec sleep 30", "q");
  fs::create_directories(other.pid_file.parent_path());
  ASSERT_TRUE(writeFileAtomic(other.pid_file, "{\"pid\":" + std::to_string(::getpid()) + ",\"startTime\":12345,\"spec\":\"" +
                                                  specHash(other) + "\"}\n", 0600));
  Supervisor third(clock_);
  third.stop("cp/q", other);  // must not signal us
  EXPECT_TRUE(third.gone("cp/q"));
  third.ensure("cp/q", other);
  EXPECT_FALSE(third.status("cp/q").adopted);
  EXPECT_NE(third.status("cp/q").pid, ::getpid());
  third.stop("cp/q");
  ASSERT_TRUE(tickUntil(third, [&] { return third.gone("cp/q"); }));
}

// An agent killed between starting a program and writing its pid file (found by the soak: a
// Kine left running after its control plane was deleted, beside the one started again). The
// next agent finds it by program, working directory and session, and adopts or stops it.
TEST_F(SupervisorTest, AProcessAnEarlierAgentDidNotRecordIsAdoptedOrStopped) {
  ProcessSpec s;
  s.argv = {"/usr/bin/sleep", "30"};
  s.work_dir = dir_.path() / "cp1";
  s.log_file = dir_.path() / "cp1" / "logs" / "sleep.log";
  s.pid_file = dir_.path() / "cp1" / "run" / "sleep.pid";
  s.stop_grace = 2s;
  pid_t pid = 0;
  {
    Supervisor first(clock_);
    first.ensure("cp1/sleep", s);
    pid = first.status("cp1/sleep").pid;
    first.detachAll();
  }
  ASSERT_GT(pid, 0);
  fs::remove(s.pid_file);  // as if the agent died before writing it
  {
    Supervisor second(clock_);
    second.ensure("cp1/sleep", s);
    EXPECT_EQ(second.status("cp1/sleep").pid, pid);
    EXPECT_TRUE(second.status("cp1/sleep").adopted);
    EXPECT_EQ(runningPid(s.pid_file), pid);  // recorded now
    second.detachAll();
  }
  // Deleted while no agent ran, and never recorded: stopping it finds it all the same.
  fs::remove(s.pid_file);
  Supervisor third(clock_);
  third.stop("cp1/sleep", s);
  ASSERT_TRUE(tickUntil(third, [&] {
    ::waitpid(pid, nullptr, WNOHANG);  // (the test process is its parent and reaps it)
    return third.gone("cp1/sleep");
  }));
  EXPECT_NE(::kill(pid, 0), 0);
  // The same program in another directory is not taken for it.
  ProcessSpec other = s;
  other.work_dir = dir_.path() / "cp2";
  other.pid_file = dir_.path() / "cp2" / "run" / "sleep.pid";
  other.log_file = dir_.path() / "cp2" / "logs" / "sleep.log";
  Supervisor fourth(clock_);
  fourth.ensure("cp2/sleep", other);
  pid_t cp2 = fourth.status("cp2/sleep").pid;
  fourth.detachAll();
  fs::remove(s.pid_file);
  Supervisor fifth(clock_);
  fifth.ensure("cp1/sleep", s);
  EXPECT_NE(fifth.status("cp1/sleep").pid, cp2);
  EXPECT_FALSE(fifth.status("cp1/sleep").adopted);
  fifth.stop("cp1/sleep");
  ASSERT_TRUE(tickUntil(fifth, [&] { return fifth.gone("cp1/sleep"); }));
  ::kill(-cp2, SIGKILL);
  ::waitpid(cp2, nullptr, 0);

  // A program that execs itself again under another name (k3s runs on as k3s-server from its
  // data directory): found all the same, by what it carries in its environment.
  ProcessSpec reexec = shell("exec sleep 30", "r");
  pid_t r = 0;
  {
    Supervisor sixth(clock_);
    sixth.ensure("r/p", reexec);
    r = sixth.status("r/p").pid;
    sixth.detachAll();
  }
  fs::remove(reexec.pid_file);
  Supervisor seventh(clock_);
  seventh.ensure("r/p", reexec);
  EXPECT_EQ(seventh.status("r/p").pid, r);
  EXPECT_TRUE(seventh.status("r/p").adopted);
  seventh.stop("r/p");
  ASSERT_TRUE(tickUntil(seventh, [&] {
    ::waitpid(r, nullptr, WNOHANG);
    return seventh.gone("r/p");
  }));
}

TEST_F(SupervisorTest, LogsAreRotatedBySizeAndReadBackInOrder) {
  SupervisorOptions o;
  o.log_max_bytes = 4096;
  o.log_keep = 2;
  Supervisor sup(clock_, o);
  // Four bursts of ~6 KB, each seen by a tick before the next.
  sup.ensure("cp/p", shell("i=0; while [ $i -lt 400 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; "
                           "i=$((i+1)); [ $((i % 100)) -eq 0 ] && sleep 0.3; done; exec sleep 30"));
  fs::path log_file = dir_.path() / "p" / "logs" / "p.log";
  ASSERT_TRUE(tickUntil(sup, [&] { return fs::exists(log_file.string() + ".2"); }));
  ASSERT_TRUE(tickUntil(sup, [&] {
    auto all = readLogTail(log_file, 1 << 20);
    return all && all->find("line-399-") != std::string::npos;
  }));
  sup.tick();
  EXPECT_FALSE(fs::exists(log_file.string() + ".3"));
  EXPECT_LE(fs::file_size(log_file), 4096u + 4096u);
  auto tail = readLogTail(log_file, 1 << 20);
  ASSERT_TRUE(tail);
  EXPECT_NE(tail->find("line-399-"), std::string::npos);
  auto a = tail->find("line-350-");
  auto b = tail->find("line-399-");
  EXPECT_LT(a, b);
  auto short_tail = readLogTail(log_file, 100);
  ASSERT_TRUE(short_tail);
  EXPECT_LE(short_tail->size(), 100u);
  EXPECT_NE(short_tail->find("line-399-"), std::string::npos);
  sup.stop("cp/p");
  ASSERT_TRUE(tickUntil(sup, [&] { return sup.gone("cp/p"); }));
}

}  // namespace
}  // namespace kflex::agent::runtime
