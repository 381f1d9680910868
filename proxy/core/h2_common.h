// What the downstream (server) and upstream (client) nghttp2 sessions share:
// session setup with sidemux's options and first SETTINGS, the header list
// size rule, and moving nghttp2's output into a Transport.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstddef>
#include <cstdint>
#include <span>

namespace sidemux::core {

class Transport;

// The callbacks one side handles; a null one is left unset.
struct H2Handlers {
  nghttp2_on_begin_headers_callback on_begin_headers = nullptr;
  nghttp2_on_header_callback on_header = nullptr;
  nghttp2_on_frame_recv_callback on_frame_recv = nullptr;
  nghttp2_on_data_chunk_recv_callback on_data_chunk = nullptr;
  nghttp2_on_frame_send_callback on_frame_send = nullptr;
  nghttp2_on_stream_close_callback on_stream_close = nullptr;
  nghttp2_before_frame_send_callback before_frame_send = nullptr;
  nghttp2_on_begin_frame_callback on_begin_frame = nullptr;
  nghttp2_on_invalid_frame_recv_callback on_invalid_frame_recv = nullptr;
};

enum class H2Role { server, client };

// A new session (free it with nghttp2_session_del) whose windows reopen only
// when the other side took the bytes (consume()), which keeps no closed
// streams, and whose abuse bounds hold for clients and members alike. Its
// first SETTINGS are queued: `settings`, then push off and the initial stream window
// (flow_windows.h); the connection window is opened to kConnectionWindow.
nghttp2_session* new_h2_session(H2Role role, const H2Handlers& handlers, void* user,
                                std::span<const nghttp2_settings_entry> settings);

// Adds one received header field to `total`, the size of its block as RFC
// 9113 counts it (32 bytes of overhead per field). False once over `limit`.
inline bool count_header_field(uint32_t& total, size_t namelen, size_t valuelen, uint32_t limit) {
  total += static_cast<uint32_t>(namelen + valuelen + 32);
  return total <= limit;
}

// Serializes pending frames into the transport until its buffer is full or
// nothing is left. Returns 0, or the fatal nghttp2 error.
int send_h2_output(nghttp2_session* session, Transport& transport);

}  // namespace sidemux::core
