// etcd's etcdserverpb.StatusResponse (Maintenance/Status), decoded to what
// sidemux needs to judge a member: who it is, whom it follows, its alarms.
// Field numbers are those of etcd 3.4's etcdserver/etcdserverpb/rpc.proto
// (api/etcdserverpb/ from 3.5 on); later versions only add fields, which are
// skipped like any unknown field.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace sidemux::parsers::etcd {

// Only the fields that judge a member and that /debug shows are decoded;
// the rest (cluster_id, revision, version, raft indexes, dbSizeInUse, ...)
// are skipped like unknown ones, so nothing here is kept that nothing reads.
// String fields are views into the decoded message: copy what must outlive it.
struct StatusResponse {
  static constexpr size_t kMaxErrors = 8;

  uint64_t member_id = 0;  // header.member_id: who answered
  uint64_t leader = 0;     // 0 is raft's "None": the member knows no leader
  uint64_t raft_term = 0;
  int64_t db_size = 0;
  // Alarms and "etcdserver: no leader"; the first kMaxErrors are kept, the
  // rest only counted, so a member cannot make a check allocate.
  std::array<std::string_view, kMaxErrors> error_list{};
  size_t error_count = 0;  // all errors seen, kept or not
  bool is_learner = false;

  std::span<const std::string_view> errors() const {
    return {error_list.data(), error_count < kMaxErrors ? error_count : kMaxErrors};
  }
  bool has_leader() const { return leader != 0; }
  bool is_leader() const { return has_leader() && leader == member_id; }
};

// Decodes one StatusResponse message (without its gRPC prefix). Returns
// nullptr, or why the bytes are not a StatusResponse; `out` is then partial.
// A known field sent with another wire type is skipped, as libprotobuf does.
const char* decode_status_response(std::span<const uint8_t> message, StatusResponse& out);

}  // namespace sidemux::parsers::etcd
