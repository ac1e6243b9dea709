// SPDX-License-Identifier: Apache-2.0
// Control-plane cgroups on a cgroup v2 tree laid out in a temporary directory (the files a
// delegated systemd unit's cgroup has), and on this host's real /sys/fs/cgroup.
#include <gtest/gtest.h>

#include "agent/host/cgroups.hpp"
#include "shared/common/util.hpp"
#include "tests/support/test_support.hpp"

namespace kflex::agent::runtime {
namespace {

namespace fs = std::filesystem;

class CgroupsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    unit_ = dir_.path() / "root" / "system.slice" / "kflex-agent.service";
    fs::create_directories(unit_);
    ASSERT_TRUE(writeFileAtomic(unit_ / "cgroup.controllers", "cpuset cpu io memory pids\n", 0644));
    ASSERT_TRUE(writeFileAtomic(unit_ / "cgroup.procs", "4242\n", 0644));
    ASSERT_TRUE(writeFileAtomic(unit_ / "cgroup.subtree_control", "", 0644));
    ASSERT_TRUE(writeFileAtomic(self_, "0::/system.slice/kflex-agent.service\n", 0644));
  }
  test::TempDir dir_;
  fs::path unit_;
  fs::path self_ = dir_.path() / "self-cgroup";
};

TEST_F(CgroupsTest, ControlPlaneCgroupsGetTheirLimitsUnderTheAgentsUnit) {
  auto c = Cgroups::detect(dir_.path() / "root", self_, false);
  ASSERT_TRUE(c.available()) << c.problem();
  EXPECT_EQ(c.base(), unit_);
  auto procs = c.prepare("cp1", {1024LL * 1024 * 1024, 1500});
  ASSERT_TRUE(procs) << procs.error().message;
  EXPECT_EQ(procs.value(), unit_ / "cp-cp1" / "cgroup.procs");
  EXPECT_EQ(readFile(unit_ / "cp-cp1" / "memory.max").value(), "1073741824");
  EXPECT_EQ(readFile(unit_ / "cp-cp1" / "cpu.max").value(), "150000 100000");
  // The agent left its unit's cgroup for <unit>/agent, and the controllers are on for children.
  EXPECT_EQ(readFile(unit_ / "agent" / "cgroup.procs").value(), "4242");
  EXPECT_EQ(readFile(unit_ / "cgroup.subtree_control").value(), "+memory +cpu");
  // No limit: "max".
  ASSERT_TRUE(c.prepare("cp2", {}));
  EXPECT_EQ(readFile(unit_ / "cp-cp2" / "memory.max").value(), "max");
  EXPECT_EQ(readFile(unit_ / "cp-cp2" / "cpu.max").value(), "max 100000");
  c.remove("cp1");
  EXPECT_FALSE(fs::exists(unit_ / "cp-cp1"));

  // A restarted agent finds itself in <unit>/agent and keeps using the unit's cgroup.
  ASSERT_TRUE(writeFileAtomic(self_, "0::/system.slice/kflex-agent.service/agent\n", 0644));
  auto again = Cgroups::detect(dir_.path() / "root", self_, false);
  ASSERT_TRUE(again.available()) << again.problem();
  EXPECT_EQ(again.base(), unit_);
}

TEST_F(CgroupsTest, SaysWhyThereAreNoLimits) {
  ASSERT_TRUE(writeFileAtomic(unit_ / "cgroup.controllers", "cpuset io pids\n", 0644));
  auto c = Cgroups::detect(dir_.path() / "root", self_, false);
  EXPECT_FALSE(c.available());
  EXPECT_NE(c.problem().find("Delegate=yes"), std::string::npos) << c.problem();
  EXPECT_FALSE(c.prepare("cp1", {}));

  ASSERT_TRUE(writeFileAtomic(self_, "12:memory:/x\n", 0644));
  EXPECT_NE(Cgroups::detect(dir_.path() / "root", self_, false).problem().find("no cgroup v2 path"),
            std::string::npos);
  // A directory that is not a cgroup2 mount.
  EXPECT_NE(Cgroups::detect(dir_.path() / "root", self_, true).problem().find("cgroup v2 is not mounted"),
            std::string::npos);
}

TEST(CgroupsHost, DetectsThisHost) {
  auto c = Cgroups::detect();
  if (!c.available()) {
    EXPECT_FALSE(c.problem().empty());
    GTEST_SKIP() << "no cgroup v2 limits on this host: " << c.problem();
  }
  EXPECT_TRUE(fs::exists(c.base() / "cgroup.controllers"));
}

TEST(CgroupsDefaults, FollowUpstreamCharts) {
  EXPECT_EQ(defaultLimits("k8s").memory_bytes, (512 + 128 + 256) * 1024LL * 1024);
  EXPECT_EQ(defaultLimits("k3s").memory_bytes, 1024LL * 1024 * 1024);
  EXPECT_EQ(defaultLimits("k3s").cpu_millis, 2000);
}

}  // namespace
}  // namespace kflex::agent::runtime
