// What the fuzz targets share: a check that survives NDEBUG, input that is
// handed over in exact-size heap copies (so ASan sees any read past a
// piece), and split points derived from one byte of the input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>

namespace sidemux::fuzz {

[[noreturn]] inline void check_failed(const char* what, const char* file, int line) {
  std::fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed\n", file, line, what);
  std::abort();
}

#define FUZZ_CHECK(cond) ((cond) ? void(0) : ::sidemux::fuzz::check_failed(#cond, __FILE__, __LINE__))

// Cuts a byte stream into pieces the way a socket might: the seed's low 3
// bits set the largest piece (1 to 64 bytes; 0 means one piece for all),
// the rest of it seeds the sizes.
class Splitter {
 public:
  explicit Splitter(uint8_t seed) : max_(seed & 7 ? size_t{1} << ((seed & 7) - 1) : 0), state_(seed * 2654435761u | 1) {}

  size_t next(size_t remaining) {
    if (max_ == 0) return remaining;
    state_ ^= state_ << 13;
    state_ ^= state_ >> 17;
    state_ ^= state_ << 5;
    size_t n = 1 + state_ % max_;
    return n < remaining ? n : remaining;
  }

 private:
  size_t max_;
  uint32_t state_;
};

// One piece, alone in its own allocation.
struct Piece {
  Piece(const uint8_t* data, size_t len) : bytes(new char[len ? len : 1]), size(len) {
    for (size_t i = 0; i < len; ++i) bytes[i] = static_cast<char>(data[i]);
  }
  bool holds(const char* p, size_t n) const { return p >= bytes.get() && n <= size && p - bytes.get() <= static_cast<ptrdiff_t>(size - n); }

  std::unique_ptr<char[]> bytes;
  size_t size;
};

}  // namespace sidemux::fuzz
