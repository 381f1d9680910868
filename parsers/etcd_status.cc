#include "parsers/etcd_status.h"

#include "parsers/protobuf_wire.h"

namespace sidemux::parsers::etcd {

namespace {

using protowire::Field;
using protowire::WireType;

std::string_view as_string(std::span<const uint8_t> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// ResponseHeader: cluster_id = 1, member_id = 2, revision = 3, raft_term = 4.
const char* decode_header(std::span<const uint8_t> message, ResponseHeader& h) {
  protowire::Reader r(message);
  Field f;
  while (r.next(f)) {
    if (f.type != WireType::varint) continue;
    switch (f.number) {
      case 1: h.cluster_id = f.value; break;
      case 2: h.member_id = f.value; break;
      case 3: h.revision = protowire::as_int64(f.value); break;
      case 4: h.raft_term = f.value; break;
      default: break;
    }
  }
  return r.error();
}

}  // namespace

const char* decode_status_response(std::span<const uint8_t> message, StatusResponse& out) {
  out = StatusResponse{};
  protowire::Reader r(message);
  Field f;
  while (r.next(f)) {
    if (f.type == WireType::len) {
      switch (f.number) {
        case 1:
          // An embedded message seen twice merges, field by field.
          if (const char* e = decode_header(f.bytes, out.header)) return e;
          break;
        case 2: out.version = as_string(f.bytes); break;
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
        case 5: out.raft_index = f.value; break;
        case 6: out.raft_term = f.value; break;
        case 7: out.raft_applied_index = f.value; break;
        case 9: out.db_size_in_use = protowire::as_int64(f.value); break;
        case 10: out.is_learner = f.value != 0; break;
        default: break;
      }
    }
  }
  return r.error();
}

}  // namespace sidemux::parsers::etcd
