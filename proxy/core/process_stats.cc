#include "proxy/core/process_stats.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <string>
#include <string_view>

namespace sidemux::metrics {

namespace {

// Reads a whole file in one go. Only used on /proc pseudo-files, which the
// kernel generates in memory without disk I/O, so calling this from a worker's
// event loop (as a scrape does) does not block it. Their stat() size is 0,
// hence reading until EOF. Returns "" if the file cannot be opened.
std::string read_proc_file(const char* path) {
  std::string data;
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return data;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      data.append(buf, static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(fd);
  return data;
}

// The index-th (from 0) whitespace-separated field of `text` as a number, 0 if
// absent or not a number.
uint64_t field(std::string_view text, size_t index) {
  constexpr std::string_view kSpace = " \t\n";
  size_t start = text.find_first_not_of(kSpace);
  for (size_t i = 0; i < index && start != std::string_view::npos; ++i) {
    start = text.find_first_not_of(kSpace, text.find_first_of(kSpace, start));
  }
  uint64_t v = 0;
  if (start != std::string_view::npos) std::from_chars(text.data() + start, text.data() + text.size(), v);
  return v;
}

// Boot time in seconds since the epoch. Cached: it never changes, and
// /proc/stat is large and costly to generate on machines with many CPUs.
uint64_t boot_time_seconds() {
  static const uint64_t btime = [] {
    std::string stat = read_proc_file("/proc/stat");
    size_t pos = stat.find("\nbtime ");
    return pos == std::string::npos ? 0 : field(std::string_view(stat).substr(pos), 1);
  }();
  return btime;
}

uint64_t count_open_fds() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return 0;
  uint64_t n = 0;
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ++n;  // skips "." and ".."
  }
  ::closedir(dir);
  // Not counting the directory's own descriptor, open only for this count.
  return n > 0 ? n - 1 : 0;
}

}  // namespace

ProcessStats read_process_stats() {
  ProcessStats ps;
  const double ticks_per_second = static_cast<double>(::sysconf(_SC_CLK_TCK));

  // Fields after "(comm)", which may itself contain spaces and parentheses;
  // index 0 is field 3 (state) of proc(5), so utime(14) is index 11.
  std::string stat = read_proc_file("/proc/self/stat");
  if (size_t paren = stat.rfind(')'); paren != std::string::npos) {
    std::string_view fields = std::string_view(stat).substr(paren + 1);
    ps.cpu_seconds = static_cast<double>(field(fields, 11) + field(fields, 12)) / ticks_per_second;
    ps.start_time_seconds =
        static_cast<double>(boot_time_seconds()) + static_cast<double>(field(fields, 19)) / ticks_per_second;
  }

  ps.resident_memory_bytes =
      field(read_proc_file("/proc/self/statm"), 1) * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  ps.open_fds = count_open_fds();
  return ps;
}

}  // namespace sidemux::metrics
