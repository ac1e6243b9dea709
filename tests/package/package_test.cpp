// SPDX-License-Identifier: Apache-2.0
// The packages as CPack makes them from packaging/ and systemd/: names, metadata, file lists,
// conffiles, maintainer scripts, and binaries that run once unpacked.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <sstream>

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
    bool fresh = fs::exists(out_ / "made") && fs::exists(out_ / "next");
    for (const char* bin : {"kflex-hub", "kflex-agent", "kflex"}) {
      fresh = fresh && fs::last_write_time(out_ / "made") > fs::last_write_time(binDir() / bin);
    }
    if (fresh) {
      made_.exit_code = 0;
      return;
    }
    fs::remove_all(out_);
    fs::create_directories(out_);
    // Every generator configured: DEB, and RPM when rpmbuild is installed.
    made_ = run({"cpack", "--config", (build / "CPackConfig.cmake").string(), "-B", out_.string()}, {}, "",
                std::chrono::minutes(5));
    if (made_.exit_code == 0) {
      // The same packages as a later version, to upgrade to.
      made_ = run({"cpack", "--config", (build / "CPackConfig.cmake").string(), "-G", "DEB", "-B",
                   (out_ / "next").string(), "-D", "CPACK_PACKAGE_VERSION=99.0.0"},
                  {}, "", std::chrono::minutes(5));
    }
    if (made_.exit_code == 0) {
      std::ofstream(out_ / "made") << made_.out;
    }
  }
  void SetUp() override { ASSERT_EQ(made_.exit_code, 0) << made_.out << made_.err; }
  static fs::path deb(const std::string& name, bool next = false) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(next ? out_ / "next" : out_, ec)) {
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
  for (const char* f : {"./usr/sbin/kflex-hub", "./usr/bin/kflex", "./usr/lib/systemd/system/kflex-hub.service",
                        "./etc/kflex/hub.yaml", "./usr/lib/sysusers.d/kflex.conf",
                        "./usr/share/doc/kflex-hub/copyright", "./usr/share/doc/kflex-hub/changelog.gz",
                        "./usr/share/man/man8/kflex-hub.8.gz", "./usr/share/man/man1/kflex.1.gz"}) {
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
  for (const char* f : {"./usr/sbin/kflex-agent", "./usr/lib/systemd/system/kflex-agent.service", "./etc/kflex/agent.yaml",
                        "./usr/share/doc/kflex-agent/copyright",
                        "./usr/share/man/man8/kflex-agent.8.gz"}) {
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

// Debian's package checker: no errors and no warnings (informational tags are listed in
// packaging/README.md).
TEST_F(Packages, LintianIsClean) {
  if (run({"sh", "-c", "command -v lintian"}).exit_code != 0) {
    GTEST_SKIP() << "lintian is not installed (Debian package lintian)";
  }
  auto r = run({"lintian", "--tag-display-limit", "0", deb("kflex-hub").string(), deb("kflex-agent").string()}, {}, "",
               std::chrono::minutes(3));
  std::istringstream lines(r.out + r.err);
  std::string line;
  while (std::getline(lines, line)) {
    EXPECT_FALSE(line.rfind("E: ", 0) == 0 || line.rfind("W: ", 0) == 0) << line;
  }
}

// The same packages as RPMs (made when rpmbuild is installed): contents, %config(noreplace),
// scriptlets, and rpmlint without errors (its remaining warnings are in packaging/README.md).
TEST_F(Packages, RpmPackages) {
  fs::path hub, agent;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(out_, ec)) {
    std::string f = e.path().filename().string();
    if (std::regex_match(f, std::regex("kflex-hub-[0-9][^-]*-[0-9]+\\.[a-z0-9_]+\\.rpm"))) {
      hub = e.path();
    } else if (std::regex_match(f, std::regex("kflex-agent-[0-9][^-]*-[0-9]+\\.[a-z0-9_]+\\.rpm"))) {
      agent = e.path();
    }
  }
  if (hub.empty() && run({"sh", "-c", "command -v rpmbuild"}).exit_code != 0) {
    GTEST_SKIP() << "rpmbuild is not installed (Debian package rpm): no .rpm was made";
  }
  ASSERT_FALSE(hub.empty() || agent.empty()) << made_.out;
  std::string files = run({"rpm", "-qlp", hub.string()}).out;
  for (const char* f : {"/usr/sbin/kflex-hub", "/usr/bin/kflex", "/usr/lib/systemd/system/kflex-hub.service",
                        "/etc/kflex/hub.yaml", "/usr/lib/sysusers.d/kflex.conf", "/usr/share/man/man8/kflex-hub.8.gz"}) {
    EXPECT_NE(files.find(f), std::string::npos) << f << " missing:\n" << files;
  }
  for (const char* dir : {"/usr/sbin\n", "/usr/bin\n", "/etc/kflex\n"}) {
    EXPECT_EQ(files.find(dir), std::string::npos) << "owns a shared directory " << dir;
  }
  // %config(noreplace): flags c (config) and n (noreplace).
  auto flags = run({"rpm", "-qp", "--queryformat", "[%{FILEFLAGS:fflags} %{FILENAMES}\n]", agent.string()}).out;
  EXPECT_NE(flags.find("cn /etc/kflex/agent.yaml"), std::string::npos) << flags;
  std::string scripts = run({"rpm", "-qp", "--scripts", agent.string()}).out;
  EXPECT_NE(scripts.find("systemctl --no-reload enable kflex-agent.service"), std::string::npos) << scripts;
  EXPECT_NE(scripts.find("try-restart kflex-agent.service"), std::string::npos) << scripts;
  if (run({"sh", "-c", "command -v rpmlint"}).exit_code != 0) {
    GTEST_SKIP() << "rpmlint is not installed (Debian package rpmlint)";
  }
  auto lint = run({"rpmlint", "-c", (sourceDir() / "packaging" / "rpm" / "rpmlint.toml").string(), hub.string(),
                   agent.string()},
                  {}, "", std::chrono::minutes(3));
  EXPECT_NE(lint.out.find(" 0 errors"), std::string::npos) << lint.out << lint.err;
}

// A real install, upgrade and purge with dpkg and the packages' own maintainer scripts, in a
// throwaway root: a copy-on-write overlay of this machine's root file system in a private mount
// namespace (so nothing reaches the real system), entered with chroot.
TEST_F(Packages, InstallUpgradeAndPurgeInAThrowawayRoot) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root (a mount namespace and an overlay mount)";
  }
  TempDir t;
  fs::path hub = deb("kflex-hub"), agent = deb("kflex-agent");
  fs::path hub2 = deb("kflex-hub", true), agent2 = deb("kflex-agent", true);
  ASSERT_FALSE(hub.empty() || agent.empty() || hub2.empty() || agent2.empty()) << made_.out;
  // The paths come in through the environment; the script itself is constant.
  static constexpr const char* kScript = R"SH(set -eu
M="$T/m"
mkdir -p "$T/upper" "$T/work" "$M"
mount -t overlay overlay -o "lowerdir=/,upperdir=$T/upper,workdir=$T/work" "$M" || { echo NO-OVERLAY; exit 0; }
mount --bind /proc "$M/proc"
mount --bind /dev "$M/dev"
mkdir -p "$M/kflex-pkgs/next"
cp "$HUB" "$AGENT" "$M/kflex-pkgs/"
cp "$HUB2" "$AGENT2" "$M/kflex-pkgs/next/"
R="chroot $M"
$R dpkg -i "/kflex-pkgs/$(basename "$HUB")" "/kflex-pkgs/$(basename "$AGENT")"
echo "user: $($R getent passwd kflex | cut -d: -f1,7)"
for u in kflex-hub kflex-agent; do
  $R test -L /etc/systemd/system/multi-user.target.wants/$u.service && echo "enabled: $u"
done
echo "version: $($R /usr/sbin/kflex-agent --version)"
$R stat -c "mode: %n %U %a" /usr/sbin/kflex-hub /usr/sbin/kflex-agent /usr/bin/kflex /etc/kflex/hub.yaml /etc/kflex/agent.yaml
echo "check-config: $($R /usr/sbin/kflex-hub serve --check-config --config /etc/kflex/hub.yaml)"
# The hub's first start as the service would make it: user kflex, the state directory as
# StateDirectory= makes it (0700, owned by kflex), on loopback; it lays out its private files.
install -d -o "$($R id -u kflex)" -g "$($R id -g kflex)" -m 0700 "$M/var/lib/kflex-hub"
chroot --userspec=kflex:kflex "$M" /usr/sbin/kflex-hub serve --config /etc/kflex/hub.yaml \
  --data-dir /var/lib/kflex-hub --listen 127.0.0.1:0 > "$T/hub.log" 2>&1 &
HUB_PID=$!
for i in $(seq 1 100); do grep -q "kflex-hub serving" "$T/hub.log" && break; sleep 0.1; done
kill $HUB_PID; wait $HUB_PID || true
$R stat -c "state: %n %U %a" /var/lib/kflex-hub /var/lib/kflex-hub/pki /var/lib/kflex-hub/pki/ca.key \
  /var/lib/kflex-hub/admin.kubeconfig /var/lib/kflex-hub/hub.db
echo "# edited by the admin" >> "$M/etc/kflex/agent.yaml"
mkdir -p "$M/var/lib/kflex-agent/pki"
touch "$M/var/lib/kflex-agent/pki/agent.crt"
$R dpkg -i "/kflex-pkgs/next/$(basename "$HUB2")" "/kflex-pkgs/next/$(basename "$AGENT2")"
echo "upgraded: $($R dpkg-query -W -f="\${Version}" kflex-agent)"
grep -q "edited by the admin" "$M/etc/kflex/agent.yaml" && echo "kept: agent.yaml"
test -e "$M/var/lib/kflex-agent/pki/agent.crt" && echo "kept: state"
$R dpkg --remove kflex-agent
test -e "$M/etc/kflex/agent.yaml" && echo "removed, config kept"
$R dpkg --purge kflex-agent 2>&1 | grep "purge removes" || true
test ! -e "$M/var/lib/kflex-agent" && echo "purged: state"
test ! -e "$M/etc/kflex/agent.yaml" && echo "purged: config"
)SH";
  auto r = run({"unshare", "-m", "--propagation", "private", "sh", "-c", kScript},
               {"T=" + t.path().string(), "HUB=" + hub.string(), "AGENT=" + agent.string(), "HUB2=" + hub2.string(),
                "AGENT2=" + agent2.string()},
               "", std::chrono::minutes(3));
  if (r.out.find("NO-OVERLAY") != std::string::npos) {
    GTEST_SKIP() << "overlay mounts are not available here: " << r.err;
  }
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  for (const char* line : {"user: kflex:/usr/sbin/nologin", "enabled: kflex-hub", "enabled: kflex-agent",
                           "version: kflex-agent 0.", "mode: /usr/sbin/kflex-hub root 755", "mode: /etc/kflex/hub.yaml root 644",
                           "check-config: configuration OK", "state: /var/lib/kflex-hub kflex 700",
                           "state: /var/lib/kflex-hub/pki kflex 700", "state: /var/lib/kflex-hub/pki/ca.key kflex 600",
                           "state: /var/lib/kflex-hub/admin.kubeconfig kflex 600", "upgraded: 99.0.0", "kept: agent.yaml", "kept: state",
                           "removed, config kept", "purge removes /var/lib/kflex-agent", "purged: state",
                           "purged: config"}) {
    EXPECT_NE(r.out.find(line), std::string::npos) << "missing \"" << line << "\" in:\n" << r.out << r.err;
  }
}

}  // namespace
}  // namespace kflex::test
