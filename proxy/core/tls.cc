#include "proxy/core/tls.h"

#include <openssl/x509v3.h>

#include <algorithm>

#include "proxy/core/openssl_error.h"

namespace sidemux::core {

namespace {
std::string describe(int ssl_error) {
  return take_openssl_error(ssl_error == SSL_ERROR_SYSCALL ? "unexpected end of the TLS stream" : "TLS error");
}

BIO* new_read_bio() {
  BIO* b = BIO_new(BIO_s_mem());
  // An empty memory BIO reports "retry" rather than EOF.
  if (b) BIO_set_mem_eof_return(b, -1);
  return b;
}

size_t bio_capacity(BIO* b) {
  BUF_MEM* mem = nullptr;
  BIO_get_mem_ptr(b, &mem);
  return mem ? mem->max : 0;
}
}  // namespace

TlsEndpoint::TlsEndpoint(SSL* ssl) : ssl_(ssl), rbio_(new_read_bio()), wbio_(BIO_new(BIO_s_mem())) {
  SSL_set_bio(ssl_, rbio_, wbio_);
}

void TlsEndpoint::release_idle_buffers() {
  if (!handshake_done_ || BIO_ctrl_pending(rbio_) != 0 || BIO_ctrl_pending(wbio_) != 0) return;
  BIO* r = new_read_bio();
  BIO* w = BIO_new(BIO_s_mem());
  if (!r || !w) {
    BIO_free(r);
    BIO_free(w);
    return;
  }
  SSL_set_bio(ssl_, r, w);  // frees the old pair
  rbio_ = r;
  wbio_ = w;
}

size_t TlsEndpoint::buffer_capacity() const { return bio_capacity(rbio_) + bio_capacity(wbio_); }

TlsEndpoint::~TlsEndpoint() {
  // OpenSSL drops a session from the server cache when its connection is
  // freed without a shutdown, which would defeat TLS 1.2 resumption by
  // session id. A connection that ended without a TLS error ended cleanly.
  if (handshake_done_ && error_.empty()) {
    SSL_set_quiet_shutdown(ssl_, 1);
    SSL_shutdown(ssl_);
  }
  SSL_free(ssl_);
}

std::unique_ptr<TlsEndpoint> TlsEndpoint::server(SSL_CTX* ctx) {
  std::unique_ptr<TlsEndpoint> t(new TlsEndpoint(SSL_new(ctx)));
  SSL_set_accept_state(t->ssl_);
  return t;
}

std::unique_ptr<TlsEndpoint> TlsEndpoint::client(SSL_CTX* ctx, const std::string& server_name, bool name_is_ip,
                                                 std::string_view alpn) {
  std::unique_ptr<TlsEndpoint> t(new TlsEndpoint(SSL_new(ctx)));
  SSL_set_connect_state(t->ssl_);
  if (!alpn.empty())
    SSL_set_alpn_protos(t->ssl_, reinterpret_cast<const unsigned char*>(alpn.data()), static_cast<unsigned>(alpn.size()));
  X509_VERIFY_PARAM* param = SSL_get0_param(t->ssl_);
  if (name_is_ip) {
    X509_VERIFY_PARAM_set1_ip_asc(param, server_name.c_str());
  } else {
    SSL_set_tlsext_host_name(t->ssl_, server_name.c_str());
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    X509_VERIFY_PARAM_set1_host(param, server_name.c_str(), server_name.size());
  }
  // The ClientHello goes out at once.
  t->advance_handshake();
  return t;
}

TlsEndpoint::Status TlsEndpoint::fail(int ret) {
  int err = SSL_get_error(ssl_, ret);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return Status::ok;
  if (err == SSL_ERROR_ZERO_RETURN) return Status::closed;
  error_ = describe(err);
  if (!handshake_done_ && SSL_get_verify_result(ssl_) != X509_V_OK)
    error_ += std::string(" (") + X509_verify_cert_error_string(SSL_get_verify_result(ssl_)) + ")";
  return Status::error;
}

TlsEndpoint::Status TlsEndpoint::advance_handshake() {
  int ret = SSL_do_handshake(ssl_);
  if (ret != 1) return fail(ret);
  handshake_done_ = true;
  handshake_event_ = true;
  if (!pending_.empty()) {
    write(pending_);
    pending_.clear();
    pending_.shrink_to_fit();
  }
  return Status::ok;
}

TlsEndpoint::Status TlsEndpoint::read_plain(char* buf, size_t buf_len, size_t& n) {
  int ret = SSL_read(ssl_, buf, static_cast<int>(buf_len));
  if (ret > 0) {
    n = static_cast<size_t>(ret);
    return Status::ok;
  }
  n = 0;
  return fail(ret);
}

void TlsEndpoint::write(std::string_view plain) {
  if (!handshake_done_) {
    pending_.append(plain);
    return;
  }
  // Memory BIOs take everything, so SSL_write completes (possibly in parts).
  while (!plain.empty()) {
    int ret = SSL_write(ssl_, plain.data(), static_cast<int>(plain.size()));
    if (ret <= 0) {
      fail(ret);
      return;
    }
    plain.remove_prefix(static_cast<size_t>(ret));
  }
}

void TlsEndpoint::drain_ciphertext(std::string& out) {
  // Read out rather than copied and BIO_reset: a reset of a writable memory
  // BIO clears its whole allocation, which grows to the largest batch.
  size_t n = BIO_ctrl_pending(wbio_);
  if (n == 0) return;
  size_t old = out.size();
  out.resize(old + n);
  int got = BIO_read(wbio_, out.data() + old, static_cast<int>(n));
  out.resize(old + static_cast<size_t>(std::max(got, 0)));
}

bool TlsEndpoint::take_handshake_event() {
  bool e = handshake_event_;
  handshake_event_ = false;
  return e;
}

std::string_view TlsEndpoint::alpn() const {
  const unsigned char* p;
  unsigned len;
  SSL_get0_alpn_selected(ssl_, &p, &len);
  return {reinterpret_cast<const char*>(p), len};
}

}  // namespace sidemux::core
