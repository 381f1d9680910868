// The HTTP/1 response parser as the forwarder drives it: pieces of a
// member's answers, HEAD requests here and there, pauses after some
// responses, and the member closing the connection at the end. Checks the
// callback order, the framing verdicts, that body spans lie inside the piece
// being fed, and that a Content-Length body is exactly that long.
// Input: byte 0 picks the limits, byte 1 seeds the split, byte 2 says which
// requests were HEAD (bit i: the i-th response, modulo 8), byte 3 after
// which responses to pause; the rest is what the member sends.
#include "parsers/http1_response.h"
#include "t/fuzz/fuzz_support.h"

using namespace sidemux;
using parsers::Http1BodyFraming;
using parsers::Http1ResponseParser;

namespace {

class Checker : public Http1ResponseParser::Handler {
 public:
  Checker(const Http1ResponseParser::Limits& limits, uint8_t heads, uint8_t pauses)
      : limits_(limits), heads_(heads), pauses_(pauses) {}

  void attach(Http1ResponseParser& p) {
    parser_ = &p;
    p.expect_head_response(head_request());
  }
  void feeding(const fuzz::Piece* piece) { piece_ = piece; }
  bool in_body() const { return in_body_; }

  void on_informational(const parsers::Http1Response& head) override {
    FUZZ_CHECK(!in_body_);
    FUZZ_CHECK(head.informational());
    FUZZ_CHECK(head.framing == Http1BodyFraming::none);
    check_head(head);
  }
  void on_head(const parsers::Http1Response& head) override {
    FUZZ_CHECK(!in_body_);
    FUZZ_CHECK(!head.informational());
    FUZZ_CHECK(head.status >= 100 && head.status <= 999);
    FUZZ_CHECK(head.upgrade == (head.status == 101));
    if (head.upgrade || head_request() || head.status == 204 || head.status == 304)
      FUZZ_CHECK(head.framing == Http1BodyFraming::none);
    if (head.framing == Http1BodyFraming::content_length) FUZZ_CHECK(head.content_length > 0);
    check_head(head);
    in_body_ = !head.upgrade;
    body_ = 0;
  }
  void on_body(std::span<const char> bytes) override {
    FUZZ_CHECK(in_body_);
    FUZZ_CHECK(piece_ && piece_->holds(bytes.data(), bytes.size()));
    body_ += bytes.size();
  }
  bool on_end(const parsers::Http1Response& head, const parsers::Http1Headers& trailers) override {
    FUZZ_CHECK(in_body_);
    in_body_ = false;
    switch (head.framing) {
      case Http1BodyFraming::none: FUZZ_CHECK(body_ == 0); break;
      case Http1BodyFraming::content_length: FUZZ_CHECK(body_ == head.content_length); break;
      case Http1BodyFraming::until_close: FUZZ_CHECK(!head.keep_alive); break;
      case Http1BodyFraming::chunked: break;
    }
    if (head.framing != Http1BodyFraming::chunked) FUZZ_CHECK(trailers.empty());
    FUZZ_CHECK(trailers.size() <= limits_.max_headers);
    bool go_on = !(pauses_ >> (responses_ % 8) & 1);
    ++responses_;
    parser_->expect_head_response(head_request());
    return go_on;
  }

 private:
  bool head_request() const { return heads_ >> (responses_ % 8) & 1; }
  void check_head(const parsers::Http1Response& head) {
    FUZZ_CHECK(head.headers.size() <= limits_.max_headers);
    size_t bytes = head.reason.size();
    for (size_t i = 0; i < head.headers.size(); ++i) {
      for (char c : head.headers.name(i)) FUZZ_CHECK(!(c >= 'A' && c <= 'Z'));
      bytes += head.headers.name(i).size() + head.headers.value(i).size();
    }
    FUZZ_CHECK(bytes <= limits_.max_head_bytes);
  }

  Http1ResponseParser::Limits limits_;
  uint8_t heads_;
  uint8_t pauses_;
  Http1ResponseParser* parser_ = nullptr;
  const fuzz::Piece* piece_ = nullptr;
  size_t responses_ = 0;
  uint64_t body_ = 0;
  bool in_body_ = false;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  Http1ResponseParser::Limits limits;
  limits.max_head_bytes = size_t{32} << (data[0] & 7);     // 32 B .. 4 KiB
  limits.max_headers = size_t{1} << ((data[0] >> 3) & 7);  // 1 .. 128
  fuzz::Splitter split(data[1]);
  Checker checker(limits, data[2], data[3]);
  Http1ResponseParser parser(limits, checker);
  checker.attach(parser);

  const uint8_t* stream = data + 4;
  const size_t len = size - 4;
  for (size_t pos = 0; pos < len;) {
    size_t n = split.next(len - pos);
    fuzz::Piece piece(stream + pos, n);
    checker.feeding(&piece);
    pos += n;
    for (size_t off = 0, rounds = 0; off < n; ++rounds) {
      FUZZ_CHECK(rounds <= n);
      auto r = parser.feed(piece.bytes.get() + off, n - off);
      FUZZ_CHECK(r.consumed <= n - off);
      switch (r.status) {
        case Http1ResponseParser::Status::error:
          FUZZ_CHECK(r.reason != nullptr);
          return 0;
        case Http1ResponseParser::Status::upgraded:
          // The rest is the tunnel's; the parser refuses more.
          FUZZ_CHECK(parser.feed(piece.bytes.get(), 0).status == Http1ResponseParser::Status::error);
          return 0;
        case Http1ResponseParser::Status::ok:
          FUZZ_CHECK(r.consumed == n - off);
          break;
        case Http1ResponseParser::Status::paused:
          break;
      }
      off += r.consumed;
    }
  }
  checker.feeding(nullptr);
  bool was_mid_message = parser.mid_message();
  auto r = parser.finish();
  if (r.status == Http1ResponseParser::Status::ok) FUZZ_CHECK(!checker.in_body());
  else FUZZ_CHECK(was_mid_message && r.reason != nullptr);
  return 0;
}
