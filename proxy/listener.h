// A listening socket of one worker (SO_REUSEPORT: each worker has its own
// socket on the same address, bound by the server at start-up) and the
// per-listener metric series its connections count into.
#pragma once

#include <openssl/ssl.h>
#include <uv.h>

#include <string>
#include <vector>

#include "conf/config.h"
#include "parsers/classify.h"
#include "proxy/core/metrics.h"

namespace sidemux {

class Worker;

// Binds and listens on `address` with SO_REUSEPORT; port 0 picks a free port
// (the caller binds the other workers' sockets to the port it got). Returns
// the fd, or -1 with `error` set.
int bind_listener(const conf::HostPort& address, std::string& error);
uint16_t local_port(int fd);

class Listener {
 public:
  // `index` is the listener's position in the config (and its TLS context's).
  Listener(Worker& worker, const conf::Listener& conf, size_t index, int fd);
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  bool start(std::string& error);
  void close();  // stop accepting; the handle is closed on a later loop phase

  const std::string& name() const { return name_; }
  // The server context of the generation in force, nullptr for plaintext.
  SSL_CTX* tls_context() const;
  // A TLS listener with require_tls: false also takes plaintext clients.
  bool accepts_plaintext() const;

  // Metric series of this listener, looked up once.
  void count_accepted(parsers::Protocol protocol, bool tls);
  metrics::Gauge& active(parsers::Protocol protocol, bool tls);
  void count_rejected(std::string_view reason);

 private:
  void on_connection(int status);

  struct Series {
    metrics::Counter* accepted;
    metrics::Gauge* active;
  };
  Series& series(parsers::Protocol protocol, bool tls);

  Worker& worker_;
  std::string name_;
  size_t index_;
  int fd_;
  uv_tcp_t tcp_;
  Series series_[2][2];  // [tls][h2]
};

}  // namespace sidemux
