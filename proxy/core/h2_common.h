// What the downstream (server) and upstream (client) nghttp2 sessions share:
// session setup with sidemux's options and first SETTINGS, the header list
// size rule, and moving nghttp2's output into a Transport.
#pragma once

#include <nghttp2/nghttp2.h>

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "proxy/core/byte_queue.h"
#include "proxy/core/transport.h"

namespace sidemux::core {

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
  nghttp2_send_data_callback send_data = nullptr;
};

enum class H2Role { server, client };

// A new session (free it with nghttp2_session_del) whose windows reopen only
// when the other side took the bytes (consume()), which keeps no closed
// streams, and whose abuse bounds hold for clients and members alike. Its
// first SETTINGS are queued: `settings`, then push off and the initial stream window
// (flow_windows.h); the connection window is opened to kConnectionWindow.
// It allocates from `memory` (h2_memory(), or a SessionMemory's), which
// must outlive it.
nghttp2_session* new_h2_session(H2Role role, const H2Handlers& handlers, void* user,
                                std::span<const nghttp2_settings_entry> settings, nghttp2_mem* memory);

// Adds one received header field to `total`, the size of its block as RFC
// 9113 counts it (32 bytes of overhead per field). False once over `limit`.
inline bool count_header_field(uint32_t& total, size_t namelen, size_t valuelen, uint32_t limit) {
  total += static_cast<uint32_t>(namelen + valuelen + 32);
  return total <= limit;
}

// Serializes pending frames into the transport until its buffer is full or
// nothing is left. Returns 0, or the fatal nghttp2 error.
int send_h2_output(nghttp2_session* session, Transport& transport);

// How a data provider hands nghttp2 the next `n` bytes of a stream's queue
// (`front`) for the next DATA frame. A small payload is copied into nghttp2's
// frame buffer (`buf`) and `sent(n)` runs at once: for a unary call's
// 100-byte message the copy is cheaper than the second callback, the stream
// lookup and the two appends of a NO_COPY frame (38.6k against 40.1k
// instructions per proxied unary request). A larger one is announced with
// NGHTTP2_DATA_FLAG_NO_COPY, and write_data_frame() moves it.
inline constexpr size_t kNoCopyMinPayload = 4096;
template <class Sent>
ssize_t provide_data(ssize_t n, ByteQueue::Tail front, uint8_t* buf, uint32_t* data_flags, Sent sent) {
  if (n <= 0) return n;
  if (static_cast<size_t>(n) >= kNoCopyMinPayload) {
    *data_flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    return n;
  }
  front.copy_to(buf, static_cast<size_t>(n));
  sent(static_cast<size_t>(n));
  return n;
}

// The send_data_callback of a DATA frame whose data provider set
// NGHTTP2_DATA_FLAG_NO_COPY: nghttp2's 9-byte frame header into the
// transport's batch, then `length` bytes of `payload` (the front of the
// stream's queue) into the same gathered write from the queue's blocks,
// which the transport holds until written, and `sent(length)`. In user
// space the bytes are copied once between the two sessions, into the queue
// as they came in, where the data provider copied them into nghttp2's
// frame buffer and that buffer was copied into the batch (the kernel's
// copy into the socket remains).
// nghttp2_session_mem_send() hands out no bytes for such a frame and would
// go on to the next one without coming back to send_h2_output()'s check on
// the batch: once the batch is full, NGHTTP2_ERR_PAUSE (the frame is sent)
// makes it return, or one call would move every window's worth of every
// stream into the batch. NGHTTP2_ERR_CALLBACK_FAILURE for padding, which
// sidemux never asks for.
template <class Sent>
int write_data_frame(Transport& transport, const nghttp2_frame* frame, const uint8_t* framehd,
                     ByteQueue::Tail payload, size_t length, Sent sent) {
  if (frame->data.padlen != 0) return NGHTTP2_ERR_CALLBACK_FAILURE;
  constexpr size_t kFrameHeader = 9;
  transport.write({reinterpret_cast<const char*>(framehd), kFrameHeader});
  payload.for_each_block(length, [&transport](const uint8_t* data, size_t len, ByteQueue::BlockRef ref) {
    transport.write(data, len, std::move(ref));
  });
  sent(length);
  return transport.write_buffer_full() ? NGHTTP2_ERR_PAUSE : 0;
}

}  // namespace sidemux::core
