// One TLS connection driven through memory BIOs: ciphertext in and out is
// the Transport's business, plaintext goes to and comes from the session.
// Nothing here touches a socket, so nothing blocks the loop.
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace sidemux::core {

class TlsEndpoint {
 public:
  // Server side of an accepted connection.
  static std::unique_ptr<TlsEndpoint> server(SSL_CTX* ctx);
  // Client side towards a member: SNI and the name (or IP) to verify.
  // `alpn` (wire format) replaces the context's offer, e.g. http/1.1 for
  // forwarded HTTP/1 where the context offers h2.
  static std::unique_ptr<TlsEndpoint> client(SSL_CTX* ctx, const std::string& server_name, bool name_is_ip,
                                             std::string_view alpn = {});
  ~TlsEndpoint();
  TlsEndpoint(const TlsEndpoint&) = delete;
  TlsEndpoint& operator=(const TlsEndpoint&) = delete;

  enum class Status { ok, closed, error };
  // Ciphertext from the peer. Decrypted bytes are handed to `plain` in
  // chunks of `buf`; handshake progress happens here too.
  template <typename OnPlain>
  Status feed(const char* data, size_t len, char* buf, size_t buf_len, OnPlain&& plain);
  // Plaintext to send; held back until the handshake is done.
  void write(std::string_view plain);
  // Moves the ciphertext produced so far onto `out`.
  void drain_ciphertext(std::string& out);
  // Nothing waiting either way: fresh memory BIOs take the place of the
  // old, whose buffers keep the size of the largest burst they held (a
  // socket read one way, a write batch the other: after one 200 KiB write
  // in transport_test, 88 KB at the reading end, 220 KB at the writing end,
  // with the transport's own buffers).
  void release_idle_buffers();
  // For tests: what the two BIOs hold allocated, in bytes.
  size_t buffer_capacity() const;

  bool handshake_done() const { return handshake_done_; }
  // True once, right after the handshake completed.
  bool take_handshake_event();
  std::string_view alpn() const;
  const std::string& error() const { return error_; }
  bool resumed() const { return SSL_session_reused(ssl_) == 1; }

 private:
  explicit TlsEndpoint(SSL* ssl);
  Status advance_handshake();
  Status read_plain(char* buf, size_t buf_len, size_t& n);
  Status fail(int ret);

  SSL* ssl_;
  BIO* rbio_;  // ciphertext from the peer (owned by ssl_)
  BIO* wbio_;  // ciphertext to the peer (owned by ssl_)
  bool handshake_done_ = false;
  bool handshake_event_ = false;
  std::string pending_;  // plaintext written before the handshake finished
  std::string error_;
};

template <typename OnPlain>
TlsEndpoint::Status TlsEndpoint::feed(const char* data, size_t len, char* buf, size_t buf_len, OnPlain&& plain) {
  BIO_write(rbio_, data, static_cast<int>(len));
  if (!handshake_done_) {
    Status s = advance_handshake();
    if (s != Status::ok || !handshake_done_) return s;
  }
  for (;;) {
    size_t n = 0;
    Status s = read_plain(buf, buf_len, n);
    if (n > 0) plain(buf, n);
    if (s != Status::ok || n == 0) return s;
  }
}

}  // namespace sidemux::core
