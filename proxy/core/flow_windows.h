// HTTP/2 flow-control windows sidemux advertises on both sides. A proxied
// stream's windows reopen only as the other side takes the bytes, so a
// stream never buffers more than its window per direction. Stream windows
// start small and grow, from a per-client-connection budget
// (proxy/window_budget.h), for streams whose bytes keep moving: the sum of
// a client connection's stream windows, hence its buffered bytes, stays
// within the budget whatever number of streams it opens. Connection windows
// reopen on receipt, so that one stalled stream cannot hold a connection
// other streams share.
#pragma once

#include <cstdint>

namespace sidemux::core {

// A new member stream's window: 256 streams (max_concurrent_streams'
// default) fit in a 1 MiB budget. A stream moving more grows towards
// kStreamWindow. (A member sends nothing before our SETTINGS, which precede
// our first HEADERS.)
inline constexpr uint32_t kInitialStreamWindow = 4 * 1024;
// A new client stream's window: the RFC's default. Clients send requests
// before our SETTINGS arrive, so a smaller window would race with their
// first DATA (a flow-control error on a well-behaved client).
inline constexpr uint32_t kClientInitialStreamWindow = 65535;
// Large enough for loopback and LAN bandwidth-delay products at gRPC sizes.
inline constexpr uint32_t kStreamWindow = 256 * 1024;
inline constexpr int32_t kConnectionWindow = 1024 * 1024;
// What one client connection's stream windows may add up to, per direction.
inline constexpr uint64_t kConnectionBudget = 1024 * 1024;

}  // namespace sidemux::core
