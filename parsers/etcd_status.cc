#include "parsers/etcd_status.h"

#include "parsers/protobuf_wire.h"

namespace sidemux::parsers::etcd {

namespace {

using protowire::Field;
using protowire::WireType;

std::string_view as_string(std::span<const uint8_t> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// ResponseHeader: member_id = 2 (cluster_id = 1, revision = 3, raft_term = 4
// are not needed).
const char* decode_member_id(std::span<const uint8_t> message, uint64_t& member_id) {
  protowire::Reader r(message);
  Field f;
  while (r.next(f))
    if (f.type == WireType::varint && f.number == 2) member_id = f.value;
  return r.error();
}

}  // namespace

const char* decode_status_response(std::span<const uint8_t> message, StatusResponse& out) {
  out = StatusResponse{};
  protowire::Reader r(message);
  Field f;
  while (r.next(f)) {
    // header = 1, dbSize = 3, leader = 4, raftTerm = 6, errors = 8, isLearner = 10.
    if (f.type == WireType::len) {
      switch (f.number) {
        case 1:
          // An embedded message seen twice merges, field by field.
          if (const char* e = decode_member_id(f.bytes, out.member_id)) return e;
          break;
        case 8:
          if (out.error_count < StatusResponse::kMaxErrors) out.error_list[out.error_count] = as_string(f.bytes);
          ++out.error_count;
          break;
        default: break;
      }
    } else if (f.type == WireType::varint) {
      switch (f.number) {
        case 3: out.db_size = protowire::as_int64(f.value); break;
        case 4: out.leader = f.value; break;
        case 6: out.raft_term = f.value; break;
        case 10: out.is_learner = f.value != 0; break;
        default: break;
      }
    }
  }
  return r.error();
}

}  // namespace sidemux::parsers::etcd
