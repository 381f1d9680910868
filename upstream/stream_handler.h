// What an upstream session tells the stream that owns one of its HTTP/2
// streams. The proxy's ProxiedStream implements it; upstream/ knows nothing
// of the downstream side.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "proxy/core/byte_queue.h"

namespace sidemux::upstream {

class StreamHandler {
 public:
  virtual ~StreamHandler() = default;

  // One response header field; `trailer` for the trailing HEADERS.
  virtual void on_response_header(std::string_view name, std::string_view value, bool trailer) = 0;
  // The response HEADERS (or trailers) block is complete.
  virtual void on_response_headers_end(bool trailer, bool end_stream) = 0;
  virtual void on_response_data(const uint8_t* data, size_t len, bool end_stream) = 0;
  // The next DATA frame of the request body, for nghttp2's data provider:
  // how many bytes it carries (at most `len`; may set NGHTTP2_DATA_FLAG_EOF),
  // or NGHTTP2_ERR_DEFERRED when none are buffered yet. Nothing is copied
  // here: as nghttp2 writes the frame, the session takes those bytes from
  // request_body_front() into its write batch, then calls
  // on_request_body_sent().
  virtual ssize_t read_request_body(size_t len, uint32_t* data_flags) = 0;
  // The request body bytes not sent yet.
  virtual core::ByteQueue::Tail request_body_front() const = 0;
  virtual void on_request_body_sent(size_t n) = 0;
  enum class Close {
    done,      // both sides ended normally
    reset,     // the member failed the stream (INTERNAL_ERROR and the like):
               // its own failure, counted towards its outlier ejection
    rejected,  // the member reset the stream blaming the request or its
               // sender (PROTOCOL_ERROR, CANCEL, ...): not the member's fault
    refused,   // the member never saw the request: no byte of its HEADERS
               // left sidemux before the connection failed, REFUSED_STREAM,
               // GOAWAY below the stream id. Safe to retry.
    lost,      // the connection died after the request went out (any byte of
               // its HEADERS was handed to the socket): never replayed
  };
  // After this call the session forgets the handler.
  virtual void on_upstream_close(Close kind, uint32_t error_code, std::string_view reason) = 0;
};

}  // namespace sidemux::upstream
