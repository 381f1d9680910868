#include "parsers/etcd_status.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "t/unit/parsers/protobuf_test_bytes.h"

namespace sidemux::parsers::etcd {
namespace {

using testing::PbBytes;

std::vector<uint8_t> from_hex(std::string_view hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  return out;
}

// Answers of Debian's etcd 3.4.23 to Maintenance/Status, captured by
// etcd_status_capture.py (also the fuzz seeds t/fuzz/corpus/etcd_status/).
// The expected values are what `etcdctl endpoint status -w json` printed.
// A one-member cluster:
constexpr std::string_view kLeader =
    "0a190890cbbcba88c8c9a42710a1a4bef3dad09dbac201180120021206332e342e32331880a00120a1a4bef3dad09dbac2012804"
    "3002380448808001";
// One member of two after the other stopped:
constexpr std::string_view kNoLeader =
    "0a1908a5fa98c896c9b5d6890110e1ecf4a6b6f0a4a66c180120021206332e342e32331880a0012806300238064215657463647365"
    "727665723a206e6f206c656164657248808001";
// A one-member cluster with a 1 MiB quota, filled:
constexpr std::string_view kNoSpace =
    "0a1908a2f2a0ada681f6f2ce01108c99bfe9b9a6d5b732181120021206332e342e32331880a057208c99bfe9b9a6d5b7322815300238"
    "15422b6d656d62657249443a3336333432313731303434383031323831343020616c61726d3a4e4f5350414345204880c04f";

TEST(EtcdStatus, RealLeader) {
  auto bytes = from_hex(kLeader);
  StatusResponse s;
  ASSERT_EQ(decode_status_response(bytes, s), nullptr);
  EXPECT_EQ(s.member_id, 14011954657185731105u);
  EXPECT_EQ(s.db_size, 20480);
  EXPECT_EQ(s.leader, 14011954657185731105u);
  EXPECT_EQ(s.raft_term, 2u);
  EXPECT_TRUE(s.errors().empty());
  EXPECT_FALSE(s.is_learner);
  EXPECT_TRUE(s.has_leader());
  EXPECT_TRUE(s.is_leader());
}

TEST(EtcdStatus, RealNoLeader) {
  auto bytes = from_hex(kNoLeader);
  StatusResponse s;
  ASSERT_EQ(decode_status_response(bytes, s), nullptr);
  EXPECT_EQ(s.member_id, 7803774446868444769u);
  EXPECT_EQ(s.leader, 0u);
  EXPECT_FALSE(s.has_leader());
  EXPECT_FALSE(s.is_leader());
  ASSERT_EQ(s.errors().size(), 1u);
  EXPECT_EQ(s.errors()[0], "etcdserver: no leader");
}

TEST(EtcdStatus, RealNoSpaceAlarm) {
  auto bytes = from_hex(kNoSpace);
  StatusResponse s;
  ASSERT_EQ(decode_status_response(bytes, s), nullptr);
  EXPECT_EQ(s.db_size, 1429504);
  EXPECT_TRUE(s.is_leader());
  ASSERT_EQ(s.errors().size(), 1u);
  EXPECT_EQ(s.errors()[0], "memberID:3634217104480128140 alarm:NOSPACE ");
}

TEST(EtcdStatus, LearnerWithAlarms) {
  PbBytes b;
  b.msg(1, PbBytes().uint(1, 7).uint(2, 42).uint(4, 3))
      .uint(4, 41)
      .uint(6, 3)
      .str(8, "NOSPACE")
      .str(8, "CORRUPT")
      .uint(10, 1);
  StatusResponse s;
  ASSERT_EQ(decode_status_response(b.bytes, s), nullptr);
  EXPECT_EQ(s.member_id, 42u);
  EXPECT_EQ(s.raft_term, 3u);
  EXPECT_TRUE(s.is_learner);
  EXPECT_TRUE(s.has_leader());
  EXPECT_FALSE(s.is_leader());
  ASSERT_EQ(s.errors().size(), 2u);
  EXPECT_EQ(s.errors()[0], "NOSPACE");
  EXPECT_EQ(s.errors()[1], "CORRUPT");
}

TEST(EtcdStatus, NegativeInt64AndEmptyMessage) {
  PbBytes b;
  b.uint(3, static_cast<uint64_t>(-5));
  StatusResponse s;
  ASSERT_EQ(decode_status_response(b.bytes, s), nullptr);
  EXPECT_EQ(s.db_size, -5);

  ASSERT_EQ(decode_status_response({}, s), nullptr);  // every field at its default
  EXPECT_FALSE(s.has_leader());
}

TEST(EtcdStatus, UnknownFieldsOfEveryWireTypeAreSkipped) {
  PbBytes b;
  b.str(11, "3.6.0")                                   // storageVersion (etcd 3.6)
      .str(12, "3.6.0")                                // clusterVersion (etcd 3.6)
      .tag(13, 1).raw({1, 2, 3, 4, 5, 6, 7, 8})        // fixed64
      .tag(14, 5).raw({1, 2, 3, 4})                    // fixed32
      .tag(15, 3).uint(4, 99).tag(15, 4)               // a group holding a "leader"
      .uint(1000000, 1)
      .msg(1, PbBytes().uint(2, 9).str(5, "x").tag(6, 5).raw({0, 0, 0, 0}))
      .uint(4, 9)
      .str(4, "leader as a string")                    // known number, other type
      .uint(10, 0);
  StatusResponse s;
  ASSERT_EQ(decode_status_response(b.bytes, s), nullptr);
  EXPECT_EQ(s.member_id, 9u);
  EXPECT_EQ(s.leader, 9u);  // not the group's 99, not the string
  EXPECT_TRUE(s.is_leader());
  EXPECT_FALSE(s.is_learner);
}

TEST(EtcdStatus, RepeatedHeadersMergeAndLastScalarWins) {
  PbBytes b;
  b.msg(1, PbBytes().uint(1, 5).uint(2, 6)).uint(4, 1).msg(1, PbBytes().uint(2, 7)).uint(4, 7);
  StatusResponse s;
  ASSERT_EQ(decode_status_response(b.bytes, s), nullptr);
  EXPECT_EQ(s.member_id, 7u);
  EXPECT_EQ(s.leader, 7u);
}

TEST(EtcdStatus, ErrorsPastTheBoundAreCountedNotKept) {
  PbBytes b;
  for (size_t i = 0; i < StatusResponse::kMaxErrors + 3; ++i) b.str(8, "alarm " + std::to_string(i));
  StatusResponse s;
  ASSERT_EQ(decode_status_response(b.bytes, s), nullptr);
  EXPECT_EQ(s.error_count, StatusResponse::kMaxErrors + 3);
  ASSERT_EQ(s.errors().size(), StatusResponse::kMaxErrors);
  EXPECT_EQ(s.errors().back(), "alarm 7");
}

TEST(EtcdStatus, DecodingResetsThePreviousAnswer) {
  StatusResponse s;
  auto noleader = from_hex(kNoLeader);
  ASSERT_EQ(decode_status_response(noleader, s), nullptr);
  PbBytes b;
  b.uint(4, 1);
  ASSERT_EQ(decode_status_response(b.bytes, s), nullptr);
  EXPECT_TRUE(s.errors().empty());
  EXPECT_EQ(s.member_id, 0u);
}

TEST(EtcdStatus, EveryTruncationOfARealAnswerIsRejectedOrAPrefixMessage) {
  // Cut anywhere inside a field, the answer is malformed; cut between the
  // top-level fields, it is a shorter valid message.
  auto full = from_hex(kNoSpace);
  size_t rejected = 0;
  for (size_t n = 0; n < full.size(); ++n) {
    StatusResponse s;
    if (decode_status_response(std::span(full).first(n), s)) ++rejected;
  }
  // Nine top-level fields (header, version, dbSize, leader, raftIndex,
  // raftTerm, raftAppliedIndex, errors, dbSizeInUse): nine prefixes, the
  // empty one included, end between two of them.
  EXPECT_EQ(rejected, full.size() - 9);
}

TEST(EtcdStatus, MalformedHeaderFailsTheAnswer) {
  PbBytes b;
  b.uint(4, 1).str(1, std::string("\x08\xff", 2));  // truncated varint inside the header
  StatusResponse s;
  const char* e = decode_status_response(b.bytes, s);
  ASSERT_NE(e, nullptr);
  EXPECT_STREQ(e, "truncated varint");
}

}  // namespace
}  // namespace sidemux::parsers::etcd
