// What the pieces on one event loop need of it: the loop, the config and TLS
// contexts in force, the logger, the metrics registry, the loop's index
// (worker number), the upstream byte counters, the shared read buffers, the
// write scheduler and the per-stream memory. upstream/ and Transport
// take this rather than the Worker that owns it, so they neither see nor
// depend on the proxy above.
//
// Touched only from the loop's thread; set_config() is called there too.
#pragma once

#include <uv.h>

#include <memory>
#include <memory_resource>

#include "conf/config.h"
#include "proxy/core/log.h"
#include "proxy/core/metrics.h"
#include "proxy/core/read_buffers.h"
#include "proxy/core/tls_context.h"
#include "proxy/core/write_scheduler.h"

namespace sidemux::core {

class LoopContext {
 public:
  // `loop` is initialised and outlives this; so do `log` and `registry`.
  LoopContext(uv_loop_t* loop, unsigned index, const Logger& log, metrics::Registry& registry,
              std::shared_ptr<const conf::Config> config, std::shared_ptr<const TlsContexts> tls);
  LoopContext(const LoopContext&) = delete;
  LoopContext& operator=(const LoopContext&) = delete;

  uv_loop_t* loop() const { return loop_; }
  unsigned index() const { return index_; }
  const Logger& log() const { return log_; }
  metrics::Registry& metrics() const { return registry_; }
  const std::shared_ptr<const conf::Config>& config() const { return config_; }
  const std::shared_ptr<const TlsContexts>& tls() const { return tls_; }
  // Connections made from now on use this generation and its TLS contexts.
  void set_config(std::shared_ptr<const conf::Config> config, std::shared_ptr<const TlsContexts> tls);

  // Hot-path series, looked up once per loop.
  metrics::Counter& upstream_bytes_in() const { return upstream_in_; }
  metrics::Counter& upstream_bytes_out() const { return upstream_out_; }

  ReadBuffers& buffers() { return buffers_; }
  WriteScheduler& scheduler() { return scheduler_; }
  // Per-stream objects, map nodes (proxy/core/pooled.h), header lists and
  // body queues: small blocks from the loop thread's free lists.
  std::pmr::memory_resource& stream_memory();

 private:
  uv_loop_t* loop_;
  unsigned index_;
  const Logger& log_;
  metrics::Registry& registry_;
  std::shared_ptr<const conf::Config> config_;
  std::shared_ptr<const TlsContexts> tls_;
  metrics::Counter& upstream_in_;
  metrics::Counter& upstream_out_;
  ReadBuffers buffers_;
  WriteScheduler scheduler_;
};

}  // namespace sidemux::core
