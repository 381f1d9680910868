// The process: config generations, the workers, and signals. Runs on the
// main thread with its own small loop that only handles signals and worker
// notifications; all traffic is on the workers' loops.
#pragma once

#include <uv.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "conf/config.h"
#include "proxy/core/file_watch.h"
#include "proxy/core/log.h"
#include "proxy/core/loop_context.h"
#include "proxy/core/metrics.h"
#include "proxy/core/tls_context.h"
#include "proxy/worker.h"

namespace sidemux {

class Server {
 public:
  Server(std::string config_path, core::Logger& log);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Loads the config, binds, runs until drained. Returns the exit code.
  int run();

 private:
  bool start(std::string& error);
  void reload();
  // reload.watch: (re)starts the watch on the files the running config
  // names, or stops it. False, with `error` set, if a directory cannot be watched.
  bool rewatch(std::string& error);
  void drain();
  void on_worker_drained();
  void close_handles();  // the main loop's: it ends once they are closed
  void maybe_trim();

  std::string config_path_;
  core::Logger& log_;
  std::shared_ptr<const conf::Config> config_;
  std::shared_ptr<const core::TlsContexts> tls_;

  uv_loop_t loop_;
  uv_signal_t sighup_;
  uv_signal_t sigterm_;
  uv_signal_t sigint_;
  uv_async_t worker_drained_;
  // glibc keeps the memory freed by connections that went away (their
  // nghttp2 sessions and buffers) for reuse: after many closed, it is given
  // back to the system from here, off the workers' loops.
  uv_timer_t trim_timer_;
  uint32_t peak_since_trim_ = 0;  // open client connections, sampled each check
  uint64_t trimmed_at_ = 0;       // uv_now() of the last malloc_trim, 0: none yet
  uint64_t freed_at_trim_ = 0;    // ProcessState::blocks_freed at the last malloc_trim
  core::FileWatch::Ptr watch_;  // reload.watch; on loop_
  std::atomic<unsigned> drained_{0};
  bool draining_ = false;

  // The server's registry comes first; then one per worker. Registries
  // outlive the workers, whose threads write into them.
  metrics::Registry registry_;
  std::vector<std::unique_ptr<metrics::Registry>> worker_registries_;
  std::unique_ptr<ProcessState> process_;
  std::vector<std::unique_ptr<Worker>> workers_;

  // The process's one health checker (upstream/health_board.h says why it
  // lives on this loop): its own loop context, and a cluster whose members
  // run the checks over their own connections.
  std::unique_ptr<core::LoopContext> checker_context_;
  std::unique_ptr<upstream::Cluster> checker_;
  uv_async_t status_round_;  // a worker asked for a Status round
};

}  // namespace sidemux
