#include "proxy/core/tls.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <string>

namespace sidemux::core {
namespace {

// A self-signed P-256 certificate for 127.0.0.1, made in memory.
struct TestCert {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  TestCert() {
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("test"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
    X509_EXTENSION* san = X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, "IP:127.0.0.1");
    X509_add_ext(cert, san, -1);
    X509_EXTENSION_free(san);
    X509_sign(cert, key, EVP_sha256());
  }
  ~TestCert() {
    X509_free(cert);
    EVP_PKEY_free(key);
  }
};

struct Contexts {
  TestCert cert;
  SSL_CTX* server = SSL_CTX_new(TLS_server_method());
  SSL_CTX* client = SSL_CTX_new(TLS_client_method());
  Contexts() {
    SSL_CTX_use_certificate(server, cert.cert);
    SSL_CTX_use_PrivateKey(server, cert.key);
    SSL_CTX_set_alpn_select_cb(
        server,
        [](SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned inlen, void*) {
          static const unsigned char kH2[] = "\x02h2";
          unsigned char* sel;
          if (SSL_select_next_proto(&sel, outlen, kH2, 3, in, inlen) != OPENSSL_NPN_NEGOTIATED)
            return SSL_TLSEXT_ERR_NOACK;
          *out = sel;
          return SSL_TLSEXT_ERR_OK;
        },
        nullptr);
    X509_STORE_add_cert(SSL_CTX_get_cert_store(client), cert.cert);
    SSL_CTX_set_verify(client, SSL_VERIFY_PEER, nullptr);
    SSL_CTX_set_alpn_protos(client, reinterpret_cast<const unsigned char*>("\x02h2"), 3);
  }
  ~Contexts() {
    SSL_CTX_free(server);
    SSL_CTX_free(client);
  }
};

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
