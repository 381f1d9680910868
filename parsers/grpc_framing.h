// Where gRPC message boundaries fall in one direction of a stream. Every
// message is a 5-byte prefix (compressed flag, 32-bit big-endian length)
// and its payload (gRPC over HTTP/2, "Length-Prefixed-Message"). A proxy
// that ends a stream early must end it at a boundary: a client that saw
// half a message reports a protocol error, not the status it is sent.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace sidemux::parsers::grpc {

class MessageFraming {
 public:
  // Bytes that passed, in order.
  void advance(const uint8_t* data, size_t len);
  // Between two messages (or before the first).
  bool at_boundary() const { return !in_payload_ && prefix_len_ == 0; }
  // Passes the bytes of `data` up to the end of the current message (none
  // at a boundary) and returns how many; at_boundary() then tells whether
  // they held its end. On a copy, it finds how much of what is buffered
  // (in as many spans as it lies in) ends the message in progress.
  size_t finish_message(const uint8_t* data, size_t len);

 private:
  // Takes bytes of the current message (a new one at a boundary) up to its
  // end; returns how many.
  size_t step(const uint8_t* data, size_t len);

  std::array<uint8_t, 5> prefix_{};
  size_t prefix_len_ = 0;
  bool in_payload_ = false;
  uint64_t payload_left_ = 0;
};

}  // namespace sidemux::parsers::grpc
