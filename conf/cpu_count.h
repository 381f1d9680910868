// What `workers: auto` means: the CPUs this process may use. That is the
// CPUs it may run on (its affinity mask: taskset, cpusets, a container's
// --cpuset-cpus), capped by the CPU time its cgroup grants (cgroup v2
// cpu.max, v1 cpu.cfs_quota_us / cpu.cfs_period_us, on its own cgroup or any
// ancestor), rounded up: a container limited to 1.5 CPUs on a 64-core host
// runs 2 workers, not 64 threads that the quota throttles in turn.
#pragma once

#include <string>

namespace sidemux::conf {

unsigned cpu_count();

// The cgroup CPU quota of this process in whole CPUs (rounded up), 0 when
// there is none. `root` stands in for "/" (the unit tests give a fake tree):
// it reads ROOT/proc/self/cgroup and ROOT/proc/self/mountinfo, and the cgroup
// files under the mount points they name, prefixed with ROOT.
unsigned cgroup_cpu_limit(const std::string& root = "");

}  // namespace sidemux::conf
