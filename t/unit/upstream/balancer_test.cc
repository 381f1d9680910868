#include "upstream/balancer.h"

#include <gtest/gtest.h>

#include <map>

#include "t/unit/support/test_cluster.h"
#include "upstream/cluster.h"

namespace sidemux::upstream {
namespace {

constexpr const char* kThreeMembers =
    "listeners: [{name: client, address: '127.0.0.1:0'}]\n"
    "cluster:\n  members: [{name: a, address: '127.0.0.1:1'}, {name: b, address: '127.0.0.1:2'},"
    " {name: c, address: '127.0.0.1:3'}]\n";

class BalancerTest : public ::testing::Test {
 protected:
  Member& member(size_t i) { return w.member(i); }

  // `skip`: indexes of members already tried.
  std::map<std::string, int> pick_many(Balancer& b, int n, std::initializer_list<size_t> skip = {}) {
    TriedMembers tried;
    for (size_t i : skip) tried.add(w.cluster().members()[i]);
    std::map<std::string, int> counts;
    for (int i = 0; i < n; ++i) {
      size_t k = b.pick(w.cluster().members(), tried);
      counts[k == Balancer::kNone ? "none" : w.cluster().members()[k]->name()]++;
    }
    return counts;
  }

  unit::TestCluster w{kThreeMembers};
};

TEST_F(BalancerTest, RoundRobinCyclesThroughEligibleMembers) {
  Balancer b(conf::Balance::round_robin);
  auto counts = pick_many(b, 300);
  EXPECT_EQ(counts["a"], 100);
  EXPECT_EQ(counts["b"], 100);
  EXPECT_EQ(counts["c"], 100);
}

TEST_F(BalancerTest, UnhealthyAndTriedMembersAreSkipped) {
  Balancer b(conf::Balance::round_robin);
  member(1).set_health(Health::unhealthy, "connect: refused");
  auto counts = pick_many(b, 100, /*skip=*/{0});
  EXPECT_EQ(counts["c"], 100);
  // Nothing left: the caller answers UNAVAILABLE.
  EXPECT_EQ(pick_many(b, 1, {0, 2})["none"], 1);
}

TEST_F(BalancerTest, LeastRequestPrefersTheLessLoadedOfTwo) {
  Balancer b(conf::Balance::least_request, 42);
  for (int i = 0; i < 10; ++i) member(0).stream_started();
  for (int i = 0; i < 5; ++i) member(1).stream_started();
  // c has no streams: it wins every pair it is in (2 of 3 pairs), a never
  // wins a pair, b wins the pair (a, b).
  auto counts = pick_many(b, 3000);
  EXPECT_EQ(counts["a"], 0);
  EXPECT_GT(counts["c"], 1700);
  EXPECT_GT(counts["b"], 700);
  for (int i = 0; i < 10; ++i) member(0).stream_ended();
  for (int i = 0; i < 5; ++i) member(1).stream_ended();
}

TEST_F(BalancerTest, LeastRequestSpreadsEvenLoad) {
  Balancer b(conf::Balance::least_request, 7);
  auto counts = pick_many(b, 3000);
  for (const char* name : {"a", "b", "c"}) {
    EXPECT_GT(counts[name], 800) << name;
    EXPECT_LT(counts[name], 1200) << name;
  }
}

TEST_F(BalancerTest, SingleEligibleMemberIsPicked) {
  Balancer b(conf::Balance::least_request);
  member(0).set_health(Health::unhealthy, "x");
  member(2).set_health(Health::unhealthy, "x");
  EXPECT_EQ(pick_many(b, 10)["b"], 10);
}

}  // namespace
}  // namespace sidemux::upstream
