// Which requests etcd's leader should take (cluster.etcd.leader_routing):
// the SPEC's write methods and their grpc-gateway paths. One function for
// gRPC and HTTP/1 alike, so the two lists cannot drift apart.
#pragma once

#include <string_view>

namespace sidemux::upstream {

// `path` is a gRPC :path or an HTTP/1 request target (a query is ignored).
bool is_leader_route(std::string_view path);

// etcd's answer when the member it reached is not, or no longer, where
// the leader is: "etcdserver: not leader" with grpc-status
// FAILED_PRECONDITION, or "etcdserver: leader changed" with UNAVAILABLE
// (etcd's rpctypes, 3.4 and 3.5). `grpc_message` as it came,
// percent-encoded.
bool is_leader_change_error(int grpc_status, std::string_view grpc_message);

// The same answers through etcd's grpc-gateway: the HTTP status of their
// gRPC code (412, 503) and a JSON body that names the error, as etcd 3.4
// answers a MoveLeader sent to a follower:
// {"error":"etcdserver: not leader","message":"etcdserver: not leader","code":9}.
// `body_start` is what came of the body, the start of it at least.
bool is_gateway_leader_change(int http_status, std::string_view body_start);
// Enough of a gateway error's body for is_gateway_leader_change.
inline constexpr size_t kGatewayErrorPeek = 256;

// etcd's answer when raft refused the proposal outright (a leadership
// transfer under way, or no leader yet): raft's ErrProposalDropped, which
// etcd 3.4 passes on as grpc-status UNKNOWN. Nothing was logged, let alone
// applied, so the request may go to another member as if refused.
bool is_dropped_proposal(int grpc_status, std::string_view grpc_message);
inline constexpr std::string_view kDroppedProposal = "raft proposal dropped";

}  // namespace sidemux::upstream
