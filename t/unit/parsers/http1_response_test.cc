#include "parsers/http1_response.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sidemux::parsers {
namespace {

using Status = Http1ResponseParser::Status;

// What a forwarder would see, in order.
struct Recorder : Http1ResponseParser::Handler {
  struct Seen {
    int status = 0;
    std::string reason;
    std::vector<std::pair<std::string, std::string>> headers;
    Http1BodyFraming framing = Http1BodyFraming::none;
    uint64_t content_length = 0;
    std::string body;
    std::vector<std::pair<std::string, std::string>> trailers;
    bool keep_alive = false;
    bool ended = false;
  };
  std::vector<int> informational;
  std::vector<Seen> responses;
  std::vector<const char*> body_pointers;  // where the spans point
  size_t empty_body_spans = 0;
  Http1ResponseParser* parser = nullptr;
  std::vector<bool> next_is_head;  // for pipelined requests, in order
  size_t pause_after = SIZE_MAX;

  static std::vector<std::pair<std::string, std::string>> copy(const Http1Headers& h) {
    std::vector<std::pair<std::string, std::string>> out;
    for (size_t i = 0; i < h.size(); ++i) out.emplace_back(h.name(i), h.value(i));
    return out;
  }
  void on_informational(const Http1Response& head) override { informational.push_back(head.status); }
  void on_head(const Http1Response& head) override {
    Seen s;
    s.status = head.status;
    s.reason = head.reason;
    s.headers = copy(head.headers);
    s.framing = head.framing;
    s.content_length = head.content_length;
    responses.push_back(s);
  }
  void on_body(std::span<const char> bytes) override {
    body_pointers.push_back(bytes.data());
    if (bytes.empty()) ++empty_body_spans;
    responses.back().body.append(bytes.data(), bytes.size());
  }
  bool on_end(const Http1Response& head, const Http1Headers& trailers) override {
    responses.back().keep_alive = head.keep_alive;
    responses.back().trailers = copy(trailers);
    responses.back().ended = true;
    if (parser && responses.size() < next_is_head.size() + 1 && responses.size() <= next_is_head.size())
      parser->expect_head_response(next_is_head[responses.size() - 1]);
    return responses.size() < pause_after;
  }
};

Http1ResponseParser::Limits small_limits() {
  Http1ResponseParser::Limits l;
  l.max_head_bytes = 256;
  l.max_headers = 4;
  return l;
}

Http1ResponseParser::Result feed(Http1ResponseParser& p, const std::string& s) { return p.feed(s.data(), s.size()); }

TEST(Http1Response, ContentLengthBodyIsSpansOfTheInput) {
  const std::string bytes = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello";
  Recorder r;
  Http1ResponseParser p(small_limits(), r);
  auto res = feed(p, bytes);
  ASSERT_EQ(res.status, Status::ok);
  EXPECT_EQ(res.consumed, bytes.size());
  ASSERT_EQ(r.responses.size(), 1u);
  const auto& s = r.responses[0];
  EXPECT_EQ(s.status, 200);
  EXPECT_EQ(s.reason, "OK");
  EXPECT_EQ(s.framing, Http1BodyFraming::content_length);
  EXPECT_EQ(s.content_length, 5u);
  EXPECT_EQ(s.body, "hello");
  EXPECT_TRUE(s.ended);
  EXPECT_TRUE(s.keep_alive);
  ASSERT_EQ(s.headers.size(), 2u);
  EXPECT_EQ(s.headers[0].first, "content-type");
  EXPECT_EQ(s.headers[0].second, "application/json");
  ASSERT_EQ(r.body_pointers.size(), 1u);
  EXPECT_EQ(r.body_pointers[0], bytes.data() + bytes.size() - 5);  // not a copy
  EXPECT_FALSE(p.mid_message());
}

TEST(Http1Response, ChunkedWithTrailersAtEverySplit) {
  const std::string bytes =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nGrpc-Status: 0\r\n\r\n";
  for (size_t split = 0; split <= bytes.size(); ++split) {
    Recorder r;
    Http1ResponseParser p(small_limits(), r);
    ASSERT_EQ(p.feed(bytes.data(), split).status, Status::ok);
    ASSERT_EQ(p.feed(bytes.data() + split, bytes.size() - split).status, Status::ok);
    ASSERT_EQ(r.responses.size(), 1u) << split;
    EXPECT_EQ(r.responses[0].framing, Http1BodyFraming::chunked);
    EXPECT_EQ(r.responses[0].body, "hello world") << split;
    ASSERT_EQ(r.responses[0].trailers.size(), 1u) << split;
    EXPECT_EQ(r.responses[0].trailers[0].first, "grpc-status");
    EXPECT_EQ(r.responses[0].trailers[0].second, "0");
    EXPECT_TRUE(r.responses[0].keep_alive);
  }
}

TEST(Http1Response, BodyUntilCloseEndsAtFinish) {
  Recorder r;
  Http1ResponseParser p(small_limits(), r);
  ASSERT_EQ(feed(p, "HTTP/1.1 200 OK\r\n\r\nstreamed").status, Status::ok);
  ASSERT_EQ(feed(p, " for hours").status, Status::ok);
  ASSERT_EQ(r.responses.size(), 1u);
  EXPECT_EQ(r.responses[0].framing, Http1BodyFraming::until_close);
  EXPECT_FALSE(r.responses[0].ended);
  EXPECT_TRUE(p.mid_message());
  ASSERT_EQ(p.finish().status, Status::ok);
  EXPECT_TRUE(r.responses[0].ended);
  EXPECT_FALSE(r.responses[0].keep_alive);
  EXPECT_EQ(r.responses[0].body, "streamed for hours");
  // Found by t/fuzz/http1_response: finish() handed out an empty span that
  // pointed outside any input.
  EXPECT_EQ(r.empty_body_spans, 0u);
}

TEST(Http1Response, TransferCodingOtherThanChunkedLastReadsUntilClose) {
  Recorder r;
  Http1ResponseParser p(small_limits(), r);
  ASSERT_EQ(feed(p, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc").status, Status::ok);
  ASSERT_EQ(r.responses.size(), 1u);
  EXPECT_EQ(r.responses[0].framing, Http1BodyFraming::until_close);
  ASSERT_EQ(p.finish().status, Status::ok);
  EXPECT_EQ(r.responses[0].body, "abc");
}

TEST(Http1Response, CutShortIsAnErrorAtFinish) {
  for (std::string bytes : {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
                            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "HTTP/1.1 200 OK\r\nX-A"}) {
    Recorder r;
    Http1ResponseParser p(small_limits(), r);
    ASSERT_EQ(feed(p, bytes).status, Status::ok) << bytes;
    auto res = p.finish();
    EXPECT_EQ(res.status, Status::error) << bytes;
    EXPECT_STREQ(res.reason, "the member closed the connection mid-response");
  }
  Recorder idle;
  Http1ResponseParser between(small_limits(), idle);
  EXPECT_EQ(between.finish().status, Status::ok);  // a close between responses is fine
}

TEST(Http1Response, NoBodyFor204And304AndHeadWhateverTheHeadersSay) {
  // A 304 carries the representation's Content-Length; no byte follows it.
  const std::string bytes =
      "HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n"
      "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  Recorder r;
  Http1ResponseParser p(small_limits(), r);
  r.parser = &p;
  r.next_is_head = {false, true, true, false};  // requests 3 and 4 were HEAD
  auto res = feed(p, bytes);
  ASSERT_EQ(res.status, Status::ok) << res.reason;
  ASSERT_EQ(r.responses.size(), 5u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(r.responses[i].framing, Http1BodyFraming::none) << i;
    EXPECT_EQ(r.responses[i].body, "") << i;
    EXPECT_TRUE(r.responses[i].ended) << i;
    EXPECT_TRUE(r.responses[i].keep_alive) << i;
  }
  EXPECT_EQ(r.responses[4].body, "ok");
}

TEST(Http1Response, InterimResponsesPrecedeTheFinalOne) {
  Recorder r;
  Http1ResponseParser p(small_limits(), r);
  p.expect_head_response(true);
  auto res = feed(p,
                  "HTTP/1.1 100 Continue\r\n\r\n"
                  "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
                  "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"
                  "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc");
  ASSERT_EQ(res.status, Status::ok);
  EXPECT_EQ(r.informational, (std::vector<int>{100, 103}));
  ASSERT_EQ(r.responses.size(), 2u);
  EXPECT_EQ(r.responses[0].body, "");   // the HEAD flag outlived the interim answers
  EXPECT_EQ(r.responses[1].body, "abc");  // and was cleared by the final one
}

TEST(Http1Response, SwitchingProtocolsLeavesTheRestToTheTunnel) {
  const std::string head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
  const std::string bytes = head + "\x81\x05hello";
  Recorder r;
  Http1ResponseParser p(small_limits(), r);
  auto res = feed(p, bytes);
  ASSERT_EQ(res.status, Status::upgraded);
  EXPECT_EQ(res.consumed, head.size());
  ASSERT_EQ(r.responses.size(), 1u);
  EXPECT_EQ(r.responses[0].status, 101);
  EXPECT_FALSE(r.responses[0].ended);  // a tunnel has no end of message
  EXPECT_FALSE(p.mid_message());
  EXPECT_EQ(feed(p, "more").status, Status::error);
  EXPECT_EQ(p.finish().status, Status::ok);
}

TEST(Http1Response, SwitchingProtocolsWithoutUpgradeHeadersStillTunnels) {
  const std::string head = "HTTP/1.1 101 Switching Protocols\r\n\r\n";
  Recorder r;
  Http1ResponseParser p(small_limits(), r);
  auto res = feed(p, head + "GARBAGE");
  ASSERT_EQ(res.status, Status::upgraded);
  EXPECT_EQ(res.consumed, head.size());
}

TEST(Http1Response, UpgradeHeaderOnA200IsOnlyInformation) {
  Recorder r;
  Http1ResponseParser p(small_limits(), r);
  auto res = feed(p, "HTTP/1.1 200 OK\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nContent-Length: 1\r\n\r\nx");
  ASSERT_EQ(res.status, Status::ok);
  ASSERT_EQ(r.responses.size(), 1u);
  EXPECT_EQ(r.responses[0].body, "x");
}

TEST(Http1Response, KeepAliveDecision) {
  struct Case {
    std::string bytes;
    bool keep_alive;
  };
  for (const Case& c : {Case{"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true},
                        Case{"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", false},
                        Case{"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false},
                        Case{"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", true}}) {
    Recorder r;
    Http1ResponseParser p(small_limits(), r);
    ASSERT_EQ(feed(p, c.bytes).status, Status::ok) << c.bytes;
    ASSERT_EQ(r.responses.size(), 1u);
    EXPECT_EQ(r.responses[0].keep_alive, c.keep_alive) << c.bytes;
  }
}

TEST(Http1Response, PauseAfterAResponse) {
  const std::string one = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na";
  const std::string bytes = one + one + one;
  Recorder r;
  r.pause_after = 1;
  Http1ResponseParser p(small_limits(), r);
  auto res = feed(p, bytes);
  ASSERT_EQ(res.status, Status::paused);
  EXPECT_EQ(res.consumed, one.size());
  r.pause_after = SIZE_MAX;
  res = p.feed(bytes.data() + one.size(), bytes.size() - one.size());
  ASSERT_EQ(res.status, Status::ok);
  EXPECT_EQ(r.responses.size(), 3u);
}

TEST(Http1Response, CloseAfterPausingOnTheLastResponseIsClean) {
  // Found by t/fuzz/http1_response: finish() called the connection cut short.
  Recorder r;
  r.pause_after = 1;
  Http1ResponseParser p(small_limits(), r);
  const std::string bytes = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx";
  auto res = feed(p, bytes);
  ASSERT_EQ(res.status, Status::paused);
  EXPECT_EQ(res.consumed, bytes.size());
  res = p.finish();
  EXPECT_EQ(res.status, Status::ok) << res.reason;
}

TEST(Http1Response, HeadLimitsApplyToHeadsAndTrailers) {
  struct Case {
    const char* name;
    std::string bytes;
    const char* reason;
  };
  for (const Case& c :
       {Case{"long header", "HTTP/1.1 200 OK\r\nX: " + std::string(300, 'v') + "\r\n\r\n", "head too large"},
        Case{"long reason", "HTTP/1.1 200 " + std::string(300, 'r') + "\r\n\r\n", "head too large"},
        Case{"many headers", "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n", "too many headers"},
        Case{"many trailers",
             "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
             "T1: 1\r\nT2: 2\r\nT3: 3\r\nT4: 4\r\nT5: 5\r\n\r\n",
             "too many headers"}}) {
    Recorder r;
    Http1ResponseParser p(small_limits(), r);
    // Fed in small pieces: the limit counts across llhttp's callbacks.
    Http1ResponseParser::Result res{Status::ok, 0, nullptr};
    for (size_t i = 0; i < c.bytes.size() && res.status == Status::ok; i += 7)
      res = p.feed(c.bytes.data() + i, std::min<size_t>(7, c.bytes.size() - i));
    EXPECT_EQ(res.status, Status::error) << c.name;
    EXPECT_STREQ(res.reason, c.reason) << c.name;
  }
}

TEST(Http1Response, MalformedResponsesAreErrors) {
  for (std::string bytes : {std::string("HTTP/1.1 2000 OK\r\n\r\n"), std::string("HTTP/1.1 099 Low\r\n\r\n"),
                            std::string("ICY 200 OK\r\n\r\n"), std::string("\x00\x01\x02", 3),
                            std::string("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
                            std::string("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"),
                            std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")}) {
    Recorder r;
    Http1ResponseParser p(small_limits(), r);
    auto res = feed(p, bytes);
    EXPECT_EQ(res.status, Status::error) << bytes;
    EXPECT_NE(res.reason, nullptr);
    // An error sticks: nothing after it is parsed.
    EXPECT_EQ(feed(p, "HTTP/1.1 200 OK\r\n\r\n").status, Status::error);
  }
}

TEST(Http1Response, HeadersBufferIsReusedAcrossResponses) {
  const std::string one = "HTTP/1.1 200 OK\r\nX-A-Rather-Long-Header-Name: a rather long header value\r\n\r\n";
  Recorder r;
  Http1ResponseParser p(small_limits(), r);
  r.parser = &p;
  r.next_is_head = {true, true, true};
  p.expect_head_response(true);
  ASSERT_EQ(feed(p, one + one + one).status, Status::ok);
  ASSERT_EQ(r.responses.size(), 3u);
  EXPECT_EQ(r.responses[2].headers.size(), 1u);  // cleared between responses
  EXPECT_EQ(r.responses[2].headers[0].second, "a rather long header value");
}

}  // namespace
}  // namespace sidemux::parsers
