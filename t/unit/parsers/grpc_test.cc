#include "parsers/grpc.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sidemux::parsers::grpc {
namespace {

using namespace std::chrono;

TEST(GrpcTimeout, Units) {
  nanoseconds d;
  ASSERT_TRUE(parse_timeout("200m", d));
  EXPECT_EQ(d, milliseconds(200));
  ASSERT_TRUE(parse_timeout("1H", d));
  EXPECT_EQ(d, hours(1));
  ASSERT_TRUE(parse_timeout("5M", d));
  EXPECT_EQ(d, minutes(5));
  ASSERT_TRUE(parse_timeout("3S", d));
  EXPECT_EQ(d, seconds(3));
  ASSERT_TRUE(parse_timeout("7u", d));
  EXPECT_EQ(d, microseconds(7));
  ASSERT_TRUE(parse_timeout("99999999n", d));
  EXPECT_EQ(d, nanoseconds(99999999));
}

TEST(GrpcTimeout, HugeValuesSaturateInsteadOfOverflowing) {
  nanoseconds d;
  ASSERT_TRUE(parse_timeout("99999999H", d));
  EXPECT_EQ(d, nanoseconds::max());
  ASSERT_TRUE(parse_timeout("2562047H", d));  // just fits
  EXPECT_EQ(d, hours(2562047));
  ASSERT_TRUE(parse_timeout("99999999S", d));
  EXPECT_EQ(d, seconds(99999999));
}

TEST(GrpcTimeout, Rejects) {
  nanoseconds d;
  for (const char* bad : {"", "m", "10", "10x", "-1S", "123456789S", "1.5S", " 1S"})
    EXPECT_FALSE(parse_timeout(bad, d)) << bad;
}

TEST(GrpcStatus, Names) {
  EXPECT_EQ(status_name(0), "OK");
  EXPECT_EQ(status_name(4), "DEADLINE_EXCEEDED");
  EXPECT_EQ(status_name(14), "UNAVAILABLE");
  EXPECT_EQ(status_name(16), "UNAUTHENTICATED");
  EXPECT_EQ(status_name(17), "UNKNOWN");
  EXPECT_EQ(status_name(-1), "UNKNOWN");
}

TEST(GrpcMessage, PercentEncoding) {
  EXPECT_EQ(percent_encode("no member: m1 (down)"), "no member: m1 (down)");
  EXPECT_EQ(percent_encode("100%\n\xc3\xa9"), "100%25%0A%C3%A9");
}

TEST(GrpcTimeout, FormatPicksTheFinestUnitThatFitsAndRoundsUp) {
  EXPECT_EQ(format_timeout(nanoseconds(99999999)), "99999999n");
  EXPECT_EQ(format_timeout(nanoseconds(100000000)), "100000u");
  EXPECT_EQ(format_timeout(nanoseconds(100000001)), "100001u");
  EXPECT_EQ(format_timeout(seconds(4) + microseconds(1)), "4000001u");
  EXPECT_EQ(format_timeout(seconds(150)), "150000m");
  EXPECT_EQ(format_timeout(hours(30)), "108000S");
  EXPECT_EQ(format_timeout(nanoseconds(0)), "1n");
  EXPECT_EQ(format_timeout(nanoseconds(-5)), "1n");
  EXPECT_EQ(format_timeout(nanoseconds::max()), "2562048H");
  nanoseconds back;
  ASSERT_TRUE(parse_timeout(format_timeout(milliseconds(2500)), back));
  EXPECT_EQ(back, milliseconds(2500));
}

TEST(GrpcRequest, OnlyPostWithAGrpcContentTypeCanBeGrpc) {
  EXPECT_EQ(check_request("POST", "application/grpc").http_status, 0);
  EXPECT_EQ(check_request("POST", "application/grpc+proto").http_status, 0);
  EXPECT_EQ(check_request("POST", "application/grpc; charset=utf-8").http_status, 0);
  EXPECT_EQ(check_request("POST", "Application/GRPC").http_status, 0);
  EXPECT_EQ(check_request("GET", "application/grpc").http_status, 405);
  EXPECT_EQ(check_request("PUT", "application/grpc").http_status, 405);
  EXPECT_EQ(check_request("POST", "text/plain").http_status, 415);
  EXPECT_EQ(check_request("POST", "").http_status, 415);
  EXPECT_EQ(check_request("POST", "application/grpcx").http_status, 415);
  EXPECT_EQ(check_request("POST", "application/grp").http_status, 415);
  EXPECT_FALSE(check_request("GET", "").message.empty());
}

TEST(GrpcUnaryMessage, OneUncompressedMessage) {
  std::vector<uint8_t> body = {0, 0, 0, 0, 2, 0x08, 0x01};
  std::span<const uint8_t> m;
  ASSERT_EQ(unary_message(body, m), nullptr);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0], 0x08);
  ASSERT_EQ(unary_message(kEmptyMessage, m), nullptr);
  EXPECT_TRUE(m.empty());
}

TEST(GrpcUnaryMessage, Rejects) {
  std::span<const uint8_t> m;
  auto why = [&](std::vector<uint8_t> body) {
    const char* e = unary_message(body, m);
    return std::string(e ? e : "ok");
  };
  EXPECT_EQ(why({0, 0, 0}), "response shorter than a message prefix");
  EXPECT_EQ(why({1, 0, 0, 0, 1, 0}), "compressed response message");
  EXPECT_EQ(why({0, 0, 0, 0, 3, 0}), "truncated response message");
  EXPECT_EQ(why({0, 0xff, 0xff, 0xff, 0xff}), "truncated response message");
  EXPECT_EQ(why({0, 0, 0, 0, 0, 0, 0, 0, 0, 0}), "more than one response message");
}

}  // namespace
}  // namespace sidemux::parsers::grpc
