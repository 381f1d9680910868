#include "upstream/pool.h"

#include <gtest/gtest.h>

#include "t/unit/support/test_member.h"
#include "upstream/member.h"

namespace sidemux::upstream {
namespace {

using unit::ClusterWithMember;
using unit::RecordingHandler;
using unit::TestMember;
using State = UpstreamSession::State;

TEST(Pool, StreamsShareAConnectionUpToItsLimitThenANewOneOpens) {
  RecordingHandler h1, h2, h3;
  ClusterWithMember c("max_streams_per_connection: 2");
  c.member.answer = TestMember::Answer::nothing;  // streams stay open
  Member& m = c.cluster.member(0);
  UpstreamSession* first = c.pool().session_for_new_stream();
  ASSERT_GT(c.submit(*first, h1), 0);
  // Still connecting, with room: the same connection takes the next stream.
  EXPECT_EQ(c.pool().session_for_new_stream(), first);
  ASSERT_GT(c.submit(*first, h2), 0);
  EXPECT_FALSE(first->has_capacity());
  UpstreamSession* second = c.pool().session_for_new_stream();
  ASSERT_NE(second, nullptr);
  EXPECT_NE(second, first);
  ASSERT_GT(c.submit(*second, h3), 0);
  EXPECT_EQ(m.connections_gauge().value(), 2);
  ASSERT_TRUE(c.run_until([&] { return c.member.requests == 3; }));
  EXPECT_EQ(first->state(), State::ready);
  EXPECT_EQ(second->state(), State::ready);
  EXPECT_EQ(first->active_streams(), 2u);
}

TEST(Pool, TheMembersStreamLimitCapsAConnectionToo) {
  RecordingHandler h1;
  ClusterWithMember c("max_streams_per_connection: 100");
  c.member.max_concurrent_streams = 1;
  c.member.answer = TestMember::Answer::nothing;
  UpstreamSession* first = c.pool().session_for_new_stream();
  ASSERT_TRUE(c.run_until([&] { return first->state() == State::ready; }));
  ASSERT_GT(c.submit(*first, h1), 0);
  // SETTINGS said one stream per connection.
  UpstreamSession* second = c.pool().session_for_new_stream();
  ASSERT_NE(second, nullptr);
  EXPECT_NE(second, first);
}

TEST(Pool, DrainingTakesNoStreamsAndClosesEachConnectionAfterItsLast) {
  RecordingHandler h;
  ClusterWithMember c;
  c.member.answer = TestMember::Answer::nothing;
  Member& m = c.cluster.member(0);
  UpstreamSession* busy = c.pool().session_for_new_stream();
  int32_t id = c.submit(*busy, h);
  ASSERT_GT(id, 0);
  ASSERT_TRUE(c.run_until([&] { return c.member.requests == 1; }));

  c.pool().drain();  // as Member::retire() does
  EXPECT_EQ(busy->state(), State::draining);
  EXPECT_EQ(c.pool().session_for_new_stream(), nullptr);
  EXPECT_FALSE(c.pool().empty());
  // The open stream keeps its connection until it ends.
  c.run_until([] { return false; }, 50);
  EXPECT_FALSE(h.closed);
  EXPECT_EQ(m.connections_gauge().value(), 1);

  busy->reset(id, NGHTTP2_CANCEL);  // the stream ends: the connection goes
  ASSERT_TRUE(c.run_until([&] { return c.pool().empty(); }));
  EXPECT_EQ(m.connections_gauge().value(), 0);
}

TEST(Pool, ShutdownClosesEveryConnectionAndLosesTheirStreams) {
  RecordingHandler h;
  ClusterWithMember c;
  c.member.answer = TestMember::Answer::nothing;
  UpstreamSession* s = c.pool().session_for_new_stream();
  ASSERT_GT(c.submit(*s, h), 0);
  ASSERT_TRUE(c.run_until([&] { return c.member.requests == 1; }));
  c.pool().shutdown();
  EXPECT_TRUE(h.closed);
  EXPECT_EQ(h.close_kind, StreamHandler::Close::lost);
  ASSERT_TRUE(c.run_until([&] { return c.pool().empty(); }));
}

TEST(Pool, AConnectFailureIsTheMembersLastFailure) {
  RecordingHandler h;
  ClusterWithMember c("connect_timeout: 2s");
  // Nothing listens there any more.
  c.member.close();
  c.run_until([] { return false; }, 20);
  // libuv reports even an immediate refusal in the connect callback.
  UpstreamSession* s = c.pool().session_for_new_stream();
  ASSERT_NE(s, nullptr);
  ASSERT_GT(c.submit(*s, h), 0);
  ASSERT_TRUE(c.run_until([&] { return c.pool().empty(); }));
  EXPECT_NE(c.pool().last_failure().find("connect: connection refused"), std::string::npos) << c.pool().last_failure();
  EXPECT_EQ(h.close_kind, StreamHandler::Close::refused);
}

}  // namespace
}  // namespace sidemux::upstream
