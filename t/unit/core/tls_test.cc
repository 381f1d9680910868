#include "proxy/core/tls.h"

#include <gtest/gtest.h>

#include <string>

#include "t/unit/support/test_tls.h"

namespace sidemux::core {
namespace {

using Contexts = unit::TestTlsContexts;

// Moves ciphertext between the two ends until neither has anything to say,
// collecting each side's plaintext.
void pump(TlsEndpoint& a, TlsEndpoint& b, std::string& a_plain, std::string& b_plain,
          TlsEndpoint::Status* b_status = nullptr) {
  char buf[16384];
  for (int round = 0; round < 20; ++round) {
    std::string a_out, b_out;
    a.drain_ciphertext(a_out);
    b.drain_ciphertext(b_out);
    if (a_out.empty() && b_out.empty()) return;
    if (!a_out.empty()) {
      auto s = b.feed(a_out.data(), a_out.size(), buf, sizeof buf, [&](const char* p, size_t n) { b_plain.append(p, n); });
      if (b_status) *b_status = s;
    }
    if (!b_out.empty()) a.feed(b_out.data(), b_out.size(), buf, sizeof buf, [&](const char* p, size_t n) { a_plain.append(p, n); });
  }
}

TEST(Tls, HandshakeAlpnAndBothDirections) {
  Contexts c;
  auto client = TlsEndpoint::client(c.client, "127.0.0.1", true);
  auto server = TlsEndpoint::server(c.server);
  // Written before the handshake: held back, then sent.
  client->write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  std::string client_plain, server_plain;
  pump(*client, *server, client_plain, server_plain);
  ASSERT_TRUE(client->handshake_done()) << client->error();
  ASSERT_TRUE(server->handshake_done()) << server->error();
  EXPECT_TRUE(server->take_handshake_event());
  EXPECT_FALSE(server->take_handshake_event());
  EXPECT_EQ(server->alpn(), "h2");
  EXPECT_EQ(client->alpn(), "h2");
  EXPECT_EQ(server_plain, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

  std::string big(100000, 'x');  // several records
  server->write(big);
  pump(*client, *server, client_plain, server_plain);
  EXPECT_EQ(client_plain, big);
}

TEST(Tls, ClientRejectsAWrongName) {
  Contexts c;
  auto client = TlsEndpoint::client(c.client, "10.9.9.9", true);
  auto server = TlsEndpoint::server(c.server);
  std::string a, b;
  pump(*client, *server, a, b);
  EXPECT_FALSE(client->handshake_done());
  EXPECT_NE(client->error().find("certificate"), std::string::npos) << client->error();
}

TEST(Tls, GarbageFailsTheHandshake) {
  Contexts c;
  auto server = TlsEndpoint::server(c.server);
  const char garbage[] = "\x16\x03\x01\x00\x10 this is not a ClientHello";
  char buf[1024];
  auto status = server->feed(garbage, sizeof garbage - 1, buf, sizeof buf, [](const char*, size_t) {});
  EXPECT_EQ(status, TlsEndpoint::Status::error);
  EXPECT_FALSE(server->error().empty());
}

}  // namespace
}  // namespace sidemux::core
