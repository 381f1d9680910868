// A bare uv loop and the core::LoopContext over it: what the pieces below the
// Worker (transports, upstream/) run on in unit tests. The loop runs only
// when a test runs it; finish() (or the destructor) closes the context's
// handles and runs the loop until every close callback ran, as a worker's
// drain does.
#pragma once

#include <gtest/gtest.h>
#include <uv.h>

#include <csignal>
#include <functional>
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

// Runs `loop` until `done` holds, waiting for events in between; false if
// it still does not after `timeout_ms` (a guard timer wakes the loop).
inline bool run_loop_until(uv_loop_t* loop, const std::function<bool()>& done, uint64_t timeout_ms = 5000) {
  bool expired = false;
  uv_timer_t guard;
  uv_timer_init(loop, &guard);
  guard.data = &expired;
  uv_timer_start(&guard, [](uv_timer_t* t) { *static_cast<bool*>(t->data) = true; }, timeout_ms, 0);
  while (!done() && !expired) uv_run(loop, UV_RUN_ONCE);
  uv_close(reinterpret_cast<uv_handle_t*>(&guard), nullptr);
  uv_run(loop, UV_RUN_NOWAIT);  // the guard's close, before it leaves the stack
  return done();
}

// Runs loop turns, none of them waiting for I/O, until `progress()` stayed
// the same for `still_turns` turns in a row: what the peers on this loop
// could do is done (a socketpair or loopback write is readable at once).
// False if it still changed after `timeout_ms`.
inline bool run_loop_until_still(uv_loop_t* loop, const std::function<size_t()>& progress, int still_turns = 500,
                                 uint64_t timeout_ms = 5000) {
  uv_idle_t spin;  // an active idle handle makes every turn poll without waiting
  uv_idle_init(loop, &spin);
  uv_idle_start(&spin, [](uv_idle_t*) {});
  size_t last = progress();
  int still = 0;
  bool quiet = run_loop_until(
      loop,
      [&] {
        size_t now = progress();
        still = now == last ? still + 1 : 0;
        last = now;
        return still >= still_turns;
      },
      timeout_ms);
  uv_close(reinterpret_cast<uv_handle_t*>(&spin), nullptr);
  uv_run(loop, UV_RUN_NOWAIT);
  return quiet;
}

// As main() does: writing to a peer that went away must not end the process.
inline void ignore_sigpipe() { std::signal(SIGPIPE, SIG_IGN); }

class TestContext {
 public:
  explicit TestContext(const std::string& yaml)
      : config(load_config(yaml)), context(loop.get(), 0, log, registry, config, tls_contexts(config)) {
    ignore_sigpipe();
  }
  ~TestContext() { finish(); }
  TestContext(const TestContext&) = delete;
  TestContext& operator=(const TestContext&) = delete;

  bool run_until(const std::function<bool()>& done, uint64_t timeout_ms = 5000) {
    return run_loop_until(loop.get(), done, timeout_ms);
  }

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
