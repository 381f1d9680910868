// Reading the protocol buffers wire format
// (https://protobuf.dev/programming-guides/encoding/), field by field.
//
// Hand-written rather than Debian's libprotobuf: sidemux reads a handful of
// scalar fields from two small messages (etcd's StatusResponse, gRPC's
// HealthCheckResponse). libprotobuf would add protoc code generation to the
// build, a runtime library and an allocation per decoded message, for a
// format that is stable and takes a page to read. This reader never
// allocates, never reads outside its span and bounds group nesting, so
// whatever a member sends costs bounded time and stack.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace sidemux::parsers::protowire {

enum class WireType : uint8_t {
  varint = 0,
  fixed64 = 1,
  len = 2,          // bytes, strings, embedded messages, packed repeated fields
  start_group = 3,  // proto2 groups: skipped as a whole (bytes: up to its end tag)
  end_group = 4,
  fixed32 = 5,
};

struct Field {
  uint32_t number = 0;
  WireType type = WireType::varint;
  uint64_t value = 0;               // varint, fixed64, fixed32
  std::span<const uint8_t> bytes;   // len, start_group
};

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}

  // The next field into `f`. False at the end of the input, or on malformed
  // input; error() tells which.
  bool next(Field& f);
  // nullptr while the input is well-formed, else why it is not.
  const char* error() const { return error_; }

 private:
  bool read_varint(uint64_t& v);
  bool read_fixed(size_t n, uint64_t& v);
  bool read_tag(uint32_t& number, WireType& type);
  bool read_value(Field& f, int depth);
  bool skip_group(uint32_t number, int depth);
  bool fail(const char* why);

  std::span<const uint8_t> in_;
  size_t pos_ = 0;
  const char* error_ = nullptr;
};

// Decodes the int64 of a varint field (two's complement, as protobuf encodes it).
inline int64_t as_int64(uint64_t v) { return static_cast<int64_t>(v); }

}  // namespace sidemux::parsers::protowire
