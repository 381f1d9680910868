// The HTTP/1 request parser with small, input-chosen limits, fed in pieces,
// with pauses (backpressure) after some requests. Every request handed out
// must respect the limits; every error must carry an answer status.
// Input: byte 0 picks the limits, byte 1 seeds the split, byte 2 says after
// which requests to pause (bit i: the i-th request, modulo 8); the rest is
// what the client sends.
#include "parsers/http1.h"
#include "t/fuzz/fuzz_support.h"

using namespace sidemux;
using parsers::Http1Parser;

namespace {

struct State {
  Http1Parser::Limits limits;
  uint8_t pauses = 0;
  size_t requests = 0;
};

bool on_request(void* user, const parsers::Http1Request& req) {
  auto* s = static_cast<State*>(user);
  FUZZ_CHECK(!req.method.empty());
  FUZZ_CHECK(req.target.size() <= s->limits.max_head_bytes);
  FUZZ_CHECK(req.headers.size() <= s->limits.max_headers);
  FUZZ_CHECK(req.body_bytes <= s->limits.max_body_bytes);
  size_t head = req.target.size();
  for (size_t i = 0; i < req.headers.size(); ++i) {
    for (char c : req.headers.name(i)) FUZZ_CHECK(!(c >= 'A' && c <= 'Z'));
    head += req.headers.name(i).size() + req.headers.value(i).size();
    FUZZ_CHECK(req.header(req.headers.name(i)).data() != nullptr);
  }
  FUZZ_CHECK(head <= s->limits.max_head_bytes);
  return !(s->pauses >> (s->requests++ % 8) & 1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  State s;
  s.limits.max_head_bytes = size_t{32} << (data[0] & 7);      // 32 B .. 4 KiB
  s.limits.max_headers = size_t{1} << ((data[0] >> 3) & 7);   // 1 .. 128
  s.limits.max_body_bytes = size_t{8} << ((data[0] >> 6) * 3);  // 8 B .. 4 KiB
  fuzz::Splitter split(data[1]);
  s.pauses = data[2];
  Http1Parser parser(s.limits, on_request, &s);

  const uint8_t* stream = data + 3;
  const size_t len = size - 3;
  for (size_t pos = 0; pos < len;) {
    size_t n = split.next(len - pos);
    fuzz::Piece piece(stream + pos, n);
    pos += n;
    for (size_t off = 0, rounds = 0; off < n; ++rounds) {
      FUZZ_CHECK(rounds <= n);  // each round takes a request, or ends the piece
      auto r = parser.feed(piece.bytes.get() + off, n - off);
      FUZZ_CHECK(r.consumed <= n - off);
      if (r.status == Http1Parser::Status::error) {
        FUZZ_CHECK(r.reason != nullptr);
        FUZZ_CHECK(r.http_status == 0 || r.http_status == 400 || r.http_status == 413 || r.http_status == 431);
        return 0;
      }
      if (r.status == Http1Parser::Status::ok) FUZZ_CHECK(r.consumed == n - off);
      off += r.consumed;
    }
  }
  return 0;
}
