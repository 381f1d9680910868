#include "proxy/client_connection.h"

#include <algorithm>
#include <cstring>

#include "proxy/http1_session.h"
#include "proxy/http2_session.h"
#include "proxy/listener.h"
#include "proxy/worker.h"

namespace sidemux {

namespace {
ClientConnection* self(uv_handle_t* h) { return static_cast<ClientConnection*>(h->data); }

uint64_t ms(conf::Duration d) { return static_cast<uint64_t>(d.count()); }
}  // namespace

ClientConnection::ClientConnection(Worker& worker, Listener& listener) : worker_(worker), listener_(listener) {
  uv_tcp_init(worker.loop(), &tcp_);
  uv_timer_init(worker.loop(), &timer_);
  tcp_.data = this;
  timer_.data = this;
  write_req_.data = this;
  handles_open_ = 2;
  worker.shared().connections.fetch_add(1, std::memory_order_relaxed);
}

ClientConnection::~ClientConnection() {
  worker_.shared().connections.fetch_sub(1, std::memory_order_relaxed);
}

void ClientConnection::start() {
  int len = sizeof peer_;
  uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&peer_), &len);
  uv_tcp_nodelay(&tcp_, 1);
  last_activity_ = uv_now(worker_.loop());
  uv_timer_start(
      &timer_, [](uv_timer_t* t) { self(reinterpret_cast<uv_handle_t*>(t))->on_timer(); },
      ms(worker_.config()->limits.classify_timeout), 0);
  resume_reading();
}

void ClientConnection::reject() { close(); }

void ClientConnection::resume_reading() {
  if (reading_ || closing_) return;
  reading_ = true;
  uv_read_start(
      stream(),
      [](uv_handle_t* h, size_t, uv_buf_t* buf) { *buf = self(h)->worker_.read_buffer(); },
      [](uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
        self(reinterpret_cast<uv_handle_t*>(s))->on_read(nread, buf);
      });
}

void ClientConnection::pause_reading() {
  if (!reading_) return;
  reading_ = false;
  uv_read_stop(stream());
}

void ClientConnection::on_read(ssize_t nread, const uv_buf_t* buf) {
  if (nread == 0) return;
  if (nread < 0) {
    // EOF or error: answers already produced still go out (a client may
    // half-close after pipelining), then the connection ends.
    pause_reading();
    close_after_flush();
    return;
  }
  last_activity_ = uv_now(worker_.loop());
  worker_.downstream_bytes_in().inc(static_cast<uint64_t>(nread));
  if (session_) {
    session_->on_read(buf->base, static_cast<size_t>(nread));
  } else {
    classify(buf->base, static_cast<size_t>(nread));
  }
  schedule();
}

void ClientConnection::classify(const char* data, size_t len) {
  // Only a prefix of the HTTP/2 preface is ever held back, so the sniff
  // buffer is the preface's size.
  size_t take = std::min(len, sniff_.size() - sniff_len_);
  std::memcpy(sniff_.data() + sniff_len_, data, take);
  sniff_len_ += take;
  auto protocol = parsers::classify(reinterpret_cast<const uint8_t*>(sniff_.data()), sniff_len_);
  if (protocol == parsers::Protocol::need_more) return;
  if (protocol == parsers::Protocol::tls) {
    // Plaintext listener: a TLS client cannot be served here.
    listener_.count_rejected("tls_handshake");
    worker_.log().debug("tls handshake on a plaintext listener", {{"listener", listener_.name()}});
    close();
    return;
  }
  start_session(protocol);
  if (closing_) return;
  session_->on_read(sniff_.data(), sniff_len_);
  if (take < len && !closing_) session_->on_read(data + take, len - take);
}

void ClientConnection::start_session(parsers::Protocol protocol) {
  protocol_ = protocol;
  listener_.count_accepted(protocol);
  listener_.active(protocol).inc();
  counted_active_ = true;
  if (protocol == parsers::Protocol::http2) {
    session_ = std::make_unique<Http2Session>(*this);
  } else {
    session_ = std::make_unique<Http1Session>(*this);
  }
  arm_idle_timer();
  if (worker_.draining()) session_->shutdown(false);
}

void ClientConnection::arm_idle_timer() {
  uv_timer_start(
      &timer_, [](uv_timer_t* t) { self(reinterpret_cast<uv_handle_t*>(t))->on_timer(); },
      ms(worker_.config()->limits.idle_timeout), 0);
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
  uint64_t idle_ms = ms(worker_.config()->limits.idle_timeout);
  uint64_t since = uv_now(worker_.loop()) - last_activity_;
  if (session_->idle() && !writing_ && out_.empty() && since >= idle_ms) {
    close();
    return;
  }
  uint64_t next = since < idle_ms ? idle_ms - since : idle_ms;
  uv_timer_start(
      &timer_, [](uv_timer_t* t) { self(reinterpret_cast<uv_handle_t*>(t))->on_timer(); }, next, 0);
}

void ClientConnection::write(std::string_view bytes) {
  if (closing_) return;
  out_.append(bytes);
  schedule();
}

void ClientConnection::schedule() {
  if (!closing_) worker_.schedule(this);
}

void ClientConnection::produce_and_flush() {
  if (closing_) return;
  if (session_ && !write_buffer_full()) session_->produce();
  flush();
}

void ClientConnection::flush() {
  if (writing_ || closing_) return;
  if (out_.empty()) {
    if (close_after_flush_) close();
    return;
  }
  std::swap(out_, inflight_);
  out_.clear();
  writing_ = true;
  last_activity_ = uv_now(worker_.loop());
  worker_.downstream_bytes_out().inc(inflight_.size());
  uv_buf_t buf = uv_buf_init(inflight_.data(), static_cast<unsigned>(inflight_.size()));
  int rc = uv_write(&write_req_, stream(), &buf, 1, [](uv_write_t* req, int status) {
    static_cast<ClientConnection*>(req->data)->on_write_done(status);
  });
  if (rc != 0) {
    writing_ = false;
    close();
  }
}

void ClientConnection::on_write_done(int status) {
  writing_ = false;
  inflight_.clear();
  if (status != 0 || closing_) {
    close();
    return;
  }
  // The buffer drained: let the session produce more (it may have paused).
  schedule();
}

void ClientConnection::close_after_flush() {
  close_after_flush_ = true;
  schedule();
}

void ClientConnection::shutdown(bool final) {
  if (!session_) {
    close();
    return;
  }
  session_->shutdown(final);
  schedule();
}

void ClientConnection::close() {
  if (closing_) return;
  closing_ = true;
  worker_.unschedule(this);
  if (counted_active_) listener_.active(protocol_).dec();
  auto closed = [](uv_handle_t* h) { self(h)->on_handle_closed(); };
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), closed);
}

void ClientConnection::on_handle_closed() {
  if (--handles_open_ == 0) worker_.release(this);
}

}  // namespace sidemux
