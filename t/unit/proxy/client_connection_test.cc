#include "proxy/client_connection.h"

#include <gtest/gtest.h>

#include "proxy/core/metric_names.h"
#include "t/unit/support/test_proxy.h"

namespace sidemux {
namespace {

using unit::TestProxy;

const core::HeaderList& get_livez() {
  static const core::HeaderList fields = {
      {":method", "GET"}, {":scheme", "http"}, {":authority", "sidemux"}, {":path", "/livez"}};
  return fields;
}

TEST(ClientConnection, Http1RequestGoesToTheHttp1Session) {
  TestProxy p;
  auto& client = p.raw_client();
  client.transport.write("GET /livez HTTP/1.1\r\nHost: sidemux\r\n\r\n");
  ASSERT_TRUE(p.run_until([&] { return client.owner.read.find("\r\n\r\nok") != std::string::npos; }));
  EXPECT_TRUE(client.owner.read.starts_with("HTTP/1.1 200 OK\r\n")) << client.owner.read;
  EXPECT_EQ(p.registry.counter_value(metrics::kConnectionsAccepted, {"client", "http1", "false"}), 1u);
}

TEST(ClientConnection, PrefaceSplitAcrossReadsGoesToTheHttp2Session) {
  TestProxy p;
  auto& client = p.h2_client();
  // This client's first write holds the whole preface; the second
  // connection below sends it a byte per loop turn.
  client.request(get_livez());
  ASSERT_TRUE(p.run_until([&] { return client.closed; }));
  EXPECT_EQ(client.header(":status"), "200");
  EXPECT_EQ(client.body, "ok");

  auto& slow = p.raw_client();
  const std::string preface(parsers::kHttp2Preface);
  for (char ch : preface) {
    slow.transport.write(std::string_view(&ch, 1));
    p.run_until([] { return false; }, 1);
  }
  // Past the preface the server session speaks: its SETTINGS arrive.
  ASSERT_TRUE(p.run_until([&] { return slow.owner.read.size() >= 9; }));
  EXPECT_EQ(slow.owner.read[3], '\x04');  // frame type SETTINGS
  EXPECT_EQ(p.registry.counter_value(metrics::kConnectionsAccepted, {"client", "h2", "false"}), 2u);
}

TEST(ClientConnection, TlsOnAPlaintextListenerIsRejected) {
  TestProxy p;
  auto& client = p.raw_client();
  client.transport.write(std::string_view("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11));
  ASSERT_TRUE(p.run_until([&] { return client.owner.errors > 0; }));
  EXPECT_EQ(client.owner.last_error, UV_EOF);
  EXPECT_EQ(p.registry.counter_value(metrics::kConnectionsRejected, {"client", "tls_handshake"}), 1u);
}

TEST(ClientConnection, NothingSentWithinTheClassifyTimeoutIsRejected) {
  TestProxy p("", "classify_timeout: 30ms");
  auto& client = p.raw_client();
  ASSERT_TRUE(p.run_until([&] { return client.owner.errors > 0; }));
  EXPECT_EQ(p.registry.counter_value(metrics::kConnectionsRejected, {"client", "classify_timeout"}), 1u);
}

}  // namespace
}  // namespace sidemux
