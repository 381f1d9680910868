// kind etcd: Status answers judged, one checker's verdict seen by a worker's
// cluster through the board, leader routing, streams ended on a lost leader.
#include <gtest/gtest.h>

#include <vector>

#include "parsers/grpc.h"
#include "proxy/core/metric_names.h"
#include "t/unit/parsers/protobuf_test_bytes.h"
#include "t/unit/support/test_cluster.h"
#include "upstream/cluster.h"
#include "upstream/health_check.h"

namespace sidemux::upstream {
namespace {

using parsers::testing::PbBytes;

constexpr const char* kEtcd =
    "listeners: [{name: client, address: '127.0.0.1:0'}]\n"
    "cluster:\n"
    "  kind: etcd\n"
    "  members: [{name: m1, address: '127.0.0.1:1'}, {name: m2, address: '127.0.0.1:2'},"
    " {name: m3, address: '127.0.0.1:3'}]\n"
    "  health_check: {unhealthy_threshold: 1, healthy_threshold: 1}\n";

// A StatusResponse in gRPC framing: header.member_id, leader, raft_term, errors, isLearner.
std::vector<uint8_t> status(uint64_t member_id, uint64_t leader, std::vector<std::string> errors = {},
                            bool learner = false) {
  PbBytes header;
  header.uint(2, member_id).uint(4, 7);
  PbBytes m;
  m.msg(1, header).str(2, "3.4.23").uint(3, 20480).uint(4, leader).uint(6, 7);
  for (const auto& e : errors) m.str(8, e);
  if (learner) m.uint(10, 1);
  std::vector<uint8_t> out(parsers::grpc::kMessagePrefixSize + m.bytes.size());
  out[4] = static_cast<uint8_t>(m.bytes.size());
  std::copy(m.bytes.begin(), m.bytes.end(), out.begin() + parsers::grpc::kMessagePrefixSize);
  return out;
}

TEST(EtcdJudge, LeaderFollowerNoLeaderLearner) {
  auto leader = HealthCheck::judge_etcd("m1", 200, 0, status(5, 5));
  EXPECT_TRUE(leader.ok);
  ASSERT_TRUE(leader.etcd);
  EXPECT_EQ(leader.etcd->member_id, 5u);
  EXPECT_EQ(leader.etcd->raft_term, 7u);
  EXPECT_EQ(leader.etcd->db_size, 20480);
  EXPECT_TRUE(HealthCheck::judge_etcd("m1", 200, 0, status(5, 6)).ok);

  auto lost = HealthCheck::judge_etcd("m2", 200, 0, status(5, 0, {"etcdserver: no leader"}));
  EXPECT_FALSE(lost.ok);
  EXPECT_TRUE(lost.lost_leader);
  EXPECT_EQ(lost.reason, "member m2 has no leader");
  EXPECT_TRUE(lost.etcd->alarms.empty()) << "no leader is not an alarm";

  auto learner = HealthCheck::judge_etcd("m3", 200, 0, status(5, 6, {}, true));
  EXPECT_FALSE(learner.ok);
  EXPECT_FALSE(learner.lost_leader);
  EXPECT_EQ(learner.reason, "member m3 is a learner");
}

TEST(EtcdJudge, AlarmsDoNotFailTheMember) {
  auto v = HealthCheck::judge_etcd("m1", 200, 0, status(5, 5, {"memberID:5 alarm:NOSPACE "}));
  EXPECT_TRUE(v.ok);
  ASSERT_EQ(v.etcd->alarms.size(), 1u);
  EXPECT_EQ(v.etcd->alarms[0], "memberID:5 alarm:NOSPACE ");
}

TEST(EtcdJudge, BadAnswersFail) {
  EXPECT_FALSE(HealthCheck::judge_etcd("m1", 503, -1, {}).ok);
  EXPECT_EQ(HealthCheck::judge_etcd("m1", 200, 14, {}).reason, "health check: Status grpc-status UNAVAILABLE");
  const std::vector<uint8_t> cut = {0, 0, 0, 0, 9, 0x0a};
  EXPECT_FALSE(HealthCheck::judge_etcd("m1", 200, 0, cut).ok);
  const std::vector<uint8_t> garbage = {0, 0, 0, 0, 2, 0xff, 0xff};
  EXPECT_FALSE(HealthCheck::judge_etcd("m1", 200, 0, garbage).ok);
}

// A worker's cluster over the checker's board, with broadcasts delivered
// straight to it (the server posts them to every worker's loop).
struct Process {
  Process() {
    checker.board.set_broadcast([this](HealthBoard::ClusterJob job) { job(worker); });
  }
  ~Process() { worker.shutdown(); }
  unit::TestCluster checker{kEtcd};
  Cluster worker{checker.test.context, checker.test.config->cluster, checker.board, false};
};

CheckResult result_of(uint64_t id, uint64_t leader) {
  std::vector<std::string> errors;
  if (leader == 0) errors.push_back("etcdserver: no leader");
  return HealthCheck::judge_etcd("m" + std::to_string(id), 200, 0, status(id, leader, errors));
}

TEST(EtcdProcess, WorkersSeeTheCheckersVerdictAndLeader) {
  Process p;
  for (uint64_t id = 1; id <= 3; ++id) p.checker.member(id - 1).on_health_check(result_of(id, 2));
  const auto& wm = p.worker.members();
  for (const auto& m : wm) EXPECT_EQ(m->health(), Health::healthy);
  EXPECT_FALSE(wm[0]->leader());
  EXPECT_TRUE(wm[1]->leader());
  EXPECT_EQ(p.checker.registry.gauge(metrics::kEtcdLeader, {"m2"}).value(), 1);
  EXPECT_EQ(p.checker.registry.gauge(metrics::kMemberUp, {"m2"}).value(), 1);

  // Writes go to the leader; without the hint, to the balancer.
  for (int i = 0; i < 5; ++i) {
    TriedMembers tried;
    EXPECT_EQ(p.worker.pick(tried, Route::leader), wm[1]);
  }
  EXPECT_EQ(p.checker.registry.counter_value(metrics::kEtcdRouted, {"leader"}), 5u);
  // The leader tried already (its pick failed): the balancer takes the retry.
  TriedMembers tried;
  tried.add(wm[1]);
  auto retry = p.worker.pick(tried, Route::leader);
  ASSERT_NE(retry, nullptr);
  EXPECT_NE(retry, wm[1]);
  EXPECT_EQ(p.checker.registry.counter_value(metrics::kEtcdRouted, {"balanced"}), 1u);

  // The leader loses its leadership: no member is leader, writes are balanced.
  p.checker.member(1).on_health_check(result_of(2, 3));
  EXPECT_FALSE(wm[1]->leader());
  TriedMembers fresh;
  EXPECT_NE(p.worker.pick(fresh, Route::leader), nullptr);
  EXPECT_EQ(p.checker.registry.counter_value(metrics::kEtcdRouted, {"balanced"}), 2u);
  EXPECT_EQ(p.checker.registry.counter_value(metrics::kEtcdRouted, {"leader"}), 5u);
}

struct Watcher : MemberWatcher {
  void on_member_lost(std::string_view reason) override { reasons.emplace_back(reason); }
  std::vector<std::string> reasons;
};

TEST(EtcdProcess, LostLeaderEndsWatchedStreamsOnEveryLoop) {
  Process p;
  for (uint64_t id = 1; id <= 3; ++id) p.checker.member(id - 1).on_health_check(result_of(id, 1));
  Watcher on_m2, on_m3, gone;
  p.worker.members()[1]->watch(on_m2);
  p.worker.members()[2]->watch(on_m3);
  p.worker.members()[1]->watch(gone);
  p.worker.members()[1]->unwatch(gone);

  p.checker.member(1).on_health_check(result_of(2, 0));
  EXPECT_EQ(p.worker.members()[1]->health(), Health::unhealthy);
  EXPECT_EQ(on_m2.reasons, std::vector<std::string>{"member m2 has no leader"});
  EXPECT_TRUE(on_m3.reasons.empty());
  EXPECT_TRUE(gone.reasons.empty());
  // Once: a member already down ends nothing more.
  p.checker.member(1).on_health_check(result_of(2, 0));
  EXPECT_EQ(on_m2.reasons.size(), 1u);
}

TEST(EtcdProcess, LeaderLostWhileAlreadyDownStillEndsWatchedStreams) {
  Process p;
  for (uint64_t id = 1; id <= 3; ++id) p.checker.member(id - 1).on_health_check(result_of(id, 1));
  Watcher on_m2;
  p.worker.members()[1]->watch(on_m2);
  // Down first for a check that timed out: its streams go on.
  p.checker.member(1).on_health_check({false, "health check timed out", false, std::nullopt});
  EXPECT_EQ(p.worker.members()[1]->health(), Health::unhealthy);
  EXPECT_TRUE(on_m2.reasons.empty());
  // The next check finds it without a leader: now they end.
  p.checker.member(1).on_health_check(result_of(2, 0));
  EXPECT_EQ(on_m2.reasons, std::vector<std::string>{"member m2 has no leader"});
}

TEST(EtcdProcess, AlarmsFailHealthNotReadiness) {
  Process p;
  p.checker.member(0).on_health_check(
      HealthCheck::judge_etcd("m1", 200, 0, status(1, 1, {"memberID:1 alarm:NOSPACE "})));
  EXPECT_TRUE(p.worker.health().healthy);
  EXPECT_EQ(p.worker.alarms(), "alarm reported by m1: memberID:1 alarm:NOSPACE ");
  p.checker.member(0).on_health_check(result_of(1, 1));
  EXPECT_EQ(p.worker.alarms(), "");
}

}  // namespace
}  // namespace sidemux::upstream
