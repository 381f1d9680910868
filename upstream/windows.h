// HTTP/2 flow-control windows sidemux advertises on both sides. They are the
// memory bound of a proxied stream: a stream never buffers more than one
// stream window per direction, a connection never more than its connection
// window, because windows only reopen as the other side takes the bytes.
#pragma once

#include <cstdint>

namespace sidemux {

// Large enough for loopback and LAN bandwidth-delay products at gRPC sizes;
// small enough that 256 streams stay within tens of MiB.
inline constexpr uint32_t kStreamWindow = 256 * 1024;
inline constexpr int32_t kConnectionWindow = 1024 * 1024;

}  // namespace sidemux
