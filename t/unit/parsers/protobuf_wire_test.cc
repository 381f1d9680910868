#include "parsers/protobuf_wire.h"

#include <gtest/gtest.h>

#include <vector>

#include "t/unit/parsers/protobuf_test_bytes.h"

namespace sidemux::parsers::protowire {
namespace {

using testing::PbBytes;

// Reads every field; returns them, and the reader's error.
std::pair<std::vector<Field>, const char*> read_all(const std::vector<uint8_t>& b) {
  Reader r(b);
  std::vector<Field> fields;
  Field f;
  while (r.next(f)) fields.push_back(f);
  return {fields, r.error()};
}

TEST(ProtobufWire, EveryWireType) {
  PbBytes b;
  b.uint(1, 300)
      .tag(2, 1).raw({1, 2, 3, 4, 5, 6, 7, 8})
      .str(3, "abc")
      .tag(4, 3).uint(1, 7).str(2, "in a group").tag(4, 4)
      .tag(5, 5).raw({0xff, 0, 0, 0x80});
  auto [fields, error] = read_all(b.bytes);
  ASSERT_EQ(error, nullptr);
  ASSERT_EQ(fields.size(), 5u);
  EXPECT_EQ(fields[0].number, 1u);
  EXPECT_EQ(fields[0].value, 300u);
  EXPECT_EQ(fields[1].type, WireType::fixed64);
  EXPECT_EQ(fields[1].value, 0x0807060504030201u);  // little-endian
  EXPECT_EQ(fields[2].type, WireType::len);
  EXPECT_EQ(std::string(fields[2].bytes.begin(), fields[2].bytes.end()), "abc");
  EXPECT_EQ(fields[3].type, WireType::start_group);
  EXPECT_EQ(fields[3].number, 4u);
  EXPECT_EQ(fields[4].type, WireType::fixed32);
  EXPECT_EQ(fields[4].value, 0x800000ffu);
}

TEST(ProtobufWire, LargestVarintAndFieldNumber) {
  PbBytes b;
  b.uint((1u << 29) - 1, UINT64_MAX);
  auto [fields, error] = read_all(b.bytes);
  ASSERT_EQ(error, nullptr);
  ASSERT_EQ(fields.size(), 1u);
  EXPECT_EQ(fields[0].number, (1u << 29) - 1);
  EXPECT_EQ(fields[0].value, UINT64_MAX);
}

TEST(ProtobufWire, NestedGroupsAreSkippedWhole) {
  PbBytes b;
  b.tag(9, 3).tag(10, 3).uint(1, 1).tag(10, 4).tag(9, 4).uint(2, 5);
  auto [fields, error] = read_all(b.bytes);
  ASSERT_EQ(error, nullptr);
  ASSERT_EQ(fields.size(), 2u);
  EXPECT_EQ(fields[1].number, 2u);
  EXPECT_EQ(fields[1].value, 5u);
}

struct Malformed {
  const char* name;
  std::vector<uint8_t> bytes;
  const char* error;
};

class ProtobufWireErrors : public ::testing::TestWithParam<Malformed> {};

TEST_P(ProtobufWireErrors, RejectedWithReason) {
  auto [fields, error] = read_all(GetParam().bytes);
  ASSERT_NE(error, nullptr);
  EXPECT_STREQ(error, GetParam().error);
}

std::vector<uint8_t> deep_groups(int depth) {
  PbBytes b;
  for (int i = 0; i < depth; ++i) b.tag(1, 3);
  for (int i = 0; i < depth; ++i) b.tag(1, 4);
  return b.bytes;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ProtobufWireErrors,
    ::testing::Values(
        Malformed{"truncated_tag", {0x80}, "truncated varint"},
        Malformed{"truncated_varint", {0x08, 0xff, 0xff}, "truncated varint"},
        Malformed{"eleven_byte_varint", {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
                  "varint overflows 64 bits"},
        Malformed{"tenth_byte_too_big", {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02},
                  "varint overflows 64 bits"},
        Malformed{"field_number_zero", {0x00, 0x01}, "invalid field number"},
        Malformed{"field_number_too_big", {0x80, 0x80, 0x80, 0x80, 0x20, 0x00}, "invalid field number"},
        Malformed{"wire_type_6", {0x0e}, "invalid wire type"},
        Malformed{"wire_type_7", {0x0f}, "invalid wire type"},
        Malformed{"length_past_end", {0x0a, 0x05, 'a', 'b'}, "truncated length-delimited field"},
        Malformed{"huge_length", {0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
                  "truncated length-delimited field"},
        Malformed{"truncated_fixed64", {0x09, 1, 2, 3}, "truncated fixed-width field"},
        Malformed{"truncated_fixed32", {0x0d, 1, 2, 3}, "truncated fixed-width field"},
        Malformed{"end_group_alone", {0x0c}, "end of group without a start"},
        Malformed{"unterminated_group", {0x0b, 0x08, 0x01}, "truncated group"},
        Malformed{"mismatched_group_end", {0x0b, 0x14}, "mismatched end of group"},
        Malformed{"groups_too_deep", deep_groups(33), "groups nested too deeply"},
        Malformed{"bad_field_inside_group", {0x0b, 0x0f, 0x0c}, "invalid wire type"}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(ProtobufWire, GroupsAtTheDepthBoundAreSkipped) {
  auto [fields, error] = read_all(deep_groups(32));
  EXPECT_EQ(error, nullptr);
  EXPECT_EQ(fields.size(), 1u);
}

TEST(ProtobufWire, AnErrorEndsReading) {
  std::vector<uint8_t> b = {0x0f, 0x08, 0x01};
  Reader r(b);
  Field f;
  EXPECT_FALSE(r.next(f));
  EXPECT_FALSE(r.next(f));  // no field after an error, even a valid one
  EXPECT_NE(r.error(), nullptr);
}

}  // namespace
}  // namespace sidemux::parsers::protowire
