// A FIFO of bytes: appended at the back, consumed from the front. Keeps a
// small capacity across drains, so a stream that moves bytes steadily
// allocates only until its buffer reached the size its traffic needs; a
// buffer a burst grew past kKeepCapacity is freed once drained, so a quiet
// stream does not keep its peak.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace sidemux::core {

class ByteQueue {
 public:
  // Kept across drains: gRPC messages of a few KiB reuse their buffer;
  // larger ones cost one allocation per 64 KiB or more passed through.
  static constexpr size_t kKeepCapacity = 64 * 1024;

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
      std::string().swap(buf_);
    } else {
      buf_.clear();
    }
    head_ = 0;
  }

 private:
  std::string buf_;
  size_t head_ = 0;
};

}  // namespace sidemux::core
