#include "upstream/etcd_routes.h"

#include <gtest/gtest.h>

namespace sidemux::upstream {
namespace {

TEST(EtcdRoutes, GrpcWriteMethodsGoToTheLeader) {
  for (const char* path : {"/etcdserverpb.KV/Put", "/etcdserverpb.KV/DeleteRange", "/etcdserverpb.KV/Txn",
                           "/etcdserverpb.KV/Compact", "/etcdserverpb.Lease/LeaseGrant",
                           "/etcdserverpb.Lease/LeaseKeepAlive", "/etcdserverpb.Cluster/MemberAdd",
                           "/etcdserverpb.Cluster/MemberRemove", "/etcdserverpb.Cluster/MemberUpdate",
                           "/etcdserverpb.Cluster/MemberPromote", "/etcdserverpb.Auth/Authenticate",
                           "/v3lockpb.Lock/Lock", "/v3lockpb.Lock/Unlock", "/v3electionpb.Election/Campaign",
                           "/v3electionpb.Election/Proclaim", "/v3electionpb.Election/Resign"})
    EXPECT_TRUE(is_leader_route(path)) << path;
}

TEST(EtcdRoutes, ReadsWatchesAndTheRestUseTheBalancer) {
  for (const char* path : {"/etcdserverpb.KV/Range", "/etcdserverpb.Watch/Watch", "/etcdserverpb.Cluster/MemberList",
                           "/etcdserverpb.Maintenance/Status", "/v3electionpb.Election/Leader",
                           "/v3electionpb.Election/Observe", "/grpc.health.v1.Health/Check",
                           "/etcdserverpb.KV/PutX", "/etcdserverpb.KV/Pu", "/etcdserverpb.Leases/x", "",
                           "/v3/kv/range", "/v3/watch", "/v3/cluster/member/list", "/v3/maintenance/status",
                           "/v3/election/leader", "/v3/kv/putx", "/v4/kv/put", "/v3kv/put", "/health"})
    EXPECT_FALSE(is_leader_route(path)) << path;
}

TEST(EtcdRoutes, GatewayPathsUnderEveryVersionPrefix) {
  for (const char* version : {"/v3/", "/v3beta/", "/v3alpha/"}) {
    for (const char* rest : {"kv/put", "kv/deleterange", "kv/txn", "kv/compaction", "lease/grant", "lease/revoke",
                             "kv/lease/revoke", "kv/lease/timetolive", "cluster/member/add", "cluster/member/remove",
                             "cluster/member/update", "cluster/member/promote", "auth/authenticate", "auth/enable",
                             "lock/lock", "election/campaign", "election/proclaim", "election/resign"}) {
      std::string path = std::string(version) + rest;
      EXPECT_TRUE(is_leader_route(path)) << path;
      EXPECT_TRUE(is_leader_route(path + "?x=1")) << path;
    }
  }
}

TEST(EtcdRoutes, LeaderChangeErrors) {
  EXPECT_TRUE(is_leader_change_error(9, "etcdserver: not leader"));
  EXPECT_TRUE(is_leader_change_error(14, "etcdserver: leader changed"));
  EXPECT_FALSE(is_leader_change_error(0, "etcdserver: not leader"));
  EXPECT_FALSE(is_leader_change_error(14, "etcdserver: not leader"));
  EXPECT_FALSE(is_leader_change_error(9, "etcdserver: leader changed"));
  EXPECT_FALSE(is_leader_change_error(14, "etcdserver: no leader"));
  EXPECT_FALSE(is_leader_change_error(14, ""));
}

TEST(EtcdRoutes, GatewayLeaderChangeIsTheErrorsStatusAndItsJson) {
  EXPECT_TRUE(is_gateway_leader_change(
      412, R"({"error":"etcdserver: not leader","message":"etcdserver: not leader","code":9})"));
  EXPECT_TRUE(is_gateway_leader_change(503, R"({"error": "etcdserver: leader changed", "code": 14})"));
  EXPECT_FALSE(is_gateway_leader_change(200, R"({"error":"etcdserver: not leader","code":9})"));
  EXPECT_FALSE(is_gateway_leader_change(503, R"({"error":"etcdserver: not leader","code":9})"));
  EXPECT_FALSE(is_gateway_leader_change(412, R"({"error":"etcdserver: not leader yet","code":9})"));
  EXPECT_FALSE(is_gateway_leader_change(412, R"({"error":"etcdserver: not leader)"));  // cut short
  EXPECT_FALSE(is_gateway_leader_change(503, R"({"error":"etcdserver: no leader","code":14})"));
  EXPECT_FALSE(is_gateway_leader_change(412, ""));
}

TEST(EtcdRoutes, DroppedProposals) {
  EXPECT_TRUE(is_dropped_proposal(2, "raft proposal dropped"));
  EXPECT_FALSE(is_dropped_proposal(14, "raft proposal dropped"));
  EXPECT_FALSE(is_dropped_proposal(2, "etcdserver: request timed out"));
  EXPECT_FALSE(is_dropped_proposal(2, ""));
}

}  // namespace
}  // namespace sidemux::upstream
