// TLS material made in memory for unit tests: no files, no fixed keys.
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

namespace sidemux::unit {

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

// A server and a client context: the server presents the certificate and
// selects h2 by ALPN, the client trusts the certificate and offers h2.
struct TestTlsContexts {
  TestCert cert;
  SSL_CTX* server = SSL_CTX_new(TLS_server_method());
  SSL_CTX* client = SSL_CTX_new(TLS_client_method());
  TestTlsContexts() {
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
  ~TestTlsContexts() {
    SSL_CTX_free(server);
    SSL_CTX_free(client);
  }
};

}  // namespace sidemux::unit
