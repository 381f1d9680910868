#include "proxy/client_connection.h"

#include <algorithm>
#include <cstring>

#include "proxy/core/uv_time.h"
#include "proxy/http1_session.h"
#include "proxy/http2_session.h"
#include "proxy/listener.h"
#include "proxy/worker.h"

namespace sidemux {

using core::ms;

ClientConnection::ClientConnection(Worker& worker, Listener& listener)
    : worker_(worker),
      listener_(listener),
      transport_(worker.context(), *this, worker.downstream_bytes_in(), worker.downstream_bytes_out()) {
  uv_timer_init(worker.loop(), &timer_);
  timer_.data = this;
  worker.process().connections.fetch_add(1, std::memory_order_relaxed);
  listener.connection_opened();
}

ClientConnection::~ClientConnection() {
  // The session goes first: its streams may still refer to this connection.
  session_.reset();
  worker_.process().connections.fetch_sub(1, std::memory_order_relaxed);
  listener_.connection_closed();
}

void ClientConnection::start() {
  int len = sizeof peer_;
  uv_tcp_getpeername(transport_.tcp(), reinterpret_cast<sockaddr*>(&peer_), &len);
  uv_tcp_nodelay(transport_.tcp(), 1);
  last_activity_ = last_read_ = uv_now(worker_.loop());
  arm_timer(ms(worker_.config()->limits.classify_timeout));
  transport_.resume_reading();
}

void ClientConnection::arm_timer(uint64_t timeout) {
  uv_timer_start(
      &timer_, [](uv_timer_t* t) { static_cast<ClientConnection*>(t->data)->on_timer(); }, timeout, 0);
}

void ClientConnection::on_transport_read(const char* data, size_t len) {
  last_read_ = uv_now(worker_.loop());
  ping_sent_ = 0;  // any frame answers a keepalive PING
  // HTTP/2 control frames (PING, SETTINGS) keep no connection in use: the
  // session reports stream frames through note_activity().
  if (protocol_ != parsers::Protocol::http2) last_activity_ = last_read_;
  if (session_) {
    session_->on_read(data, len);
  } else {
    classify(data, len);
  }
  // A request head under way brings the timer forward to its deadline.
  uint64_t deadline = session_ && !closing_ ? session_->request_deadline() : 0;
  if (deadline != 0 && deadline != armed_deadline_) {
    armed_deadline_ = deadline;
    arm_timer(deadline > last_read_ ? deadline - last_read_ : 0);
  }
}

void ClientConnection::on_transport_error(int status) {
  const core::TlsEndpoint* tls = transport_.tls();
  if (tls && !tls->handshake_done()) {
    // Counted once: a later error (the alert's write failing) only closes.
    if (tls_failed_) {
      close();
      return;
    }
    tls_failed_ = true;
    listener_.count_rejected("tls_handshake");
    worker_.log().debug("tls handshake failed", {{"listener", listener_.name()}, {"error", tls->error()}});
    // The alert OpenSSL wrote (protocol_version, bad certificate...) tells
    // the client why; it goes out before the close.
    transport_.pause_reading();
    transport_.close_after_flush();
    return;
  }
  // On EOF, answers already produced still go out (a client may half-close
  // after pipelining); on an error there is no one left to read them.
  if (status == UV_EOF) {
    transport_.close_after_flush();
  } else {
    close();
  }
}

void ClientConnection::on_transport_produce() {
  if (session_) session_->produce();
}

void ClientConnection::classify(const char* data, size_t len) {
  // Only a prefix of the HTTP/2 preface is ever held back, so the sniff
  // buffer is the preface's size.
  size_t take = std::min(len, sniff_.size() - sniff_len_);
  std::memcpy(sniff_.data() + sniff_len_, data, take);
  sniff_len_ += take;
  auto protocol = parsers::classify(reinterpret_cast<const uint8_t*>(sniff_.data()), sniff_len_);
  if (protocol == parsers::Protocol::need_more) return;
  bool secure = transport_.tls() != nullptr;
  if (protocol == parsers::Protocol::tls && !secure && listener_.tls_context()) {
    start_tls(data + take, len - take);
    return;
  }
  if (protocol == parsers::Protocol::tls || (!secure && !listener_.accepts_plaintext())) {
    // TLS on a plaintext listener (or nested in TLS), or plaintext where
    // require_tls holds: nothing here can serve it.
    listener_.count_rejected("tls_handshake");
    worker_.log().debug(secure || listener_.tls_context() ? "plaintext on a TLS listener" : "tls on a plaintext listener",
                        {{"listener", listener_.name()}});
    close();
    return;
  }
  start_session(protocol);
  session_->on_read(sniff_.data(), sniff_len_);
  if (take < len && !closing_) session_->on_read(data + take, len - take);
}

void ClientConnection::start_tls(const char* rest, size_t rest_len) {
  // The sniffed bytes were the start of a ClientHello; classification
  // starts over on the plaintext once the handshake is done.
  std::array<char, parsers::kHttp2Preface.size()> hello = sniff_;
  size_t hello_len = sniff_len_;
  sniff_len_ = 0;
  transport_.start_tls(core::TlsEndpoint::server(listener_.tls_context()));
  transport_.feed_tls(hello.data(), hello_len);
  // Bytes after a ClientHello that already failed would fail again.
  if (!closing_ && !tls_failed_ && rest_len > 0) transport_.feed_tls(rest, rest_len);
}

void ClientConnection::on_transport_secure() {
  worker_.log().debug("tls handshake done", {{"listener", listener_.name()},
                                             {"alpn", transport_.tls()->alpn()},
                                             {"resumed", transport_.tls()->resumed()}});
}

void ClientConnection::start_session(parsers::Protocol protocol) {
  protocol_ = protocol;
  bool secure = transport_.tls() != nullptr;
  listener_.count_accepted(protocol, secure);
  listener_.active(protocol, secure).inc();
  counted_active_ = true;
  if (protocol == parsers::Protocol::http2) {
    session_ = std::make_unique<Http2Session>(*this);
  } else {
    session_ = std::make_unique<Http1Session>(*this);
  }
  const auto& limits = worker_.config()->limits;
  arm_timer(std::min(ms(limits.idle_timeout), ms(limits.keepalive_interval)));
  if (worker_.draining() || listener_.retired()) session_->shutdown(false);
}

void ClientConnection::on_timer() {
  if (!session_) {
    listener_.count_rejected("classify_timeout");
    close();
    return;
  }
  // Reads do not re-arm the timer (that would cost a timer-heap update per
  // read); instead the timer checks here whether the connection was idle for
  // the whole period and re-arms for the remainder if not.
  uint64_t now = uv_now(worker_.loop());
  uint64_t deadline = session_->request_deadline();
  if (deadline != 0 && now >= deadline) {
    listener_.count_rejected("classify_timeout");
    close_with_goaway();
    return;
  }
  uint64_t idle_ms = ms(worker_.config()->limits.idle_timeout);
  uint64_t next = idle_ms;
  if (transport_.write_pending()) {
    // Stalled: a client that stopped reading our answers for idle_timeout.
    uint64_t since = now - std::max(last_read_, transport_.last_write_progress());
    if (since >= idle_ms) {
      close();
      return;
    }
    next = idle_ms - since;
  } else if (session_->idle()) {
    // Idle: no stream or request in progress and nothing to write. An
    // HTTP/1 answer written counts as use; HTTP/2 writes may be PING ACKs
    // (the session notes a stream's end instead).
    uint64_t used = last_activity_;
    if (protocol_ != parsers::Protocol::http2) used = std::max(used, transport_.last_write_progress());
    uint64_t since = now - used;
    if (since >= idle_ms) {
      // HTTP/2 clients get a GOAWAY naming the last stream served, so a
      // request racing the close knows it was not processed.
      session_->shutdown(true);
      transport_.close_after_flush();
      return;
    }
    next = idle_ms - since;
  }
  if (!session_->idle() && !keepalive(now, next)) return;
  // A stream may open before the next wake: keepalive must be looked at
  // within its interval (one wake per interval and connection).
  next = std::min(next, ms(worker_.config()->limits.keepalive_interval));
  if (deadline != 0) next = std::min(next, deadline - now);
  arm_timer(next);
}

bool ClientConnection::release_idle_memory(uint64_t since) {
  if (!session_ || closing_ || transport_.write_pending()) return false;
  uint64_t used = std::max({last_read_, last_activity_, transport_.last_write_progress()});
  if (used >= since || used == released_at_) return false;
  released_at_ = used;
  transport_.release_idle_buffers();
  session_->release_idle_memory();
  return true;
}

bool ClientConnection::keepalive(uint64_t now, uint64_t& next) {
  const auto& limits = worker_.config()->limits;
  uint64_t interval = ms(limits.keepalive_interval);
  uint64_t timeout = ms(limits.keepalive_timeout);
  if (ping_sent_ != 0) {
    if (now - ping_sent_ >= timeout) {
      // Nothing at all came back: the client is gone without closing TCP
      // (a dropped network, a frozen process). Its streams end with the
      // connection, which cancels their member streams.
      worker_.log().debug("client stopped answering (PING timeout)", {{"listener", listener_.name()}});
      close();
      return false;
    }
    next = std::min(next, timeout - (now - ping_sent_));
    return true;
  }
  uint64_t quiet = now - last_read_;
  if (quiet < interval) {
    next = std::min(next, interval - quiet);
  } else if (session_->ping()) {
    ping_sent_ = now;
    next = std::min(next, timeout);
  }
  return true;
}

void ClientConnection::close_with_goaway() {
  // The GOAWAY is queued and handed to the socket now; close() then drops
  // whatever did not fit, so a client that stopped reading cannot hold the
  // connection.
  session_->shutdown(true);
  transport_.produce_and_flush();
  close();
}

void ClientConnection::note_activity() { last_activity_ = uv_now(worker_.loop()); }

void ClientConnection::shutdown(bool final) {
  if (!session_) {
    close();
    return;
  }
  session_->shutdown(final);
  transport_.schedule();
}

void ClientConnection::close() {
  if (closing_) return;
  closing_ = true;
  if (counted_active_) listener_.active(protocol_, transport_.tls() != nullptr).dec();
  transport_.close();
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_),
           [](uv_handle_t* h) { static_cast<ClientConnection*>(h->data)->on_handle_closed(); });
}

void ClientConnection::on_transport_closed() {
  // A transport that closed itself (write error) takes the connection along.
  close();
  on_handle_closed();
}

void ClientConnection::on_handle_closed() {
  if (--handles_open_ == 0) worker_.release(this);
}

}  // namespace sidemux
