// cgroup_cpu_limit over fake /proc and /sys trees: cgroup v2 (in a cgroup
// namespace and on a host path, quota on an ancestor), v1 with a container's
// mount root, hybrid hosts, and no quota at all.
#include "conf/cpu_count.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace sidemux::conf {
namespace {

namespace fs = std::filesystem;

class CgroupCpuLimit : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sidemux-cgroup-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { fs::remove_all(root_); }

  void write(const std::string& path, const std::string& text) {
    fs::path p = root_ / fs::path(path).relative_path();
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }
  unsigned limit() { return cgroup_cpu_limit(root_.string()); }

  static constexpr const char* kV2Mount =
      "24 1 0:22 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n";
  fs::path root_;
};

TEST_F(CgroupCpuLimit, V2InACgroupNamespaceRoundsUp) {
  write("/proc/self/cgroup", "0::/\n");
  write("/proc/self/mountinfo", std::string("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n") + kV2Mount);
  write("/sys/fs/cgroup/cpu.max", "150000 100000\n");
  EXPECT_EQ(limit(), 2u);
}

TEST_F(CgroupCpuLimit, V2QuotaOnAnAncestorAndTheSmallestWins) {
  write("/proc/self/cgroup", "0::/kubepods.slice/pod1/ctr\n");
  write("/proc/self/mountinfo", kV2Mount);
  write("/sys/fs/cgroup/kubepods.slice/cpu.max", "400000 100000\n");
  write("/sys/fs/cgroup/kubepods.slice/pod1/cpu.max", "50000 100000\n");
  write("/sys/fs/cgroup/kubepods.slice/pod1/ctr/cpu.max", "max 100000\n");
  EXPECT_EQ(limit(), 1u);  // half a CPU is one worker
}

TEST_F(CgroupCpuLimit, V2WithoutAQuota) {
  write("/proc/self/cgroup", "0::/user.slice\n");
  write("/proc/self/mountinfo", kV2Mount);
  write("/sys/fs/cgroup/user.slice/cpu.max", "max 100000\n");
  EXPECT_EQ(limit(), 0u);
}

TEST_F(CgroupCpuLimit, V1WithAContainersMountRoot) {
  // Without a cgroup namespace the process sees its host path; the mount
  // shows that cgroup as its root.
  write("/proc/self/cgroup", "5:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n");
  write("/proc/self/mountinfo",
        "30 25 0:27 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro - cgroup cgroup rw,cpu,cpuacct\n");
  write("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "300000\n");
  write("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
  EXPECT_EQ(limit(), 3u);
}

TEST_F(CgroupCpuLimit, V1UnlimitedOnAHybridHost) {
  write("/proc/self/cgroup", "1:cpu:/\n0::/\n");
  write("/proc/self/mountinfo",
        "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n");
  write("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n");
  write("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n");
  EXPECT_EQ(limit(), 0u);
}

TEST_F(CgroupCpuLimit, NoCgroupFiles) { EXPECT_EQ(limit(), 0u); }

TEST(CpuCount, AtLeastOneAndNoMoreThanTheAffinityMask) {
  cpu_set_t set;
  ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  unsigned n = cpu_count();
  EXPECT_GE(n, 1u);
  EXPECT_LE(n, static_cast<unsigned>(CPU_COUNT(&set)));
}

}  // namespace
}  // namespace sidemux::conf
