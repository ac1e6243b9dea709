// SPDX-License-Identifier: Apache-2.0
// The packages as CPack makes them from packaging/ and systemd/: names, metadata, file lists,
// conffiles, maintainer scripts, and binaries that run once unpacked.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <fstream>
#include <regex>

#include "tests/support/test_support.hpp"

namespace kflex::test {
namespace {

namespace fs = std::filesystem;

class Packages : public ::testing::Test {
 protected:
  // CTest runs each test in its own process: the packages are made once per build of the
  // binaries, in the build tree, and reused while they are newer than every binary.
  static void SetUpTestSuite() {
    fs::path build = binDir().parent_path();
    out_ = build / "package-test";
    // Tests of this suite may run at once (ctest -j): one makes the packages, the others wait.
    int lock = ::open((build / "package-test.lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    ::flock(lock, LOCK_EX);
    struct Unlock {
      int fd;
      ~Unlock() { ::close(fd); }
    } unlock{lock};
    bool fresh = fs::exists(out_ / "made");
    for (const char* bin : {"kflex-hub", "kflex-agent", "kflex"}) {
      fresh = fresh && fs::last_write_time(out_ / "made") > fs::last_write_time(binDir() / bin);
    }
    if (fresh) {
      made_.exit_code = 0;
      return;
    }
    fs::remove_all(out_);
    fs::create_directories(out_);
    made_ = run({"cpack", "--config", (build / "CPackConfig.cmake").string(), "-G", "DEB", "-B", out_.string()}, {}, "",
                std::chrono::minutes(5));
    if (made_.exit_code == 0) {
      std::ofstream(out_ / "made") << made_.out;
    }
  }
  void SetUp() override { ASSERT_EQ(made_.exit_code, 0) << made_.out << made_.err; }
  static fs::path deb(const std::string& name) {
    for (const auto& e : fs::directory_iterator(out_)) {
      std::string f = e.path().filename().string();
      if (std::regex_match(f, std::regex(name + "_[0-9][^_]*_[a-z0-9]+\\.deb"))) {
        return e.path();
      }
    }
    return {};
  }
  static std::string info(const fs::path& p, const std::string& what = "") {
    std::vector<std::string> argv = {"dpkg-deb", "-I", p.string()};
    if (!what.empty()) {
      argv.push_back(what);
    }
    return run(argv).out;
  }
  static std::string contents(const fs::path& p) { return run({"dpkg-deb", "-c", p.string()}).out; }

  static fs::path out_;
  static CommandResult made_;
};
fs::path Packages::out_;
CommandResult Packages::made_;

TEST_F(Packages, HubPackage) {
  fs::path p = deb("kflex-hub");
  ASSERT_FALSE(p.empty()) << made_.out;
  std::string control = info(p, "control");
  EXPECT_NE(control.find("Package: kflex-hub"), std::string::npos) << control;
  EXPECT_NE(control.find("libjemalloc2"), std::string::npos) << "shared-library dependencies: " << control;
  EXPECT_NE(control.find("adduser"), std::string::npos);
  std::string files = contents(p);
  for (const char* f : {"./usr/sbin/kflex-hub", "./usr/bin/kflex", "./lib/systemd/system/kflex-hub.service",
                        "./etc/kflex/hub.yaml", "./usr/lib/sysusers.d/kflex.conf",
                        "./usr/share/doc/kflex-hub/copyright", "./usr/share/doc/kflex-hub/changelog.Debian.gz"}) {
    EXPECT_NE(files.find(f), std::string::npos) << f << " missing:\n" << files;
  }
  EXPECT_EQ(files.find("kflex-agent"), std::string::npos) << "the agent is in its own package";
  EXPECT_EQ(info(p, "conffiles"), "/etc/kflex/hub.yaml\n");
  // Maintainer scripts are there, executable, and valid sh.
  std::string summary = info(p);
  for (const char* script : {"postinst", "prerm", "postrm"}) {
    EXPECT_TRUE(std::regex_search(summary, std::regex(std::string("\\*  ") + script))) << summary;
    auto syntax = run({"sh", "-n", "-c", info(p, script)});
    EXPECT_EQ(syntax.exit_code, 0) << script << ": " << syntax.err;
  }
  EXPECT_NE(info(p, "postrm").find("rm -rf /var/lib/kflex-hub"), std::string::npos);
}

TEST_F(Packages, AgentPackage) {
  fs::path p = deb("kflex-agent");
  ASSERT_FALSE(p.empty()) << made_.out;
  std::string files = contents(p);
  for (const char* f : {"./usr/sbin/kflex-agent", "./lib/systemd/system/kflex-agent.service", "./etc/kflex/agent.yaml",
                        "./usr/share/doc/kflex-agent/copyright"}) {
    EXPECT_NE(files.find(f), std::string::npos) << f << " missing:\n" << files;
  }
  EXPECT_EQ(info(p, "conffiles"), "/etc/kflex/agent.yaml\n");
  // Enabled on install, not started (it starts once enrolled).
  std::string postinst = info(p, "postinst");
  EXPECT_NE(postinst.find("deb-systemd-helper enable kflex-agent.service"), std::string::npos);
  EXPECT_EQ(postinst.find("deb-systemd-invoke start"), std::string::npos) << postinst;
  EXPECT_EQ(postinst.find("kflex.conf"), std::string::npos) << "the agent runs as root: no user to make";
}

TEST_F(Packages, BinariesRunFromTheUnpackedPackages) {
  TempDir root;
  for (const char* name : {"kflex-hub", "kflex-agent"}) {
    fs::path p = deb(name);
    ASSERT_FALSE(p.empty());
    ASSERT_EQ(run({"dpkg-deb", "-x", p.string(), root.path().string()}).exit_code, 0);
  }
  for (const char* bin : {"usr/sbin/kflex-hub", "usr/sbin/kflex-agent", "usr/bin/kflex"}) {
    auto v = run({(root.path() / bin).string(), "--version"});
    EXPECT_EQ(v.exit_code, 0) << bin << v.err;
    EXPECT_NE(v.out.find("0."), std::string::npos) << bin << ": " << v.out;
  }
  // The shipped configuration files are accepted as they are.
  auto hub = run({(root.path() / "usr/sbin/kflex-hub").string(), "serve", "--check-config", "--config",
                  (root.path() / "etc/kflex/hub.yaml").string()});
  EXPECT_EQ(hub.exit_code, 0) << hub.out << hub.err;
}

}  // namespace
}  // namespace kflex::test
