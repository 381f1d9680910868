// One worker: one thread, one uv loop, its listeners' sockets, its client
// connections, its view of the cluster and its metrics registry. Everything
// here is touched only by the worker's own thread, except post().
#pragma once

#include <uv.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "conf/config.h"
#include "proxy/local_handlers.h"
#include "proxy/log.h"
#include "proxy/metrics.h"
#include "proxy/tls_context.h"
#include "upstream/cluster.h"

namespace sidemux {

class ClientConnection;
class Listener;
class Transport;

// What all workers share: immutable after start, or atomic.
struct SharedState {
  Logger& log;
  std::vector<const metrics::Registry*> registries;  // the server's and every worker's
  std::atomic<uint32_t> connections{0};               // open client connections, for max_connections
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  unsigned workers = 1;
};

class Worker {
 public:
  // `fds` are bound, listening sockets, one per config listener, in order.
  Worker(unsigned index, SharedState& shared, metrics::Registry& registry,
         std::shared_ptr<const conf::Config> config, std::shared_ptr<const TlsContexts> tls, std::vector<int> fds);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void start();  // runs the loop on a new thread
  void join();

  // Thread-safe: runs fn on the worker's thread.
  void post(std::function<void(Worker&)> fn);
  // Thread-safe: stop accepting, drain connections up to drain_timeout, end
  // the loop. `done` runs on the worker thread as its last act.
  void drain(std::function<void()> done);
  // Thread-safe: connections accepted from now on use `config` and its
  // TLS contexts.
  void set_config(std::shared_ptr<const conf::Config> config, std::shared_ptr<const TlsContexts> tls);

  // Worker-thread API.
  uv_loop_t* loop() { return &loop_; }
  unsigned index() const { return index_; }
  const std::shared_ptr<const conf::Config>& config() const { return config_; }
  const Logger& log() const { return shared_.log; }
  metrics::Registry& metrics() { return registry_; }
  SharedState& shared() { return shared_; }
  upstream::Cluster& cluster() { return *cluster_; }
  bool draining() const { return draining_; }
  // Hot-path series, looked up once per worker.
  metrics::Gauge& streams_active() { return streams_active_; }
  metrics::Counter& downstream_bytes_in() { return downstream_in_; }
  metrics::Counter& downstream_bytes_out() { return downstream_out_; }
  metrics::Counter& upstream_bytes_in() { return upstream_in_; }
  metrics::Counter& upstream_bytes_out() { return upstream_out_; }
  LocalContext local_context() const;

  // The read buffer every connection of this worker reads into: reads are
  // handled to completion inside the read callback, so one is enough.
  uv_buf_t read_buffer() { return uv_buf_init(read_buf_.get(), kReadBufferSize); }
  // Decrypted bytes of one read, handed on before the next read: a TLS
  // record's worth at a time.
  uv_buf_t tls_buffer() { return uv_buf_init(tls_buf_.get(), kTlsBufferSize); }
  const std::shared_ptr<const TlsContexts>& tls() const { return tls_; }

  void adopt(std::unique_ptr<ClientConnection> conn);
  void release(ClientConnection* conn);  // from the connection's last close callback
  // The transport wants produce() and a write on this loop turn.
  void schedule(Transport* t);
  void unschedule(Transport* t);

 private:
  static constexpr size_t kReadBufferSize = 64 * 1024;
  static constexpr size_t kTlsBufferSize = 16 * 1024;

  void run();
  void on_async();
  void on_prepare();
  void begin_drain();
  static void on_drain_timer(uv_timer_t* t);
  void finish_drain_if_empty();
  void close_handles();

  unsigned index_;
  SharedState& shared_;
  metrics::Registry& registry_;
  std::shared_ptr<const conf::Config> config_;
  std::shared_ptr<const TlsContexts> tls_;
  std::vector<int> fds_;
  std::unique_ptr<upstream::Cluster> cluster_;
  metrics::Gauge& streams_active_;
  metrics::Counter& downstream_in_;
  metrics::Counter& downstream_out_;
  metrics::Counter& upstream_in_;
  metrics::Counter& upstream_out_;

  uv_loop_t loop_;
  uv_async_t async_;
  uv_prepare_t prepare_;
  uv_idle_t idle_;  // active while work is left for the next turn: poll must not wait
  uv_timer_t drain_timer_;
  uv_thread_t thread_{};
  bool started_ = false;

  std::mutex mailbox_mu_;
  std::vector<std::function<void(Worker&)>> mailbox_;

  std::unique_ptr<char[]> read_buf_;
  std::unique_ptr<char[]> tls_buf_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::vector<std::unique_ptr<ClientConnection>> connections_;
  std::vector<Transport*> scheduled_;
  std::vector<Transport*> producing_;  // swapped with scheduled_ while flushing

  bool draining_ = false;
  bool final_goaway_sent_ = false;
  bool closing_ = false;
  std::function<void()> drain_done_;
};

}  // namespace sidemux
