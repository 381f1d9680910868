#include <gtest/gtest.h>

#include "t/unit/support/test_cluster.h"
#include "upstream/cluster.h"
#include "upstream/health_check.h"

namespace sidemux::upstream {
namespace {

constexpr const char* kConfig =
    "listeners: [{name: client, address: '127.0.0.1:0'}]\n"
    "cluster:\n"
    "  members: [{name: a, address: '127.0.0.1:1'}, {name: b, address: '127.0.0.1:2'}]\n"
    "  health_check: {unhealthy_threshold: 3, healthy_threshold: 2}\n"
    "  outlier: {consecutive_failures: 3, ejection_time: 1h}\n";

Member* pick_any(Cluster& c) {
  TriedMembers tried;
  return c.pick(tried).get();
}

TEST(HealthCheckJudge, ServingIsHealthy) {
  const uint8_t serving[] = {0, 0, 0, 0, 2, 0x08, 0x01};
  EXPECT_TRUE(HealthCheck::judge(200, 0, serving).ok);
}

TEST(HealthCheckJudge, NotServingAndErrorsAreUnhealthy) {
  const uint8_t not_serving[] = {0, 0, 0, 0, 2, 0x08, 0x02};
  auto v = HealthCheck::judge(200, 0, not_serving);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.reason, "health check: member is not SERVING");
  // An empty message is status UNKNOWN (0), not SERVING.
  const uint8_t empty[] = {0, 0, 0, 0, 0};
  EXPECT_FALSE(HealthCheck::judge(200, 0, empty).ok);
  EXPECT_EQ(HealthCheck::judge(200, 14, {}).reason, "health check: grpc-status UNAVAILABLE");
  EXPECT_EQ(HealthCheck::judge(503, -1, {}).reason, "health check: HTTP status 503");
  EXPECT_FALSE(HealthCheck::judge(200, -1, {}).ok);
}

TEST(HealthCheckJudge, TheMessageIsDecodedNotMatchedByOffset) {
  // Another field first, then status SERVING: a valid encoding.
  const uint8_t other_first[] = {0, 0, 0, 0, 4, 0x10, 0x07, 0x08, 0x01};
  EXPECT_TRUE(HealthCheck::judge(200, 0, other_first).ok);
  // SERVING's bytes, but the prefix says the message is longer than the body.
  const uint8_t cut[] = {0, 0, 0, 0, 9, 0x08, 0x01};
  EXPECT_FALSE(HealthCheck::judge(200, 0, cut).ok);
  // SERVING followed by bytes past the one message.
  const uint8_t trailing[] = {0, 0, 0, 0, 2, 0x08, 0x01, 0xff};
  EXPECT_FALSE(HealthCheck::judge(200, 0, trailing).ok);
}

TEST(HealthCheckJudge, MemberWithoutHealthServiceCountsAsHealthy) {
  EXPECT_TRUE(HealthCheck::judge(200, 12, {}).ok);
}

TEST(MemberHealth, FirstResultCountsAtOnceThenThresholds) {
  unit::TestCluster w(kConfig);
  Member& a = w.member(0);
  Member& b = w.member(1);
  EXPECT_EQ(a.health(), Health::unknown);
  EXPECT_TRUE(a.eligible());  // unknown members may take streams

  a.on_health_check(true, "");
  b.on_health_check(true, "");
  EXPECT_EQ(a.health(), Health::healthy);

  a.on_health_check(false, "x");
  a.on_health_check(false, "x");
  EXPECT_EQ(a.health(), Health::healthy) << "below unhealthy_threshold";
  a.on_health_check(false, "health check timed out");
  EXPECT_EQ(a.health(), Health::unhealthy);
  EXPECT_EQ(a.health_reason(), "health check timed out");
  EXPECT_FALSE(a.eligible());

  // b is healthy, so a needs healthy_threshold passes in a row.
  a.on_health_check(true, "");
  EXPECT_EQ(a.health(), Health::unhealthy);
  a.on_health_check(false, "x");
  a.on_health_check(true, "");
  EXPECT_EQ(a.health(), Health::unhealthy) << "a failure resets the count";
  a.on_health_check(true, "");
  EXPECT_EQ(a.health(), Health::healthy);
}

TEST(MemberHealth, OnePassIsEnoughWhenNoMemberIsHealthy) {
  unit::TestCluster w(kConfig);
  Member& a = w.member(0);
  Member& b = w.member(1);
  a.on_health_check(false, "down");
  b.on_health_check(false, "down");
  EXPECT_FALSE(w.cluster().any_healthy());
  EXPECT_EQ(pick_any(w.cluster()), nullptr) << "every member down: fail fast";
  b.on_health_check(true, "");
  EXPECT_EQ(b.health(), Health::healthy);
  EXPECT_EQ(pick_any(w.cluster()), &b);
}

TEST(MemberOutlier, ConsecutiveFailuresEject) {
  unit::TestCluster w(kConfig);
  Member& a = w.member(0);
  a.record_failure("reset");
  a.record_failure("reset");
  a.record_success();  // a success resets the run
  a.record_failure("reset");
  a.record_failure("reset");
  EXPECT_FALSE(a.ejected());
  a.record_failure("connect: connection refused");
  EXPECT_TRUE(a.ejected());
  EXPECT_FALSE(a.eligible());
  EXPECT_EQ(pick_any(w.cluster()), &w.member(1));
}

void fail(Member& m, int n) {
  for (int i = 0; i < n; ++i) m.record_failure("member reset the stream");
}

TEST(MemberOutlier, AtMostHalfTheMembersAreEjected) {
  unit::TestCluster w(kConfig);  // two members, consecutive_failures 3
  fail(w.member(0), 3);
  EXPECT_TRUE(w.member(0).ejected());
  fail(w.member(1), 30);
  EXPECT_FALSE(w.member(1).ejected()) << "with two members, at most one is ejected";
  EXPECT_EQ(pick_any(w.cluster()), &w.member(1));
}

TEST(MemberOutlier, TheOnlyMemberIsNeverEjected) {
  unit::TestCluster w(
      "listeners: [{name: client, address: '127.0.0.1:0'}]\n"
      "cluster:\n  members: [{name: a, address: '127.0.0.1:1'}]\n"
      "  outlier: {consecutive_failures: 2, ejection_time: 1h}\n");
  fail(w.member(0), 20);
  EXPECT_FALSE(w.member(0).ejected());
  EXPECT_EQ(pick_any(w.cluster()), &w.member(0));
}

TEST(MemberOutlier, NeverTheLastEligibleMember) {
  unit::TestCluster w(
      "listeners: [{name: client, address: '127.0.0.1:0'}]\n"
      "cluster:\n  members: [{name: a, address: '127.0.0.1:1'}, {name: b, address: '127.0.0.1:2'},"
      " {name: c, address: '127.0.0.1:3'}, {name: d, address: '127.0.0.1:4'}]\n"
      "  outlier: {consecutive_failures: 2, ejection_time: 1h}\n");
  w.member(2).set_health(Health::unhealthy, "down");
  w.member(3).set_health(Health::unhealthy, "down");
  fail(w.member(0), 2);
  EXPECT_TRUE(w.member(0).ejected()) << "one of four is within half";
  fail(w.member(1), 2);
  EXPECT_FALSE(w.member(1).ejected()) << "two of four would be half, but b is the last eligible member";
  EXPECT_EQ(pick_any(w.cluster()), &w.member(1));
}

TEST(ClusterPick, TriedMembersAreKnownByIdentityAcrossAReorderingReload) {
  constexpr const char* kBA =
      "listeners: [{name: client, address: '127.0.0.1:0'}]\n"
      "cluster:\n  members: [{name: b, address: '127.0.0.1:2'}, {name: a, address: '127.0.0.1:1'}]\n";
  unit::TestCluster w(kConfig);
  auto ab = unit::load_config(kConfig);
  auto ba = unit::load_config(kBA);
  for (int i = 0; i < 20; ++i) {
    TriedMembers tried;
    std::shared_ptr<Member> first = w.cluster().pick(tried);
    ASSERT_TRUE(first);
    // A reload between two attempts of one stream reorders the members.
    w.cluster().apply((i % 2 == 0 ? ba : ab)->cluster);
    std::shared_ptr<Member> second = w.cluster().pick(tried);
    ASSERT_TRUE(second);
    EXPECT_NE(second, first) << "the retry went back to the member it already tried";
    EXPECT_EQ(w.cluster().pick(tried), nullptr) << "both tried";
  }
}

}  // namespace
}  // namespace sidemux::upstream
