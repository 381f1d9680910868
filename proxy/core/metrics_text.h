// Prometheus text format 0.0.4 for a set of registries, and the same series
// as name/value pairs for /debug/vars.
#pragma once

#include <span>
#include <string>
#include <utility>
#include <vector>

#include "proxy/core/metrics.h"

namespace sidemux::metrics {

// Renders every family that has at least one series in any registry, summing
// series with the same labels, families sorted by name and series by labels,
// label values escaped per the format, followed by the process_* metrics read
// from /proc/self (process_resident_memory_bytes, process_cpu_seconds_total,
// process_open_fds, process_start_time_seconds).
std::string render(std::span<const Registry* const> registries);

// Counters and gauges summed across registries, one entry per series, keyed
// by its exposition name such as `sidemux_bytes_total{side="upstream",direction="in"}`
// (for /debug/vars). Sorted like render().
std::vector<std::pair<std::string, double>> snapshot(std::span<const Registry* const> registries);

}  // namespace sidemux::metrics
