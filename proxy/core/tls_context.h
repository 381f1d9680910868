// The OpenSSL contexts of one config generation: one server context per TLS
// listener, one client context towards members. Built on the main thread
// (it reads certificate files) at start and on every reload, and shared by
// all workers: connections made with a context keep it alive (SSL_new takes
// a reference), so a reload never disturbs an open connection.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <vector>

#include "conf/config.h"

namespace sidemux::core {

class TlsContexts {
 public:
  // nullptr and `error` set when a certificate, key or CA file is unusable.
  static std::shared_ptr<const TlsContexts> build(const conf::Config& config, std::string& error);
  ~TlsContexts();
  TlsContexts(const TlsContexts&) = delete;
  TlsContexts& operator=(const TlsContexts&) = delete;

  // By listener index; nullptr for a plaintext listener.
  SSL_CTX* listener(size_t index) const { return index < listeners_.size() ? listeners_[index] : nullptr; }
  SSL_CTX* upstream() const { return upstream_; }

 private:
  TlsContexts() = default;
  std::vector<SSL_CTX*> listeners_;
  SSL_CTX* upstream_ = nullptr;
};

}  // namespace sidemux::core
