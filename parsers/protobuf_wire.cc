#include "parsers/protobuf_wire.h"

namespace sidemux::parsers::protowire {

namespace {
// Field numbers are 29 bits (the tag's low 3 bits are the wire type).
constexpr uint64_t kMaxFieldNumber = (1u << 29) - 1;
// Nesting bound for skipped groups; libprotobuf's default recursion limit
// is 100, and no message sidemux reads has groups at all.
constexpr int kMaxGroupDepth = 32;
}  // namespace

bool Reader::fail(const char* why) {
  error_ = why;
  pos_ = in_.size();
  return false;
}

bool Reader::read_varint(uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos_ == in_.size()) return fail("truncated varint");
    uint8_t b = in_[pos_++];
    // The tenth byte holds bit 63 alone; anything more overflows 64 bits.
    if (shift == 63 && b > 1) return fail("varint overflows 64 bits");
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) return true;
  }
  return fail("varint overflows 64 bits");
}

bool Reader::read_fixed(size_t n, uint64_t& v) {
  if (in_.size() - pos_ < n) return fail("truncated fixed-width field");
  v = 0;
  for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(in_[pos_ + i]) << (8 * i);  // little-endian
  pos_ += n;
  return true;
}

bool Reader::read_tag(uint32_t& number, WireType& type) {
  uint64_t tag;
  if (!read_varint(tag)) return false;
  uint64_t n = tag >> 3;
  if (n == 0 || n > kMaxFieldNumber) return fail("invalid field number");
  auto t = static_cast<uint8_t>(tag & 7);
  if (t > static_cast<uint8_t>(WireType::fixed32)) return fail("invalid wire type");
  number = static_cast<uint32_t>(n);
  type = static_cast<WireType>(t);
  return true;
}

// The value of a field whose tag was just read, at group nesting `depth`
// (0: the top level). A group is skipped as a whole, up to its end tag.
bool Reader::read_value(Field& f, int depth) {
  f.value = 0;
  f.bytes = {};
  switch (f.type) {
    case WireType::varint:
      return read_varint(f.value);
    case WireType::fixed64:
      return read_fixed(8, f.value);
    case WireType::fixed32:
      return read_fixed(4, f.value);
    case WireType::len: {
      uint64_t len;
      if (!read_varint(len)) return false;
      if (len > in_.size() - pos_) return fail("truncated length-delimited field");
      f.bytes = in_.subspan(pos_, static_cast<size_t>(len));
      pos_ += static_cast<size_t>(len);
      return true;
    }
    case WireType::start_group: {
      size_t start = pos_;
      if (!skip_group(f.number, depth + 1)) return false;
      // Nobody reads groups; the span is there for completeness.
      f.bytes = in_.subspan(start, pos_ - start);
      return true;
    }
    case WireType::end_group:
      // Inside a group skip_group() takes its end tag first.
      return fail("end of group without a start");
  }
  return fail("invalid wire type");
}

bool Reader::skip_group(uint32_t number, int depth) {
  if (depth > kMaxGroupDepth) return fail("groups nested too deeply");
  for (;;) {
    if (pos_ == in_.size()) return fail("truncated group");
    Field f;
    if (!read_tag(f.number, f.type)) return false;
    if (f.type == WireType::end_group) {
      if (f.number != number) return fail("mismatched end of group");
      return true;
    }
    if (!read_value(f, depth)) return false;
  }
}

bool Reader::next(Field& f) {
  if (pos_ == in_.size()) return false;
  return read_tag(f.number, f.type) && read_value(f, 0);
}

}  // namespace sidemux::parsers::protowire
