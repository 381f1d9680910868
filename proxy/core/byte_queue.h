// A FIFO of bytes: appended at the back, consumed from the front. Keeps its
// capacity across drains up to one stream window: a stream's buffer is
// bounded by its flow-control window anyway, and freeing it on every drain
// made a steady large transfer allocate and free a window's worth per
// round trip (and filled ASan's quarantine). Only a buffer that grew past a
// window (which flow control does not allow a stream) is freed once drained.
// A stream's queues take their bytes from the loop's stream memory
// (LoopContext::stream_memory()), so a small body costs no malloc; blocks
// over 1 KiB come from the heap.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory_resource>
#include <string>

#include "proxy/core/flow_windows.h"

namespace sidemux::core {

class ByteQueue {
 public:
  // Twice a window: std::string grows by doubling past what was asked.
  static constexpr size_t kKeepCapacity = 2 * size_t{kStreamWindow};

  ByteQueue() = default;
  explicit ByteQueue(std::pmr::memory_resource* memory) : buf_(memory) {}

  void append(const uint8_t* data, size_t len) { buf_.append(reinterpret_cast<const char*>(data), len); }
  const uint8_t* data() const { return reinterpret_cast<const uint8_t*>(buf_.data()) + head_; }
  size_t size() const { return buf_.size() - head_; }
  bool empty() const { return size() == 0; }
  size_t capacity() const { return buf_.capacity(); }

  void consume(size_t n) {
    head_ += n;
    if (head_ == buf_.size()) {
      clear();
    } else if (head_ > buf_.size() / 2) {
      // Moving the tail down once it is the smaller part keeps the cost
      // linear in the bytes passed through.
      buf_.erase(0, head_);
      head_ = 0;
    }
  }
  // Keeps the first `n` bytes, drops the rest.
  void truncate(size_t n) {
    if (n == 0) return clear();
    if (n < size()) buf_.resize(head_ + n);
  }
  void clear() {
    if (buf_.capacity() > kKeepCapacity) {
      std::pmr::string(buf_.get_allocator()).swap(buf_);
    } else {
      buf_.clear();
    }
    head_ = 0;
  }

 private:
  std::pmr::string buf_;
  size_t head_ = 0;
};

}  // namespace sidemux::core
