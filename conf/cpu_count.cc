#include "conf/cpu_count.h"

#include <sched.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <fstream>
#include <optional>
#include <sstream>
#include <string_view>
#include <thread>
#include <vector>

namespace sidemux::conf {

namespace {

// Read at load time on the main thread, like the config file itself; these
// are procfs and cgroupfs files, answered from memory.
std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (size_t i = 0; i <= text.size(); ++i) {
    if (i == text.size() || text[i] == sep) {
      out.push_back(text.substr(start, i - start));
      start = i + 1;
    }
  }
  return out;
}

std::optional<int64_t> number(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

unsigned cpus(int64_t quota, int64_t period) {
  if (quota <= 0 || period <= 0) return 0;
  return static_cast<unsigned>((quota + period - 1) / period);
}

// One controller's view: where its hierarchy is mounted, what of it the
// mount shows (a container sees its own cgroup as the root), and the cgroup
// of this process in it.
struct Hierarchy {
  std::string mount_point;
  std::string mount_root;
  std::string cgroup;
};

// v2: the line "0::PATH"; v1: the hierarchy whose controllers include cpu.
std::optional<std::string> cgroup_path(const std::string& proc_cgroup, bool v2) {
  for (std::string_view line : split(proc_cgroup, '\n')) {
    auto fields = split(line, ':');
    if (fields.size() < 3) continue;
    // The path may contain ':'; it is everything after the second one.
    std::string_view path = line.substr(fields[0].size() + fields[1].size() + 2);
    if (v2 && fields[0] == "0" && fields[1].empty()) return std::string(path);
    if (!v2) {
      auto controllers = split(fields[1], ',');
      if (std::find(controllers.begin(), controllers.end(), "cpu") != controllers.end()) return std::string(path);
    }
  }
  return std::nullopt;
}

// mountinfo: "ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER_OPTIONS".
std::optional<Hierarchy> mount_of(const std::string& mountinfo, bool v2) {
  for (std::string_view line : split(mountinfo, '\n')) {
    auto fields = split(line, ' ');
    auto dash = std::find(fields.begin(), fields.end(), "-");
    if (fields.size() < 5 || dash == fields.end() || fields.end() - dash < 4) continue;
    std::string_view type = dash[1];
    if (v2 ? type != "cgroup2" : type != "cgroup") continue;
    if (!v2) {
      auto options = split(dash[3], ',');
      if (std::find(options.begin(), options.end(), "cpu") == options.end()) continue;
    }
    return Hierarchy{std::string(fields[4]), std::string(fields[3]), {}};
  }
  return std::nullopt;
}

// The smallest quota on the way from the process's cgroup up to the root of
// what the mount shows; `read` gives one directory's quota in CPUs (0: none).
template <class Read>
unsigned smallest_quota(const std::string& root, const Hierarchy& h, Read read) {
  std::string relative = h.cgroup;
  // Outside the mount's root (a cgroup namespace shows "/"), start at the mount.
  if (h.mount_root != "/" && relative.compare(0, h.mount_root.size(), h.mount_root) == 0)
    relative = relative.substr(h.mount_root.size());
  else if (h.mount_root != "/")
    relative = "/";
  unsigned limit = 0;
  std::string dir = relative;
  for (;;) {
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    unsigned n = read(root + h.mount_point + (dir == "/" ? "" : dir));
    if (n != 0) limit = limit == 0 ? n : std::min(limit, n);
    if (dir == "/" || dir.empty()) break;
    size_t slash = dir.rfind('/');
    dir = slash == 0 || slash == std::string::npos ? "/" : dir.substr(0, slash);
  }
  return limit;
}

unsigned v2_quota(const std::string& dir) {
  // "max 100000" (no limit) or "QUOTA PERIOD".
  const std::string text = read_file(dir + "/cpu.max");
  auto fields = split(text, ' ');
  if (fields.size() != 2) return 0;
  auto quota = number(fields[0]);
  auto period = number(fields[1]);
  return quota && period ? cpus(*quota, *period) : 0;
}

unsigned v1_quota(const std::string& dir) {
  auto quota = number(read_file(dir + "/cpu.cfs_quota_us"));  // -1: no limit
  auto period = number(read_file(dir + "/cpu.cfs_period_us"));
  return quota && period ? cpus(*quota, *period) : 0;
}

unsigned affinity_count() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return static_cast<unsigned>(CPU_COUNT(&set));
  // More CPUs than a cpu_set_t holds (1024): the library's count.
  return std::thread::hardware_concurrency();
}

}  // namespace

unsigned cgroup_cpu_limit(const std::string& root) {
  const std::string proc_cgroup = read_file(root + "/proc/self/cgroup");
  const std::string mountinfo = read_file(root + "/proc/self/mountinfo");
  unsigned limit = 0;
  // Hybrid hosts mount both; a quota on either applies.
  for (bool v2 : {true, false}) {
    auto path = cgroup_path(proc_cgroup, v2);
    auto mount = mount_of(mountinfo, v2);
    if (!path || !mount) continue;
    mount->cgroup = *path;
    unsigned n = smallest_quota(root, *mount, v2 ? v2_quota : v1_quota);
    if (n != 0) limit = limit == 0 ? n : std::min(limit, n);
  }
  return limit;
}

unsigned cpu_count() {
  unsigned n = affinity_count();
  unsigned quota = cgroup_cpu_limit();
  if (quota != 0) n = std::min(n, quota);
  return std::max(1u, n);
}

}  // namespace sidemux::conf
