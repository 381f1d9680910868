// The connection classifier as a connection runs it: bytes arrive in pieces,
// the verdict is asked for the whole prefix after each piece until it is not
// need_more, and an HTTP/1 verdict hands everything so far, then the later
// pieces, to the request parser.
// Input: byte 0 seeds the split; the rest is what the client sends.
#include <cstring>
#include <string>

#include "parsers/classify.h"
#include "parsers/http1.h"
#include "t/fuzz/fuzz_support.h"

using namespace sidemux;
using parsers::Protocol;

namespace {

// The SPEC's rules, restated independently of classify.cc.
Protocol expected(const uint8_t* data, size_t len) {
  if (len == 0) return Protocol::need_more;
  if (data[0] == 0x16) return Protocol::tls;
  const std::string_view preface = parsers::kHttp2Preface;
  size_t n = len < preface.size() ? len : preface.size();
  if (std::string_view(reinterpret_cast<const char*>(data), n) != preface.substr(0, n)) return Protocol::http1;
  return n == preface.size() ? Protocol::http2 : Protocol::need_more;
}

bool count_request(void* user, const parsers::Http1Request& req) {
  FUZZ_CHECK(!req.method.empty());
  ++*static_cast<size_t*>(user);
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  fuzz::Splitter split(data[0]);
  const uint8_t* stream = data + 1;
  const size_t len = size - 1;

  std::string seen;  // what the connection buffered while classifying
  size_t pos = 0;
  Protocol verdict = Protocol::need_more;
  while (pos < len && verdict == Protocol::need_more) {
    size_t n = split.next(len - pos);
    seen.append(reinterpret_cast<const char*>(stream + pos), n);
    pos += n;
    fuzz::Piece prefix(reinterpret_cast<const uint8_t*>(seen.data()), seen.size());
    verdict = parsers::classify(reinterpret_cast<const uint8_t*>(prefix.bytes.get()), prefix.size);
    FUZZ_CHECK(verdict == expected(stream, pos));
  }
  // A verdict never changes with more bytes.
  FUZZ_CHECK(verdict == Protocol::need_more || verdict == expected(stream, len));
  if (verdict != Protocol::http1) return 0;

  parsers::Http1Parser::Limits limits;
  size_t requests = 0;
  parsers::Http1Parser parser(limits, count_request, &requests);
  fuzz::Piece first(reinterpret_cast<const uint8_t*>(seen.data()), seen.size());
  auto r = parser.feed(first.bytes.get(), first.size);
  while (r.status == parsers::Http1Parser::Status::ok && pos < len) {
    size_t n = split.next(len - pos);
    fuzz::Piece piece(stream + pos, n);
    pos += n;
    r = parser.feed(piece.bytes.get(), piece.size);
    FUZZ_CHECK(r.consumed <= piece.size);
  }
  if (r.status == parsers::Http1Parser::Status::error) FUZZ_CHECK(r.reason != nullptr);
  return 0;
}
