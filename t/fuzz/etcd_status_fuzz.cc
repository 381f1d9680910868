// etcd's StatusResponse decoder and the protobuf wire reader under it, on
// arbitrary bytes: every view points into the input, reading always ends,
// and what was decoded survives a canonical re-encoding unchanged.
// Input: one StatusResponse message (no gRPC prefix).
#include "parsers/etcd_status.h"
#include "parsers/protobuf_wire.h"
#include "t/fuzz/fuzz_support.h"
#include "t/unit/parsers/protobuf_test_bytes.h"

using namespace sidemux::parsers;
using sidemux::fuzz::Piece;
using sidemux::parsers::testing::PbBytes;

namespace {

bool inside(const Piece& in, std::string_view v) { return v.empty() || in.holds(v.data(), v.size()); }

void check_reader(const Piece& in, std::span<const uint8_t> bytes) {
  protowire::Reader r(bytes);
  protowire::Field f;
  size_t fields = 0;
  while (r.next(f)) {
    ++fields;
    FUZZ_CHECK(fields <= bytes.size());  // every field takes at least one byte
    FUZZ_CHECK(f.number >= 1 && f.number < (1u << 29));
    FUZZ_CHECK(f.type != protowire::WireType::end_group);
    FUZZ_CHECK(inside(in, {reinterpret_cast<const char*>(f.bytes.data()), f.bytes.size()}));
  }
}

PbBytes encode(const etcd::StatusResponse& s) {
  PbBytes b;
  b.msg(1, PbBytes().uint(2, s.member_id)).uint(3, static_cast<uint64_t>(s.db_size)).uint(4, s.leader);
  b.uint(6, s.raft_term);
  for (std::string_view e : s.errors()) b.str(8, e);
  b.uint(10, s.is_learner ? 1 : 0);
  return b;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Piece in(data, size);
  std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(in.bytes.get()), size);
  check_reader(in, bytes);

  etcd::StatusResponse s;
  const char* error = etcd::decode_status_response(bytes, s);
  FUZZ_CHECK(s.errors().size() <= etcd::StatusResponse::kMaxErrors);
  FUZZ_CHECK(s.errors().size() == std::min(s.error_count, etcd::StatusResponse::kMaxErrors));
  for (std::string_view e : s.errors()) FUZZ_CHECK(inside(in, e));
  if (error) return 0;

  PbBytes again = encode(s);
  etcd::StatusResponse t;
  FUZZ_CHECK(etcd::decode_status_response(again.bytes, t) == nullptr);
  FUZZ_CHECK(t.member_id == s.member_id && t.leader == s.leader && t.raft_term == s.raft_term);
  FUZZ_CHECK(t.db_size == s.db_size);
  FUZZ_CHECK(t.is_learner == s.is_learner && t.is_leader() == s.is_leader());
  FUZZ_CHECK(t.errors().size() == s.errors().size());
  for (size_t i = 0; i < t.errors().size(); ++i) FUZZ_CHECK(t.errors()[i] == s.errors()[i]);
  return 0;
}
