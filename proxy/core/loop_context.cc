#include "proxy/core/loop_context.h"

#include "proxy/core/metric_names.h"
#include "proxy/core/small_blocks.h"

namespace sidemux::core {

LoopContext::LoopContext(uv_loop_t* loop, unsigned index, const Logger& log, metrics::Registry& registry,
                         std::shared_ptr<const conf::Config> config, std::shared_ptr<const TlsContexts> tls)
    : loop_(loop),
      index_(index),
      log_(log),
      registry_(registry),
      config_(std::move(config)),
      tls_(std::move(tls)),
      upstream_in_(registry.counter(metrics::kBytes, {"upstream", "in"})),
      upstream_out_(registry.counter(metrics::kBytes, {"upstream", "out"})),
      scheduler_(loop) {}

void LoopContext::set_config(std::shared_ptr<const conf::Config> config, std::shared_ptr<const TlsContexts> tls) {
  config_ = std::move(config);
  tls_ = std::move(tls);
}

std::pmr::memory_resource& LoopContext::stream_memory() { return small_block_resource(); }

}  // namespace sidemux::core
