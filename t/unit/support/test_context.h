// A bare uv loop and the core::LoopContext over it: what the pieces below the
// Worker (transports, upstream/) run on in unit tests. The loop runs only
// when a test runs it; finish() (or the destructor) closes the context's
// handles and runs the loop until every close callback ran, as a worker's
// drain does.
#pragma once

#include <gtest/gtest.h>
#include <uv.h>

#include <memory>
#include <string>

#include "conf/config.h"
#include "proxy/core/log.h"
#include "proxy/core/loop_context.h"
#include "proxy/core/metrics.h"
#include "proxy/core/tls_context.h"

namespace sidemux::unit {

inline std::shared_ptr<const conf::Config> load_config(const std::string& yaml) {
  auto loaded = conf::load_string(yaml, "test.yaml");
  EXPECT_TRUE(loaded) << loaded.error;
  return loaded.config;
}

inline std::shared_ptr<const core::TlsContexts> tls_contexts(const std::shared_ptr<const conf::Config>& config) {
  std::string error;
  auto tls = core::TlsContexts::build(*config, error);
  EXPECT_TRUE(tls) << error;
  return tls;
}

class TestContext {
 public:
  explicit TestContext(const std::string& yaml)
      : config(load_config(yaml)), context(loop.get(), 0, log, registry, config, tls_contexts(config)) {}
  ~TestContext() { finish(); }
  TestContext(const TestContext&) = delete;
  TestContext& operator=(const TestContext&) = delete;

  void finish() {
    if (finished_) return;
    finished_ = true;
    context.scheduler().close();
    uv_run(loop.get(), UV_RUN_DEFAULT);
  }

  core::Logger log{-1};
  metrics::Registry registry;
  std::shared_ptr<const conf::Config> config;

 private:
  struct Loop {
    Loop() { uv_loop_init(&loop); }
    ~Loop() { uv_loop_close(&loop); }
    uv_loop_t* get() { return &loop; }
    uv_loop_t loop;
  };
  Loop loop;

 public:
  core::LoopContext context;

 private:
  bool finished_ = false;
};

}  // namespace sidemux::unit
