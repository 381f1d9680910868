// Figures of this process read from /proc/self: the process_* metrics of
// the scrape and part of /debug/vars.
#pragma once

#include <cstdint>

namespace sidemux::metrics {

// Process figures used by render() and by /debug/vars.
struct ProcessStats {
  uint64_t resident_memory_bytes = 0;
  double cpu_seconds = 0;
  uint64_t open_fds = 0;
  double start_time_seconds = 0;  // since the Unix epoch
};
ProcessStats read_process_stats();

}  // namespace sidemux::metrics
