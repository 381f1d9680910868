#include "proxy/http1_forward_head.h"

#include <gtest/gtest.h>

#include <string>

namespace sidemux {
namespace {

// Parses one request head the way the client side does.
parsers::Http1Request parse_request(const std::string& text) {
  struct Out {
    parsers::Http1Request req;
    static bool on(void* user, const parsers::Http1Request& r) {
      static_cast<Out*>(user)->req = r;
      return true;
    }
  } out;
  parsers::Http1Parser p({}, Out::on, &out);
  p.feed(text.data(), text.size());
  return out.req;
}

TEST(Http1ForwardHead, HopByHopDroppedRestKeptInOrder) {
  auto req = parse_request(
      "PUT /v3/kv/put HTTP/1.1\r\nHost: etcd:2379\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
      "Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic x\r\nAuthorization: Bearer t\r\n"
      "Content-Length: 2\r\nX-Forwarded-For: 10.0.0.1\r\n\r\nhi");
  std::string out;
  build_forward_request_head(req, "127.0.0.1", out);
  EXPECT_EQ(out,
            "PUT /v3/kv/put HTTP/1.1\r\nhost: etcd:2379\r\nauthorization: Bearer t\r\ncontent-length: 2\r\n"
            "x-forwarded-for: 10.0.0.1, 127.0.0.1\r\n\r\n");
}

TEST(Http1ForwardHead, ChunkedRequestStaysChunkedAndEmptyPostSaysSo) {
  auto chunked = parse_request("POST /v3/watch HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
  std::string out;
  build_forward_request_head(chunked, "::1", out);
  EXPECT_EQ(out, "POST /v3/watch HTTP/1.1\r\nx-forwarded-for: ::1\r\ntransfer-encoding: chunked\r\n\r\n");
  auto empty = parse_request("POST /v3/kv/range HTTP/1.0\r\n\r\n");
  build_forward_request_head(empty, "1.2.3.4", out);
  EXPECT_EQ(out, "POST /v3/kv/range HTTP/1.1\r\nx-forwarded-for: 1.2.3.4\r\ncontent-length: 0\r\n\r\n");
}

TEST(Http1ForwardHead, WebsocketUpgradeKeepsItsHeaders) {
  auto req = parse_request("GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
  EXPECT_TRUE(is_websocket_upgrade(req));
  std::string out;
  build_forward_request_head(req, "1.2.3.4", out);
  EXPECT_EQ(out, "GET /ws HTTP/1.1\r\nx-forwarded-for: 1.2.3.4\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n");
  auto h2c = parse_request("GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n");
  EXPECT_FALSE(is_websocket_upgrade(h2c));
}

TEST(Http1ForwardHead, ResponseReframedForTheClient) {
  parsers::Http1Response resp;
  resp.status = 200;
  resp.reason = "OK";
  resp.framing = parsers::Http1BodyFraming::until_close;
  resp.headers.start_field();
  resp.headers.append_name("content-type", 12);
  resp.headers.append_value("application/json", 16);
  resp.headers.start_field();
  resp.headers.append_name("connection", 10);
  resp.headers.append_value("close", 5);
  auto http11 = parse_request("GET / HTTP/1.1\r\n\r\n");
  auto http10 = parse_request("GET / HTTP/1.0\r\n\r\n");
  EXPECT_EQ(client_framing(resp, http11), ClientFraming::chunked);
  EXPECT_EQ(client_framing(resp, http10), ClientFraming::until_close);
  std::string out;
  build_client_response_head(resp, ClientFraming::chunked, false, out);
  EXPECT_EQ(out, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n");
  build_client_response_head(resp, ClientFraming::until_close, false, out);
  EXPECT_EQ(out, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n");
}

TEST(Http1ForwardHead, ChunkHeaderIsHex) {
  std::string out;
  append_chunk_header(1 << 20, out);
  EXPECT_EQ(out, "100000\r\n");
}

}  // namespace
}  // namespace sidemux
