#include "parsers/http1.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sidemux::parsers {
namespace {

struct Collector {
  std::vector<Http1Request> requests;
  size_t pause_after = SIZE_MAX;  // pause once this many requests arrived
  static bool on_request(void* user, const Http1Request& req) {
    auto* c = static_cast<Collector*>(user);
    c->requests.push_back(req);
    return c->requests.size() < c->pause_after;
  }
};

Http1Parser::Limits small_limits() {
  Http1Parser::Limits l;
  l.max_head_bytes = 256;
  l.max_headers = 4;
  l.max_body_bytes = 16;
  return l;
}

TEST(Http1Parser, RequestFedOneByteAtATime) {
  const std::string req = "GET /health?x=1 HTTP/1.1\r\nHost: a\r\nX-Long-Name: some value\r\n\r\n";
  Collector c;
  Http1Parser p(small_limits(), Collector::on_request, &c);
  for (char ch : req) {
    auto r = p.feed(&ch, 1);
    ASSERT_EQ(r.status, Http1Parser::Status::ok);
    ASSERT_EQ(r.consumed, 1u);
  }
  ASSERT_EQ(c.requests.size(), 1u);
  EXPECT_EQ(c.requests[0].method, "GET");
  EXPECT_EQ(c.requests[0].target, "/health?x=1");
  EXPECT_EQ(c.requests[0].header("x-long-name"), "some value");
  EXPECT_EQ(c.requests[0].header("host"), "a");
  EXPECT_TRUE(c.requests[0].keep_alive);
  EXPECT_FALSE(p.mid_message());
}

TEST(Http1Parser, EmptyHeaderValuesKeepTheirNames) {
  const std::string req = "GET / HTTP/1.1\r\nA:\r\nB: 2\r\nC: \r\n\r\n";
  for (size_t split = 0; split <= req.size(); ++split) {
    Collector c;
    Http1Parser p(small_limits(), Collector::on_request, &c);
    p.feed(req.data(), split);
    p.feed(req.data() + split, req.size() - split);
    ASSERT_EQ(c.requests.size(), 1u);
    const auto& h = c.requests[0].headers;
    ASSERT_EQ(h.size(), 3u) << split;
    EXPECT_EQ(h.name(0), "a");
    EXPECT_EQ(h.value(0), "");
    EXPECT_EQ(h.name(1), "b");
    EXPECT_EQ(h.value(1), "2");
    EXPECT_EQ(h.name(2), "c");
  }
}

TEST(Http1Parser, ChunkedTrailersAreNotTakenForHeaders) {
  const std::string req =
      "POST /v3/kv/put HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "2\r\n{}\r\n0\r\nHost: evil\r\nX-T1: 1\r\nX-T2: 2\r\n\r\n";
  Collector c;
  Http1Parser p(small_limits(), Collector::on_request, &c);
  auto r = p.feed(req.data(), req.size());
  // Four fields in all: within max_headers only when the trailers count on their own.
  ASSERT_EQ(r.status, Http1Parser::Status::ok) << r.reason;
  ASSERT_EQ(c.requests.size(), 1u);
  EXPECT_EQ(c.requests[0].header("host"), "a");
  EXPECT_EQ(c.requests[0].headers.size(), 2u);
}

TEST(Http1Parser, EverySplitOfTwoPipelinedRequests) {
  const std::string bytes = "GET /a HTTP/1.1\r\nHost: h\r\n\r\nHEAD /b HTTP/1.1\r\n\r\n";
  for (size_t split = 0; split <= bytes.size(); ++split) {
    Collector c;
    Http1Parser p(small_limits(), Collector::on_request, &c);
    ASSERT_EQ(p.feed(bytes.data(), split).status, Http1Parser::Status::ok);
    ASSERT_EQ(p.feed(bytes.data() + split, bytes.size() - split).status, Http1Parser::Status::ok);
    ASSERT_EQ(c.requests.size(), 2u) << "split at " << split;
    EXPECT_EQ(c.requests[0].target, "/a");
    EXPECT_EQ(c.requests[1].method, "HEAD");
    EXPECT_EQ(c.requests[1].target, "/b");
  }
}

TEST(Http1Parser, PauseReportsWhereToResume) {
  const std::string bytes = "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n";
  Collector c;
  c.pause_after = 1;
  Http1Parser p(small_limits(), Collector::on_request, &c);
  auto r = p.feed(bytes.data(), bytes.size());
  ASSERT_EQ(r.status, Http1Parser::Status::paused);
  EXPECT_EQ(r.consumed, bytes.size() / 3);
  c.pause_after = SIZE_MAX;
  r = p.feed(bytes.data() + r.consumed, bytes.size() - r.consumed);
  ASSERT_EQ(r.status, Http1Parser::Status::ok);
  ASSERT_EQ(c.requests.size(), 3u);
  EXPECT_EQ(c.requests[2].target, "/3");
}

TEST(Http1Parser, Http10ClosesAndConnectionCloseIsHonoured) {
  Collector c;
  Http1Parser p(small_limits(), Collector::on_request, &c);
  std::string a = "GET / HTTP/1.0\r\n\r\n";
  p.feed(a.data(), a.size());
  Http1Parser q(small_limits(), Collector::on_request, &c);
  std::string b = "GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
  q.feed(b.data(), b.size());
  ASSERT_EQ(c.requests.size(), 2u);
  EXPECT_FALSE(c.requests[0].keep_alive);
  EXPECT_FALSE(c.requests[1].keep_alive);
}

struct ErrorCase {
  const char* name;
  std::string bytes;
  int status;
};

class Http1Errors : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(Http1Errors, AnswerStatus) {
  Collector c;
  Http1Parser p(small_limits(), Collector::on_request, &c);
  auto r = p.feed(GetParam().bytes.data(), GetParam().bytes.size());
  EXPECT_EQ(r.status, Http1Parser::Status::error);
  EXPECT_EQ(r.http_status, GetParam().status);
  EXPECT_NE(r.reason, nullptr);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, Http1Errors,
    ::testing::Values(
        ErrorCase{"malformed_request_line", "GET/ HTTP/1.1\r\n\r\n", 400},
        ErrorCase{"bad_method", "BLAH / HTTP/1.1\r\n\r\n", 400},
        ErrorCase{"binary", std::string("\x00\x01\x02\x03", 4), 400},
        ErrorCase{"bad_version", "GET / HTTP/9.9\r\n\r\n", 400},
        ErrorCase{"long_url", "GET /" + std::string(300, 'a') + " HTTP/1.1\r\n\r\n", 431},
        ErrorCase{"long_header", "GET / HTTP/1.1\r\nX: " + std::string(300, 'v') + "\r\n\r\n", 431},
        ErrorCase{"too_many_headers", "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n", 431},
        ErrorCase{"large_body", "POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n" + std::string(17, 'b'), 413},
        ErrorCase{"upgrade", "GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n", 0}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(Http1Parser, HeaderLimitCountsBytesAcrossSplitCallbacks) {
  // The same oversize header fed in small pieces still hits the limit.
  std::string bytes = "GET / HTTP/1.1\r\nX: " + std::string(300, 'v') + "\r\n\r\n";
  Collector c;
  Http1Parser p(small_limits(), Collector::on_request, &c);
  Http1Parser::Status last = Http1Parser::Status::ok;
  for (size_t i = 0; i < bytes.size() && last == Http1Parser::Status::ok; i += 7)
    last = p.feed(bytes.data() + i, std::min<size_t>(7, bytes.size() - i)).status;
  EXPECT_EQ(last, Http1Parser::Status::error);
  EXPECT_TRUE(c.requests.empty());
}

// Forwarded requests: the head hook takes the request, the body streams as
// spans with no body limit, and pausing from on_body stops right after the
// span it was handed.
struct Streamer {
  std::vector<std::string> heads;
  std::string body;
  size_t ends = 0;
  bool take = true;
  bool pause_body = false;
  static bool on_head(void* user, const Http1Request& req) {
    auto* s = static_cast<Streamer*>(user);
    s->heads.push_back(req.target);
    return s->take;
  }
  static bool on_body(void* user, const char* data, size_t len) {
    auto* s = static_cast<Streamer*>(user);
    s->body.append(data, len);
    return !s->pause_body;
  }
  static bool on_request(void* user, const Http1Request&) {
    ++static_cast<Streamer*>(user)->ends;
    return true;
  }
};

TEST(Http1Parser, StreamedBodyPassesTheLimitAndPausesAfterASpan) {
  Streamer s;
  Http1Parser p(small_limits(), Streamer::on_request, &s);
  p.stream_bodies(Streamer::on_head, Streamer::on_body);
  std::string body(100, 'b');  // past max_body_bytes (16)
  std::string req = "POST /v3/kv/put HTTP/1.1\r\nContent-Length: 100\r\n\r\n" + body + "GET /n HTTP/1.1\r\n\r\n";
  s.pause_body = true;
  auto r = p.feed(req.data(), req.size());
  ASSERT_EQ(r.status, Http1Parser::Status::paused);
  EXPECT_EQ(s.body, body);
  EXPECT_EQ(r.consumed, req.size() - std::string("GET /n HTTP/1.1\r\n\r\n").size());
  s.pause_body = false;
  r = p.feed(req.data() + r.consumed, req.size() - r.consumed);
  EXPECT_EQ(r.status, Http1Parser::Status::ok);
  EXPECT_EQ(s.ends, 2u);
  EXPECT_EQ(s.heads, (std::vector<std::string>{"/v3/kv/put", "/n"}));
}

TEST(Http1Parser, ChunkedRequestBodyStreamsWithoutFraming) {
  Streamer s;
  Http1Parser p(small_limits(), Streamer::on_request, &s);
  p.stream_bodies(Streamer::on_head, Streamer::on_body);
  std::string req = "POST /v3/watch HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n";
  // Paused after every span, resumed from where it stopped.
  s.pause_body = true;
  size_t at = 0;
  for (int i = 0; i < 10 && at < req.size(); ++i) {
    auto r = p.feed(req.data() + at, req.size() - at);
    ASSERT_NE(r.status, Http1Parser::Status::error);
    at += r.consumed;
  }
  EXPECT_EQ(at, req.size());
  EXPECT_EQ(s.body, "helloabc");
  EXPECT_EQ(s.ends, 1u);
}

TEST(Http1Parser, UpgradeTakenByTheHeadHookReportsWhereTheTunnelStarts) {
  Streamer s;
  Http1Parser p(small_limits(), Streamer::on_request, &s);
  p.stream_bodies(Streamer::on_head, Streamer::on_body);
  std::string head = "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
  std::string req = head + "frames";
  auto r = p.feed(req.data(), req.size());
  ASSERT_EQ(r.status, Http1Parser::Status::upgraded);
  EXPECT_EQ(r.consumed, head.size());
  EXPECT_EQ(s.ends, 1u);
}

TEST(Http1Parser, UpgradeNotTakenIsStillRefused) {
  Streamer s;
  s.take = false;
  Http1Parser p(small_limits(), Streamer::on_request, &s);
  p.stream_bodies(Streamer::on_head, Streamer::on_body);
  std::string req = "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
  auto r = p.feed(req.data(), req.size());
  EXPECT_EQ(r.status, Http1Parser::Status::error);
}

}  // namespace
}  // namespace sidemux::parsers
