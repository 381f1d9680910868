// Building protobuf wire bytes by hand in tests, one field at a time.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sidemux::parsers::testing {

class PbBytes {
 public:
  PbBytes& varint(uint64_t v) {
    for (; v >= 0x80; v >>= 7) bytes.push_back(static_cast<uint8_t>(v | 0x80));
    bytes.push_back(static_cast<uint8_t>(v));
    return *this;
  }
  PbBytes& tag(uint32_t number, uint8_t wire_type) { return varint(uint64_t{number} << 3 | wire_type); }
  PbBytes& uint(uint32_t number, uint64_t v) { return tag(number, 0).varint(v); }
  PbBytes& str(uint32_t number, std::string_view s) {
    tag(number, 2).varint(s.size());
    bytes.insert(bytes.end(), s.begin(), s.end());
    return *this;
  }
  PbBytes& msg(uint32_t number, const PbBytes& m) {
    return str(number, {reinterpret_cast<const char*>(m.bytes.data()), m.bytes.size()});
  }
  PbBytes& raw(std::initializer_list<uint8_t> b) {
    bytes.insert(bytes.end(), b);
    return *this;
  }

  std::vector<uint8_t> bytes;
};

}  // namespace sidemux::parsers::testing
