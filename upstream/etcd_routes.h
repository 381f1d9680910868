// Which requests etcd's leader should take (cluster.etcd.leader_routing):
// the SPEC's write methods and their grpc-gateway paths. One function for
// gRPC and HTTP/1 alike, so the two lists cannot drift apart.
#pragma once

#include <string_view>

namespace sidemux::upstream {

// `path` is a gRPC :path or an HTTP/1 request target (a query is ignored).
bool is_leader_route(std::string_view path);

// etcd's answer when the member it reached no longer has the leader it
// thought: "etcdserver: not leader" or "etcdserver: leader changed", with
// grpc-status UNAVAILABLE. `grpc_message` as it came, percent-encoded.
bool is_leader_change_error(int grpc_status, std::string_view grpc_message);

// etcd's answer when raft refused the proposal outright (a leadership
// transfer under way, or no leader yet): raft's ErrProposalDropped, which
// etcd 3.4 passes on as grpc-status UNKNOWN. Nothing was logged, let alone
// applied, so the request may go to another member as if refused.
bool is_dropped_proposal(int grpc_status, std::string_view grpc_message);
inline constexpr std::string_view kDroppedProposal = "raft proposal dropped";

}  // namespace sidemux::upstream
