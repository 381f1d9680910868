// A real Worker for unit tests: its loop never runs, so it opens no socket
// and no member connection, but members, pools, metrics and the local
// handlers' context are the real objects. The destructor closes its handles
// the way a drain does.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "conf/config.h"
#include "proxy/worker.h"

namespace sidemux::unit {

inline std::shared_ptr<const conf::Config> load_config(const std::string& yaml) {
  auto loaded = conf::load_string(yaml, "test.yaml");
  EXPECT_TRUE(loaded) << loaded.error;
  return loaded.config;
}

inline std::shared_ptr<const TlsContexts> tls_contexts(const std::shared_ptr<const conf::Config>& config) {
  std::string error;
  auto tls = TlsContexts::build(*config, error);
  EXPECT_TRUE(tls) << error;
  return tls;
}

class TestWorker {
 public:
  explicit TestWorker(const std::string& yaml)
      : config(load_config(yaml)), worker(0, shared, registry, config, tls_contexts(config), {}) {
    shared.registries.push_back(&registry);
  }
  ~TestWorker() {
    worker.drain([] {});
    uv_run(worker.loop(), UV_RUN_DEFAULT);
  }
  TestWorker(const TestWorker&) = delete;
  TestWorker& operator=(const TestWorker&) = delete;

  upstream::Cluster& cluster() { return worker.cluster(); }
  upstream::Member& member(size_t i) { return *worker.cluster().members()[i]; }

  Logger log{-1};
  SharedState shared{log};
  metrics::Registry registry;
  std::shared_ptr<const conf::Config> config;
  Worker worker;
};

}  // namespace sidemux::unit
