#include "proxy/listener.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "proxy/client_connection.h"
#include "proxy/core/address.h"
#include "proxy/core/metric_names.h"
#include "proxy/worker.h"

namespace sidemux {

namespace {
// Same as nginx and HAProxy; the kernel caps it at somaxconn.
constexpr int kBacklog = 511;
}  // namespace

int bind_listener(const conf::HostPort& address, std::string& error) {
  sockaddr_storage ss;
  if (!core::to_sockaddr(address, ss)) {
    error = std::string(address.ipv6 ? "not an IPv6 address: " : "not an IPv4 address: ") + address.host;
    return -1;
  }
  socklen_t len = core::sockaddr_length(ss);
  // libuv 1.44 has no UV_TCP_REUSEPORT, so the socket is made here and
  // handed to the worker's loop with uv_tcp_open.
  int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::string("socket: ") + std::strerror(errno);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (address.ipv6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(fd, kBacklog) != 0) {
    error = "cannot listen on " + address.to_string() + ": " + std::strerror(errno);
    ::close(fd);
    return -1;
  }
  return fd;
}

uint16_t local_port(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  return core::port_of(reinterpret_cast<sockaddr*>(&ss));
}

bool same_socket(const conf::Listener& a, const conf::Listener& b) {
  return a.name == b.name && a.address.to_string() == b.address.to_string();
}

Listener::Listener(Worker& worker, const conf::Listener& conf, size_t index,
                   std::shared_ptr<const core::TlsContexts> tls, int fd)
    : worker_(worker),
      conf_(conf),
      index_(index),
      tls_(std::move(tls)),
      fd_(fd),
      drain_(worker.loop(), [this](ConnectionDrain::Step step) { worker_.drain_step(step, this); }) {
  add_series();
  uv_tcp_init(worker.loop(), &tcp_);
  tcp_.data = this;
  // Zero series from the start, so rate() and alerts work before the first rejection.
  for (std::string_view reason : {"limit", "classify_timeout", "bad_request", "tls_handshake"})
    worker.metrics().counter(metrics::kConnectionsRejected, {conf_.name, reason});
}

void Listener::add_series() {
  for (bool tls : {false, true}) {
    // Plaintext series always; TLS ones on TLS listeners.
    if (tls && !conf_.tls) continue;
    std::string_view tls_label = tls ? "true" : "false";
    for (std::string_view protocol : {"http1", "h2"}) {
      Series& s = series_[tls][protocol == "h2"];
      if (s.accepted) continue;
      s.accepted = &worker_.metrics().counter(metrics::kConnectionsAccepted, {conf_.name, protocol, tls_label});
      s.active = &worker_.metrics().gauge(metrics::kConnectionsActive, {conf_.name, protocol, tls_label});
    }
  }
}

void Listener::update(const conf::Listener& conf, size_t index, std::shared_ptr<const core::TlsContexts> tls) {
  conf_ = conf;
  index_ = index;
  tls_ = std::move(tls);
  add_series();
}

bool Listener::start(std::string& error) {
  int rc = uv_tcp_open(&tcp_, fd_);
  if (rc == 0) {
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(&tcp_), kBacklog, [](uv_stream_t* s, int status) {
      static_cast<Listener*>(s->data)->on_connection(status);
    });
  }
  if (rc != 0) {
    error = std::string("listener ") + conf_.name + ": " + uv_strerror(rc);
    return false;
  }
  return true;
}

void Listener::close() {
  close_socket();
  close_drain();
}

void Listener::close_socket() {
  if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&tcp_))) return;
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), [](uv_handle_t* h) {
    auto* self = static_cast<Listener*>(h->data);
    --self->handles_open_;
    self->maybe_release();
  });
}

void Listener::close_drain() {
  drain_.close([this] {
    --handles_open_;
    maybe_release();
  });
}

void Listener::retire() {
  retired_ = true;
  close_socket();
  if (connections_ == 0) return close_drain();
  drain_.start(worker_.config()->limits.drain_timeout);
}

void Listener::connection_closed() {
  if (--connections_ == 0 && retired_) close_drain();
}

// From a close callback: a retired listener leaves the worker once its
// handles are closed and its connections gone (connection_closed() closes
// the drain timer only then).
void Listener::maybe_release() {
  if (retired_ && handles_open_ == 0) worker_.release(this);
}

void Listener::on_connection(int status) {
  if (status != 0) {
    worker_.log().warn("accept failed", {{"listener", conf_.name}, {"error", uv_strerror(status)}});
    return;
  }
  auto conn = std::make_unique<ClientConnection>(worker_, *this);
  ClientConnection* c = conn.get();
  worker_.adopt(std::move(conn));
  if (uv_accept(reinterpret_cast<uv_stream_t*>(&tcp_), c->stream()) != 0) {
    c->close();
    return;
  }
  // The count includes this connection (the constructor added it).
  if (worker_.process().connections.load(std::memory_order_relaxed) > worker_.config()->limits.max_connections) {
    count_rejected("limit");
    c->close();
    return;
  }
  c->start();
}

Listener::Series& Listener::series(parsers::Protocol protocol, bool tls) {
  return series_[tls][protocol == parsers::Protocol::http2];
}

void Listener::count_accepted(parsers::Protocol protocol, bool tls) { series(protocol, tls).accepted->inc(); }

metrics::Gauge& Listener::active(parsers::Protocol protocol, bool tls) { return *series(protocol, tls).active; }

void Listener::count_rejected(std::string_view reason) {
  // Rejections are rare; the series is looked up when it happens.
  worker_.metrics().counter(metrics::kConnectionsRejected, {conf_.name, reason}).inc();
}

}  // namespace sidemux
