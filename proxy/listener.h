// A listening socket of one worker (SO_REUSEPORT: each worker has its own
// socket on the same address, bound by the server at start-up or by the
// reload that added the listener) and the per-listener metric series its
// connections count into.
//
// Reloads: a listener with the same name and address (same_socket) keeps its
// socket; new connections take its new settings (TLS block included). A
// removed one is retired: it stops accepting and drains its connections,
// and the worker frees it from its last close callback once they are gone.
#pragma once

#include <openssl/ssl.h>
#include <uv.h>

#include <memory>
#include <string>
#include <vector>

#include "conf/config.h"
#include "parsers/classify.h"
#include "proxy/connection_drain.h"
#include "proxy/core/metrics.h"
#include "proxy/core/tls_context.h"

namespace sidemux {

class Worker;

// Binds and listens on `address` with SO_REUSEPORT; port 0 picks a free port
// (the caller binds the other workers' sockets to the port it got). Returns
// the fd, or -1 with `error` set.
int bind_listener(const conf::HostPort& address, std::string& error);
uint16_t local_port(int fd);

// A reload keeps the socket of a listener with the same name and address;
// any other difference is a removal plus an addition.
bool same_socket(const conf::Listener& a, const conf::Listener& b);

class Listener {
 public:
  // `index` is the listener's position in the config, and in `tls`.
  Listener(Worker& worker, const conf::Listener& conf, size_t index, std::shared_ptr<const core::TlsContexts> tls,
           int fd);
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  bool start(std::string& error);
  // A reload kept this listener: connections accepted from now on use these.
  void update(const conf::Listener& conf, size_t index, std::shared_ptr<const core::TlsContexts> tls);
  // The worker drains: stop accepting, close the handles.
  void close();
  // A reload removed this listener: stop accepting and drain its connections
  // up to drain_timeout; the worker frees it once they and the handles are closed.
  void retire();
  bool retired() const { return retired_; }

  // Client connections of this listener, counted by ClientConnection.
  void connection_opened() { ++connections_; }
  void connection_closed();

  const std::string& name() const { return conf_.name; }
  const conf::Listener& conf() const { return conf_; }
  // The server context of the generation that last configured this
  // listener, nullptr for plaintext.
  SSL_CTX* tls_context() const { return tls_->listener(index_); }
  // A TLS listener with require_tls: false also takes plaintext clients.
  bool accepts_plaintext() const { return !conf_.tls || !conf_.tls->require_tls; }

  // Metric series of this listener, looked up once.
  void count_accepted(parsers::Protocol protocol, bool tls);
  metrics::Gauge& active(parsers::Protocol protocol, bool tls);
  void count_rejected(std::string_view reason);

 private:
  void on_connection(int status);
  void add_series();  // for a TLS block, the TLS series too
  void close_socket();
  void close_drain();
  void maybe_release();

  struct Series {
    metrics::Counter* accepted = nullptr;
    metrics::Gauge* active = nullptr;
  };
  Series& series(parsers::Protocol protocol, bool tls);

  Worker& worker_;
  conf::Listener conf_;
  size_t index_;
  std::shared_ptr<const core::TlsContexts> tls_;
  int fd_;
  uv_tcp_t tcp_;
  ConnectionDrain drain_;
  Series series_[2][2];  // [tls][h2]
  size_t connections_ = 0;
  int handles_open_ = 2;  // tcp_ and drain_'s timer
  bool retired_ = false;
};

}  // namespace sidemux
