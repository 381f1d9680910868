#include "upstream/cluster.h"

#include <gtest/gtest.h>

#include "proxy/core/metric_names.h"
#include "t/unit/support/test_cluster.h"

namespace sidemux::upstream {
namespace {

constexpr const char* kAB =
    "listeners: [{name: client, address: '127.0.0.1:0'}]\n"
    "cluster:\n  members: [{name: a, address: '127.0.0.1:1'}, {name: b, address: '127.0.0.1:2'}]\n";

std::vector<std::string> names(const Cluster& c) {
  std::vector<std::string> out;
  for (const auto& m : c.members()) out.push_back(m->name());
  return out;
}

TEST(ClusterReload, KeepsUnchangedMembersStartsNewOnesRetiresRemovedOnes) {
  unit::TestCluster w(kAB);
  std::shared_ptr<Member> a = w.cluster().members()[0];
  std::shared_ptr<Member> b = w.cluster().members()[1];
  a->on_health_check(true, "");

  auto next = unit::load_config(
      "listeners: [{name: client, address: '127.0.0.1:0'}]\n"
      "cluster:\n  balance: round_robin\n"
      "  members: [{name: c, address: '127.0.0.1:3'}, {name: a, address: '127.0.0.1:1'},"
      " {name: b, address: '127.0.0.1:9'}]\n");
  w.cluster().apply(next->cluster);

  EXPECT_EQ(names(w.cluster()), (std::vector<std::string>{"c", "a", "b"}));
  // a kept its object, hence its connections and health.
  EXPECT_EQ(w.cluster().members()[1], a);
  EXPECT_EQ(a->health(), Health::healthy);
  // b moved: a new member under the old name; the old one is retired and
  // still alive for the streams that hold it.
  EXPECT_NE(w.cluster().members()[2], b);
  EXPECT_EQ(w.cluster().members()[2]->address().port, 9);
  EXPECT_EQ(b->address().port, 2);

  // The retired member is never picked.
  for (int i = 0; i < 9; ++i) {
    TriedMembers tried;
    EXPECT_NE(w.cluster().pick(tried), b);
  }
  EXPECT_EQ(w.registry.gauge(metrics::kMemberUp, {"b"}).value(), 0);
}

TEST(ClusterReload, NewKindMakesEveryMemberAnew) {
  unit::TestCluster w(kAB);
  std::shared_ptr<Member> a = w.cluster().members()[0];
  auto same_members_as_etcd = unit::load_config(
      "listeners: [{name: client, address: '127.0.0.1:0'}]\n"
      "cluster:\n  kind: etcd\n"
      "  members: [{name: a, address: '127.0.0.1:1'}, {name: b, address: '127.0.0.1:2'}]\n");
  w.cluster().apply(same_members_as_etcd->cluster);
  // Same name and address, but its health check and gauges were grpc's.
  EXPECT_EQ(names(w.cluster()), (std::vector<std::string>{"a", "b"}));
  EXPECT_NE(w.cluster().members()[0], a);
  std::shared_ptr<Member> etcd_a = w.cluster().members()[0];
  w.cluster().apply(same_members_as_etcd->cluster);
  EXPECT_EQ(w.cluster().members()[0], etcd_a);
}

TEST(ClusterAttempts, OnePickAndItsRetriesNeverTheSameMemberTwice) {
  unit::TestCluster w(
      "listeners: [{name: client, address: '127.0.0.1:0'}]\n"
      "cluster:\n  retry: {attempts: 1}\n"
      "  members: [{name: a, address: '127.0.0.1:1'}, {name: b, address: '127.0.0.1:2'},"
      " {name: c, address: '127.0.0.1:3'}]\n");
  Attempts attempts(w.test.config->cluster, "/sidemuxtest.Echo/Unary");
  std::shared_ptr<Member> first = attempts.next(w.cluster());
  std::shared_ptr<Member> retry = attempts.next(w.cluster());
  ASSERT_NE(first, nullptr);
  ASSERT_NE(retry, nullptr);
  EXPECT_NE(first, retry);
  // retry.attempts: 1 allows one retry, whatever members are left.
  EXPECT_EQ(attempts.next(w.cluster()), nullptr);
  // Nothing to try at all by default.
  EXPECT_EQ(Attempts().next(w.cluster()), nullptr);
}

}  // namespace
}  // namespace sidemux::upstream
