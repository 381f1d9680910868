// A TCP socket on a worker's loop with batched, bounded writes. Client
// connections and member connections both sit on one.
//
// Writes are appended to a buffer and go out in one uv_write per loop turn
// (the loop's WriteScheduler calls produce_and_flush() for every transport
// scheduled since the last turn). Past the high-water mark the owner stops
// producing until the buffer drained: that is where backpressure starts.
#pragma once

#include <uv.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/core/byte_queue.h"

#include "proxy/core/metrics.h"
#include "proxy/core/tls.h"

namespace sidemux::core {

class LoopContext;

class Transport {
 public:
  class Owner {
   public:
    virtual void on_transport_read(const char* data, size_t len) = 0;
    // EOF or a read/write error; the transport stops reading.
    virtual void on_transport_error(int uv_status) = 0;
    // Produce output now (the buffer has room).
    virtual void on_transport_produce() = 0;
    // The socket handle is closed; the owner may be freed from here on.
    virtual void on_transport_closed() = 0;
    // The TLS handshake completed (start_tls()).
    virtual void on_transport_secure() {}
    virtual ~Owner() = default;
  };

  static constexpr size_t kWriteHighWater = 64 * 1024;

  // Bytes read and written are counted into `bytes_in` and `bytes_out`.
  Transport(LoopContext& context, Owner& owner, metrics::Counter& bytes_in, metrics::Counter& bytes_out);
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // From now on bytes on the socket are TLS: reads are decrypted before the
  // owner sees them, writes encrypted. `already_read` is ciphertext the
  // owner read before it knew (the first bytes of a ClientHello).
  void start_tls(std::unique_ptr<TlsEndpoint> tls);
  void feed_tls(const char* ciphertext, size_t len);
  const TlsEndpoint* tls() const { return tls_.get(); }

  uv_tcp_t* tcp() { return &tcp_; }
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp_); }

  void write(std::string_view bytes);
  // Bytes of a queue's block, written from where they lie (one gathered
  // write with the rest of the batch); `ref` keeps them until the write
  // completed. Copied under TLS, which encrypts the batch anyway.
  void write(const uint8_t* data, size_t len, ByteQueue::BlockRef ref);
  // Bytes written and not yet handed to the socket.
  size_t write_buffered() const { return out_.size() + out_shared_bytes_ + tls_plain_.size(); }
  bool write_buffer_full() const { return write_buffered() >= kWriteHighWater; }
  bool write_pending() const { return writing_ || write_buffered() > 0; }
  // uv_now() of the last completed write (0: none yet).
  uint64_t last_write_progress() const { return last_write_progress_; }
  void schedule();  // produce_and_flush() on this loop turn
  void pause_reading();
  void resume_reading();
  void close_after_flush();
  void close();
  bool closing() const { return closing_; }
  // Nothing to write: frees the batch buffers, which otherwise keep their
  // capacity for the next turn's writes, and TLS's memory BIOs' (for a
  // connection gone quiet).
  void release_idle_buffers();
  // For tests: what the batch buffers and the BIOs hold allocated, in bytes.
  size_t buffer_capacity() const;

  // Called by the WriteScheduler for scheduled transports.
  void produce_and_flush();

 private:
  friend class WriteScheduler;
  void on_read(ssize_t nread, const uv_buf_t* buf);
  void on_write_done(int status);
  void flush();

  void deliver(const char* data, size_t len);

  LoopContext& context_;
  Owner& owner_;
  std::unique_ptr<TlsEndpoint> tls_;
  metrics::Counter& bytes_in_;
  metrics::Counter& bytes_out_;
  uv_tcp_t tcp_;
  uv_write_t write_req_;
  // Double buffer: the owner appends to out_ while inflight_ is being
  // written; both keep their capacity up to twice the high-water mark, so
  // steady traffic allocates nothing and a burst is given back.
  std::string out_;
  std::string inflight_;
  // Blocks' bytes in the batch, each at its place among out_'s bytes: it
  // goes out after out_[0, at).
  struct Shared {
    size_t at;
    const uint8_t* data;
    size_t len;
    ByteQueue::BlockRef ref;
  };
  std::vector<Shared> out_shared_;
  std::vector<Shared> inflight_shared_;
  size_t out_shared_bytes_ = 0;
  std::vector<uv_buf_t> bufs_;  // the gathered write, reused
  // Plaintext for TLS, encrypted once per flush: one SSL_write per batch
  // rather than per HTTP/2 frame makes full-size records.
  std::string tls_plain_;
  bool writing_ = false;
  bool reading_ = false;
  bool producing_ = false;
  bool close_after_flush_ = false;
  uint64_t last_write_progress_ = 0;
  bool closing_ = false;
  // The WriteScheduler's hook: scheduled for this turn, at this slot.
  bool scheduled = false;
  size_t schedule_slot = 0;
};

}  // namespace sidemux::core
