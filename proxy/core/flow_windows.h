// HTTP/2 flow-control windows sidemux advertises on both sides. The stream
// window is the memory bound of a proxied stream: it reopens only as the
// other side takes the bytes, so a stream never buffers more than one stream
// window per direction. Connection windows reopen on receipt, so that one
// stalled stream cannot hold a connection other streams share; a connection
// is then bounded by its stream count times the stream window.
#pragma once

#include <cstdint>

namespace sidemux::core {

// Large enough for loopback and LAN bandwidth-delay products at gRPC sizes;
// small enough that 256 streams stay within tens of MiB.
inline constexpr uint32_t kStreamWindow = 256 * 1024;
inline constexpr int32_t kConnectionWindow = 1024 * 1024;

}  // namespace sidemux::core
