#include "upstream/upstream_session.h"

#include <gtest/gtest.h>

#include "proxy/core/header_list.h"
#include "t/unit/support/test_member.h"
#include "upstream/pool.h"

namespace sidemux::upstream {
namespace {

using unit::ClusterWithMember;
using unit::RecordingHandler;
using unit::TestMember;
using State = UpstreamSession::State;
using Close = StreamHandler::Close;

TEST(UpstreamSession, ReadyOnlyOnceTheMembersSettingsArrive) {
  RecordingHandler h;
  ClusterWithMember c("connect_timeout: 5s");
  c.member.hold_new_connections = true;
  UpstreamSession* s = c.pool().session_for_new_stream();
  ASSERT_NE(s, nullptr);
  // Submitted while connecting: it waits in nghttp2 until the member is up.
  ASSERT_GT(c.submit(*s, h), 0);
  // TCP is up (the member accepted) but no SETTINGS came: still connecting.
  ASSERT_TRUE(c.run_until([&] { return !c.member.connections.empty(); }));
  c.run_until([] { return false; }, 50);
  EXPECT_EQ(s->state(), State::connecting);
  EXPECT_EQ(c.member.requests, 0);

  c.member.release(*c.member.connections[0]);
  ASSERT_TRUE(c.run_until([&] { return h.closed; }));
  EXPECT_EQ(s->state(), State::ready);
  EXPECT_EQ(h.close_kind, Close::done);
  EXPECT_EQ(core::find_header(h.headers, ":status"), "200");
  EXPECT_EQ(c.member.requests, 1);
}

TEST(UpstreamSession, NoSettingsInTimeLosesStreamsWhoseHeadersWentOut) {
  RecordingHandler h;
  ClusterWithMember c("connect_timeout: 100ms");
  c.member.hold_new_connections = true;
  UpstreamSession* s = c.pool().session_for_new_stream();
  ASSERT_GT(c.submit(*s, h), 0);
  ASSERT_TRUE(c.run_until([&] { return h.closed; }));
  // TCP was up, so the HEADERS went to the member's socket: it may act on
  // the request although it never said SETTINGS. Never replayed.
  EXPECT_EQ(h.close_kind, Close::lost);
  EXPECT_EQ(h.reason, "connect: no HTTP/2 SETTINGS from the member in time");
  EXPECT_EQ(c.pool().last_failure(), h.reason);
}

TEST(UpstreamSession, RefusedStreamIsRetryableOtherResetsAreNot) {
  RecordingHandler refused;
  RecordingHandler rejected;
  RecordingHandler reset;
  ClusterWithMember c;
  c.member.answer = TestMember::Answer::reset;
  UpstreamSession* s = c.pool().session_for_new_stream();

  c.member.reset_code = NGHTTP2_REFUSED_STREAM;
  ASSERT_GT(c.submit(*s, refused), 0);
  ASSERT_TRUE(c.run_until([&] { return refused.closed; }));
  EXPECT_EQ(refused.close_kind, Close::refused);
  EXPECT_EQ(refused.close_code, uint32_t{NGHTTP2_REFUSED_STREAM});

  // A reset that blames the request (grpc-go's answer to a malformed one)
  // is not the member's failure; INTERNAL_ERROR is.
  c.member.reset_code = NGHTTP2_PROTOCOL_ERROR;
  ASSERT_GT(c.submit(*s, rejected), 0);
  ASSERT_TRUE(c.run_until([&] { return rejected.closed; }));
  EXPECT_EQ(rejected.close_kind, Close::rejected);
  EXPECT_EQ(rejected.close_code, uint32_t{NGHTTP2_PROTOCOL_ERROR});

  c.member.reset_code = NGHTTP2_INTERNAL_ERROR;
  ASSERT_GT(c.submit(*s, reset), 0);
  ASSERT_TRUE(c.run_until([&] { return reset.closed; }));
  EXPECT_EQ(reset.close_kind, Close::reset);
  EXPECT_EQ(reset.close_code, uint32_t{NGHTTP2_INTERNAL_ERROR});
  // A stream reset leaves the connection up.
  EXPECT_EQ(s->state(), State::ready);
}

TEST(UpstreamSession, GoawayRefusesStreamsAboveItAndDrainsTheConnection) {
  RecordingHandler h;
  ClusterWithMember c;
  c.member.answer = TestMember::Answer::goaway;
  UpstreamSession* s = c.pool().session_for_new_stream();
  ASSERT_GT(c.submit(*s, h), 0);
  ASSERT_TRUE(c.run_until([&] { return h.closed; }));
  // GOAWAY named stream 0: the request was not processed.
  EXPECT_EQ(h.close_kind, Close::refused);
  // No new streams on it (it closes, having none left); the next stream
  // gets a new connection.
  EXPECT_NE(c.pool().session_for_new_stream(), nullptr);
  ASSERT_TRUE(c.run_until([&] { return c.member.connections.size() == 2; }));
}

TEST(UpstreamSession, QuietConnectionGetsOnePingAndStaysUp) {
  RecordingHandler h;
  ClusterWithMember c("", "limits: {keepalive_interval: 50ms, keepalive_timeout: 200ms}\n");
  c.member.answer = TestMember::Answer::nothing;
  UpstreamSession* s = c.pool().session_for_new_stream();
  ASSERT_TRUE(c.run_until([&] { return s->state() == State::ready; }));
  // No PING without a stream open (grpc-go counts one as a strike).
  c.run_until([] { return false; }, 200);
  EXPECT_EQ(c.member.pings, 0);
  ASSERT_GT(c.submit(*s, h), 0);
  ASSERT_TRUE(c.run_until([&] { return c.member.pings >= 1; }));
  // One PING per quiet spell: nothing but its ACK came back, so no second
  // PING follows (gRPC servers call that abuse).
  c.run_until([] { return false; }, 300);
  EXPECT_EQ(c.member.pings, 1);
  EXPECT_EQ(s->state(), State::ready);
}

TEST(UpstreamSession, UnansweredPingLosesTheConnectionAndItsStreams) {
  RecordingHandler h;
  ClusterWithMember c("", "limits: {keepalive_interval: 50ms, keepalive_timeout: 100ms}\n");
  c.member.answer = TestMember::Answer::nothing;
  UpstreamSession* s = c.pool().session_for_new_stream();
  ASSERT_GT(c.submit(*s, h), 0);
  ASSERT_TRUE(c.run_until([&] { return c.member.requests == 1; }));
  c.member.freeze(*c.member.connections[0]);
  ASSERT_TRUE(c.run_until([&] { return h.closed; }));
  // The request went out: lost, not refused, so it is not replayed.
  EXPECT_EQ(h.close_kind, Close::lost);
  EXPECT_EQ(h.reason, "member stopped answering (PING timeout)");
}

TEST(UpstreamSession, MemberClosingTheConnectionLosesOpenStreams) {
  RecordingHandler h;
  ClusterWithMember c;
  c.member.answer = TestMember::Answer::nothing;
  UpstreamSession* s = c.pool().session_for_new_stream();
  ASSERT_GT(c.submit(*s, h), 0);
  ASSERT_TRUE(c.run_until([&] { return c.member.requests == 1; }));
  c.member.drop(*c.member.connections[0]);
  ASSERT_TRUE(c.run_until([&] { return h.closed; }));
  EXPECT_EQ(h.close_kind, Close::lost);
  EXPECT_NE(h.reason.find("connection lost"), std::string::npos) << h.reason;
}

}  // namespace
}  // namespace sidemux::upstream
