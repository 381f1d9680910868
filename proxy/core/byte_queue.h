// A FIFO of bytes: appended at the back, consumed from the front. Keeps its
// capacity, so a stream that moves bytes steadily allocates only until its
// buffer reached the flow-control window it is bounded by.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace sidemux::core {

class ByteQueue {
 public:
  void append(const uint8_t* data, size_t len) { buf_.append(reinterpret_cast<const char*>(data), len); }
  const uint8_t* data() const { return reinterpret_cast<const uint8_t*>(buf_.data()) + head_; }
  size_t size() const { return buf_.size() - head_; }
  bool empty() const { return size() == 0; }

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
  void clear() {
    buf_.clear();
    head_ = 0;
  }

 private:
  std::string buf_;
  size_t head_ = 0;
};

}  // namespace sidemux::core
