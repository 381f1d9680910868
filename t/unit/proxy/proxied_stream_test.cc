#include "proxy/proxied_stream.h"

#include <gtest/gtest.h>

#include "t/unit/support/test_proxy.h"

namespace sidemux {
namespace {

using unit::TestMember;
using unit::TestProxy;

core::HeaderList grpc_call(std::string timeout = "") {
  core::HeaderList fields = unit::grpc_request();
  if (!timeout.empty()) fields.push_back({"grpc-timeout", timeout});
  return fields;
}

TEST(ProxiedStream, TrailersOnlyAnswerReachesTheClient) {
  TestProxy p;
  auto& client = p.h2_client();
  client.request(grpc_call(), std::string(5, '\0'));
  ASSERT_TRUE(p.run_until([&] { return client.closed; }));
  EXPECT_EQ(client.close_code, uint32_t{NGHTTP2_NO_ERROR});
  EXPECT_EQ(client.header(":status"), "200");
  EXPECT_EQ(client.header("grpc-status"), "0");
  EXPECT_EQ(p.member.requests, 1);
  EXPECT_EQ(p.member.request_bytes, 5u);
}

TEST(ProxiedStream, RequestLargerThanTheWindowsFlowsThrough) {
  TestProxy p;
  auto& client = p.h2_client();
  // Four stream windows: it only arrives whole if each side's window is
  // given back as the other side takes the bytes.
  const std::string body(1024 * 1024, 'b');
  client.request(grpc_call(), body);
  ASSERT_TRUE(p.run_until([&] { return client.closed; }));
  EXPECT_EQ(p.member.request_bytes, body.size());
  EXPECT_EQ(client.header("grpc-status"), "0");
}

// A client that opened a window far larger than the answer and stopped
// reading: sidemux takes from the member only what its own bounds hold (the
// stream window, the transport's high-water mark, the socket's buffer),
// whatever the client's window would allow. Large DATA frames go out
// without a copy (NO_COPY), which once let one write of the session move a
// stream's whole queue into the transport's batch.
TEST(ProxiedStream, ClientThatStopsReadingHoldsBackTheMember) {
  constexpr size_t kBody = 16 * 1024 * 1024;
  TestProxy p;
  p.member.long_body = kBody;
  auto& client = p.h2_client(2 * kBody);
  client.request(grpc_call(), std::string(5, '\0'));
  ASSERT_TRUE(p.run_until([&] { return !client.body.empty(); }));
  client.end.transport.pause_reading();
  ASSERT_TRUE(unit::run_loop_until_still(p.worker.loop(), [&] { return p.member.long_body_sent; }));
  EXPECT_LT(p.member.long_body_sent, size_t{2 * 1024 * 1024});
  // At most one frame past the high-water mark.
  constexpr size_t kFrame = 9 + 16 * 1024;
  EXPECT_LE(p.accepted[0]->transport().write_buffered(), core::Transport::kWriteHighWater + kFrame);
  // And it all flows once the client reads again.
  client.end.transport.resume_reading();
  ASSERT_TRUE(p.run_until([&] { return client.closed; }));
  EXPECT_EQ(client.body.size(), kBody);
  EXPECT_EQ(client.header("grpc-status"), "0");
}

TEST(ProxiedStream, DeadlineEndsTheStreamWithDeadlineExceeded) {
  TestProxy p;
  p.member.answer = TestMember::Answer::nothing;
  auto& client = p.h2_client();
  client.request(grpc_call("30m"));
  ASSERT_TRUE(p.run_until([&] { return client.closed; }));
  EXPECT_EQ(client.header("grpc-status"), "4");
  EXPECT_EQ(client.header("grpc-message"), "deadline exceeded (grpc-timeout)");
}

TEST(ProxiedStream, RefusedByTheOnlyMemberIsUnavailable) {
  TestProxy p;
  p.member.answer = TestMember::Answer::reset;
  p.member.reset_code = NGHTTP2_REFUSED_STREAM;
  auto& client = p.h2_client();
  client.request(grpc_call());
  ASSERT_TRUE(p.run_until([&] { return client.closed; }));
  // Retried, but the member was tried already: no other to go to.
  EXPECT_EQ(client.header("grpc-status"), "14");
  EXPECT_EQ(p.member.requests, 1);
}

TEST(ProxiedStream, MemberResetIsPassedToTheClient) {
  TestProxy p;
  p.member.answer = TestMember::Answer::reset;
  p.member.reset_code = NGHTTP2_ENHANCE_YOUR_CALM;
  auto& client = p.h2_client();
  client.request(grpc_call());
  ASSERT_TRUE(p.run_until([&] { return client.closed; }));
  EXPECT_EQ(client.close_code, uint32_t{NGHTTP2_ENHANCE_YOUR_CALM});
}

TEST(ProxiedStream, MemberLostInTheMiddleOfAMessageEndsWithUnavailableTrailers) {
  TestProxy p;
  p.member.answer = TestMember::Answer::partial;
  // A message that says 100 bytes and brings 10 of them.
  p.member.body = std::string("\0\0\0\0\x64", 5) + std::string(10, 'm');
  auto& client = p.h2_client();
  client.request(grpc_call());
  ASSERT_TRUE(p.run_until([&] { return client.body.size() == p.member.body.size(); }));
  p.member.drop(*p.member.connections.front());
  ASSERT_TRUE(p.run_until([&] { return client.closed; }));
  // Not a reset (CANCEL reads as CANCELLED, which ends etcd clients' Watches):
  // the status in trailers, over the cut message.
  EXPECT_EQ(client.close_code, uint32_t{NGHTTP2_NO_ERROR});
  EXPECT_EQ(client.header("grpc-status"), "14");
  EXPECT_EQ(client.body, p.member.body);
}

TEST(ProxiedStream, WhatCannotBeGrpcIsAnsweredWithoutAMember) {
  TestProxy p;
  auto& client = p.h2_client();
  core::HeaderList fields = grpc_call();
  for (auto& f : fields)
    if (f.name == "content-type") f.value = "text/plain";
  client.request(fields, "x");
  ASSERT_TRUE(p.run_until([&] { return client.closed; }));
  EXPECT_EQ(client.header(":status"), "415");
  EXPECT_EQ(client.header("grpc-status"), "13");
  EXPECT_EQ(p.member.requests, 0);
}

}  // namespace
}  // namespace sidemux
