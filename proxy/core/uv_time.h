// Configured durations as libuv timers and uv_now() count them.
#pragma once

#include <cstdint>

#include "conf/config.h"

namespace sidemux::core {

inline uint64_t ms(conf::Duration d) { return static_cast<uint64_t>(d.count()); }

}  // namespace sidemux::core
