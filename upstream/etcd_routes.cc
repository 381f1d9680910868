#include "upstream/etcd_routes.h"

#include <array>

namespace sidemux::upstream {

namespace {

struct Rule {
  std::string_view text;
  bool prefix;  // else the whole path
};

// gRPC methods (etcd 3.4's rpc.proto, v3lock.proto, v3election.proto).
constexpr std::array<Rule, 14> kGrpc = {{
    {"/etcdserverpb.KV/Put", false},
    {"/etcdserverpb.KV/DeleteRange", false},
    {"/etcdserverpb.KV/Txn", false},
    {"/etcdserverpb.KV/Compact", false},
    {"/etcdserverpb.Lease/", true},
    {"/etcdserverpb.Cluster/MemberAdd", false},
    {"/etcdserverpb.Cluster/MemberRemove", false},
    {"/etcdserverpb.Cluster/MemberUpdate", false},
    {"/etcdserverpb.Cluster/MemberPromote", false},
    {"/etcdserverpb.Auth/", true},
    {"/v3lockpb.Lock/", true},
    {"/v3electionpb.Election/Campaign", false},
    {"/v3electionpb.Election/Proclaim", false},
    {"/v3electionpb.Election/Resign", false},
}};

// grpc-gateway paths, after the /v3/ (or /v3beta/, /v3alpha/) prefix.
constexpr std::array<Rule, 15> kGateway = {{
    {"kv/put", false},
    {"kv/deleterange", false},
    {"kv/txn", false},
    {"kv/compaction", false},
    {"lease/", true},
    {"kv/lease/", true},
    {"cluster/member/add", false},
    {"cluster/member/remove", false},
    {"cluster/member/update", false},
    {"cluster/member/promote", false},
    {"auth/", true},
    {"lock/", true},
    {"election/campaign", false},
    {"election/proclaim", false},
    {"election/resign", false},
}};

// Quoted, as a JSON string value holds them; the messages are within.
constexpr std::string_view kNotLeaderJson = R"("etcdserver: not leader")";
constexpr std::string_view kLeaderChangedJson = R"("etcdserver: leader changed")";
constexpr std::string_view unquoted(std::string_view json) { return json.substr(1, json.size() - 2); }
constexpr std::string_view kNotLeader = unquoted(kNotLeaderJson);
constexpr std::string_view kLeaderChanged = unquoted(kLeaderChangedJson);
constexpr int kFailedPrecondition = 9;
constexpr int kUnavailable = 14;

template <size_t N>
bool matches(const std::array<Rule, N>& rules, std::string_view path) {
  for (const Rule& r : rules)
    if (r.prefix ? path.starts_with(r.text) : path == r.text) return true;
  return false;
}

}  // namespace

bool is_leader_route(std::string_view path) {
  path = path.substr(0, path.find_first_of("?#"));
  if (matches(kGrpc, path)) return true;
  for (std::string_view version : {"/v3/", "/v3beta/", "/v3alpha/"}) {
    if (!path.starts_with(version)) continue;
    std::string_view rest = path.substr(version.size());
    return matches(kGateway, rest);
  }
  return false;
}

bool is_leader_change_error(int grpc_status, std::string_view grpc_message) {
  return (grpc_status == kFailedPrecondition && grpc_message == kNotLeader) ||
         (grpc_status == kUnavailable && grpc_message == kLeaderChanged);
}

bool is_gateway_leader_change(int http_status, std::string_view body_start) {
  // The message as a whole JSON string, quotes included, not a part of one.
  // Searched rather than parsed: what else the body says (and how it is
  // spaced) does not matter, and etcd's messages hold nothing to escape.
  auto names = [&](std::string_view json) { return body_start.find(json) != std::string_view::npos; };
  return (http_status == 412 && names(kNotLeaderJson)) || (http_status == 503 && names(kLeaderChangedJson));
}

bool is_dropped_proposal(int grpc_status, std::string_view grpc_message) {
  constexpr int kUnknown = 2;
  return grpc_status == kUnknown && grpc_message == kDroppedProposal;
}

}  // namespace sidemux::upstream
