#include "proxy/core/transport.h"

#include "proxy/core/loop_context.h"

namespace sidemux::core {

namespace {
Transport* self(uv_handle_t* h) { return static_cast<Transport*>(h->data); }

// Steady traffic stays below the high-water mark plus one batch, and keeps
// its buffers; a burst past twice that (a large local answer, a window's
// worth of frames at once) gives its memory back once written, so an idle
// connection does not keep its peak.
constexpr size_t kKeepCapacity = 2 * Transport::kWriteHighWater;

void release_if_burst(std::string& buf) {
  if (buf.capacity() > kKeepCapacity) {
    std::string().swap(buf);
  } else {
    buf.clear();
  }
}
}  // namespace

Transport::Transport(LoopContext& context, Owner& owner, metrics::Counter& bytes_in, metrics::Counter& bytes_out)
    : context_(context), owner_(owner), bytes_in_(bytes_in), bytes_out_(bytes_out) {
  uv_tcp_init(context.loop(), &tcp_);
  tcp_.data = this;
  write_req_.data = this;
}

void Transport::resume_reading() {
  if (reading_ || closing_) return;
  reading_ = true;
  uv_read_start(
      stream(), [](uv_handle_t* h, size_t, uv_buf_t* buf) { *buf = self(h)->context_.buffers().read_buffer(); },
      [](uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
        self(reinterpret_cast<uv_handle_t*>(s))->on_read(nread, buf);
      });
}

void Transport::pause_reading() {
  if (!reading_) return;
  reading_ = false;
  uv_read_stop(stream());
}

void Transport::on_read(ssize_t nread, const uv_buf_t* buf) {
  if (nread == 0) return;
  if (nread < 0) {
    pause_reading();
    owner_.on_transport_error(static_cast<int>(nread));
    return;
  }
  bytes_in_.inc(static_cast<uint64_t>(nread));
  deliver(buf->base, static_cast<size_t>(nread));
  schedule();
}

void Transport::deliver(const char* data, size_t len) {
  if (tls_) {
    feed_tls(data, len);
  } else {
    owner_.on_transport_read(data, len);
  }
}

void Transport::start_tls(std::unique_ptr<TlsEndpoint> tls) {
  tls_ = std::move(tls);
  tls_->drain_ciphertext(out_);  // a client's ClientHello
  schedule();
}

void Transport::feed_tls(const char* ciphertext, size_t len) {
  uv_buf_t plain = context_.buffers().tls_buffer();
  auto notify_secure = [this] {
    if (tls_->take_handshake_event()) owner_.on_transport_secure();
  };
  auto status = tls_->feed(ciphertext, len, plain.base, plain.len, [&](const char* p, size_t n) {
    notify_secure();
    if (!closing_) owner_.on_transport_read(p, n);
  });
  if (closing_) return;
  notify_secure();
  // Handshake messages and alerts go out even when no plaintext was written.
  tls_->drain_ciphertext(out_);
  schedule();
  if (status == TlsEndpoint::Status::error) {
    owner_.on_transport_error(UV_EPROTO);
  } else if (status == TlsEndpoint::Status::closed) {
    owner_.on_transport_error(UV_EOF);
  }
}

void Transport::write(std::string_view bytes) {
  if (closing_) return;
  (tls_ ? tls_plain_ : out_).append(bytes);
  // Inside produce_and_flush() the flush follows anyway.
  if (!producing_) schedule();
}

void Transport::write(const uint8_t* data, size_t len, ByteQueue::BlockRef ref) {
  if (closing_) return;
  if (tls_) return write({reinterpret_cast<const char*>(data), len});
  out_shared_.push_back({out_.size(), data, len, std::move(ref)});
  out_shared_bytes_ += len;
  if (!producing_) schedule();
}

void Transport::schedule() {
  if (!closing_) context_.scheduler().schedule(this);
}

void Transport::produce_and_flush() {
  if (closing_) return;
  producing_ = true;
  if (!write_buffer_full()) owner_.on_transport_produce();
  producing_ = false;
  flush();
}

void Transport::flush() {
  if (closing_) return;
  if (!tls_plain_.empty()) {
    tls_->write(tls_plain_);
    release_if_burst(tls_plain_);
    tls_->drain_ciphertext(out_);
  }
  if (writing_) return;
  if (out_.empty() && out_shared_.empty()) {
    if (close_after_flush_) close();
    return;
  }
  std::swap(out_, inflight_);
  std::swap(out_shared_, inflight_shared_);
  out_.clear();
  bytes_out_.inc(inflight_.size() + out_shared_bytes_);
  out_shared_bytes_ = 0;
  writing_ = true;
  // out_'s bytes with the blocks' between them, in order.
  bufs_.clear();
  size_t from = 0;
  auto own = [this, &from](size_t to) {
    if (to > from) bufs_.push_back(uv_buf_init(inflight_.data() + from, static_cast<unsigned>(to - from)));
    from = to;
  };
  for (const Shared& piece : inflight_shared_) {
    own(piece.at);
    bufs_.push_back(uv_buf_init(reinterpret_cast<char*>(const_cast<uint8_t*>(piece.data)),
                                static_cast<unsigned>(piece.len)));
  }
  own(inflight_.size());
  int rc = uv_write(&write_req_, stream(), bufs_.data(), static_cast<unsigned>(bufs_.size()),
                    [](uv_write_t* req, int status) {
    static_cast<Transport*>(req->data)->on_write_done(status);
  });
  if (rc != 0) {
    writing_ = false;
    inflight_shared_.clear();
    owner_.on_transport_error(rc);
  }
}

void Transport::release_idle_buffers() {
  if (write_pending()) return;
  std::string().swap(out_);
  std::string().swap(inflight_);
  std::string().swap(tls_plain_);
  std::vector<Shared>().swap(out_shared_);
  std::vector<Shared>().swap(inflight_shared_);
  std::vector<uv_buf_t>().swap(bufs_);
  if (tls_) tls_->release_idle_buffers();
}

size_t Transport::buffer_capacity() const {
  return out_.capacity() + inflight_.capacity() + tls_plain_.capacity() +
         (out_shared_.capacity() + inflight_shared_.capacity()) * sizeof(Shared) + bufs_.capacity() * sizeof(uv_buf_t) +
         (tls_ ? tls_->buffer_capacity() : 0);
}

void Transport::on_write_done(int status) {
  writing_ = false;
  release_if_burst(inflight_);
  inflight_shared_.clear();  // the blocks' bytes are the socket's now
  if (out_.empty()) release_if_burst(out_);
  last_write_progress_ = uv_now(context_.loop());
  if (closing_) return;
  if (status != 0) {
    owner_.on_transport_error(status);
    return;
  }
  // The buffer drained: let the owner produce more (it may have paused).
  schedule();
}

void Transport::close_after_flush() {
  close_after_flush_ = true;
  schedule();
}

void Transport::close() {
  if (closing_) return;
  closing_ = true;
  context_.scheduler().unschedule(this);
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), [](uv_handle_t* h) { self(h)->owner_.on_transport_closed(); });
}

}  // namespace sidemux::core
