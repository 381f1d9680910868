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
#include "proxy/core/log.h"
#include "proxy/core/loop_context.h"
#include "proxy/core/metrics.h"
#include "proxy/connection_drain.h"
#include "proxy/core/tls_context.h"
#include "proxy/local_handlers.h"
#include "upstream/cluster.h"

namespace sidemux {

class ClientConnection;
class Listener;

// What all workers of the process share: immutable after start, or atomic.
struct ProcessState {
  core::Logger& log;
  std::vector<const metrics::Registry*> registries;  // the server's and every worker's
  std::atomic<uint32_t> connections{0};               // open client connections, for max_connections
  std::atomic<uint64_t> blocks_freed{0};              // bytes the workers' small-block lists gave back
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  unsigned workers = 1;
  // Members' health, written by the one checker (Server), read by every worker.
  upstream::HealthBoard health;
};

class Worker {
 public:
  // `fds` are bound, listening sockets, one per config listener, in order.
  Worker(unsigned index, ProcessState& process, metrics::Registry& registry,
         std::shared_ptr<const conf::Config> config, std::shared_ptr<const core::TlsContexts> tls,
         std::vector<int> fds);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void start();  // runs the loop on a new thread
  void join();

  // Thread-safe: runs fn on the worker's thread; dropped once the worker
  // closed its handles (the health checker may still post then).
  void post(std::function<void(Worker&)> fn);
  // Thread-safe: stop accepting, drain connections up to drain_timeout, end
  // the loop. `done` runs on the worker thread as its last act.
  void drain(std::function<void()> done);
  // Thread-safe: connections accepted from now on use `config` and its
  // TLS contexts. `fds` has one entry per listener of `config`: a bound,
  // listening socket for a new listener, -1 for a running one it keeps
  // (same_socket). Running listeners `config` does not name are retired.
  void set_config(std::shared_ptr<const conf::Config> config, std::shared_ptr<const core::TlsContexts> tls,
                  std::vector<int> fds);

  // Worker-thread API.
  // What the pieces on this worker's loop (transports, upstream/) use of it.
  core::LoopContext& context() { return *context_; }
  uv_loop_t* loop() { return &loop_; }
  unsigned index() const { return context_->index(); }
  const std::shared_ptr<const conf::Config>& config() const { return context_->config(); }
  const core::Logger& log() const { return process_.log; }
  metrics::Registry& metrics() { return context_->metrics(); }
  ProcessState& process() { return process_; }
  upstream::Cluster& cluster() { return *cluster_; }
  bool draining() const { return draining_; }
  // Hot-path series, looked up once per worker.
  metrics::Gauge& streams_active() { return streams_active_; }
  metrics::Counter& downstream_bytes_in() { return downstream_in_; }
  metrics::Counter& downstream_bytes_out() { return downstream_out_; }
  LocalContext local_context() const;
  const std::shared_ptr<const core::TlsContexts>& tls() const { return context_->tls(); }

  void adopt(std::unique_ptr<ClientConnection> conn);
  void release(ClientConnection* conn);  // from the connection's last close callback
  void release(Listener* retired);       // from a retired listener's last close callback
  // A drain step for the connections of `only` (a retired listener), or all.
  void drain_step(ConnectionDrain::Step step, const Listener* only);

 private:
  void run();
  void on_async();
  void apply_listeners(std::vector<int> fds);
  void begin_drain();
  void finish_drain_if_empty();
  void close_handles();
  void give_back_memory();

  ProcessState& process_;
  std::vector<int> fds_;
  metrics::Gauge& streams_active_;
  metrics::Counter& downstream_in_;
  metrics::Counter& downstream_out_;

  uv_loop_t loop_;
  // Made once loop_ is initialised; holds the config and TLS contexts in force.
  std::unique_ptr<core::LoopContext> context_;
  std::unique_ptr<upstream::Cluster> cluster_;
  uv_async_t async_;
  uv_timer_t memory_timer_;  // give_back_memory()
  uint64_t memory_ticks_ = 0;
  size_t sweep_cursor_ = 0;  // next connection give_back_memory() looks at
  ConnectionDrain drain_;
  uv_thread_t thread_{};
  bool started_ = false;

  std::mutex mailbox_mu_;
  std::vector<std::function<void(Worker&)>> mailbox_;
  bool mailbox_closed_ = false;  // async_ is closing: post() drops jobs

  std::vector<std::unique_ptr<Listener>> listeners_;  // in config order
  std::vector<std::unique_ptr<Listener>> retired_;    // removed by a reload, draining
  std::vector<std::unique_ptr<ClientConnection>> connections_;

  bool draining_ = false;
  bool closing_ = false;
  std::function<void()> drain_done_;
};

}  // namespace sidemux
