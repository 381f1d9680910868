// Transports on a TestContext over a socketpair, and an Owner that records
// what the transport tells it. The socketpair stands in for TCP: libuv
// drives any stream socket the same way.
#pragma once

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <functional>
#include <memory>
#include <string>

#include "proxy/core/transport.h"
#include "t/unit/support/test_context.h"

namespace sidemux::unit {

inline constexpr const char* kMinimalConfig =
    "listeners: [{name: client, address: '127.0.0.1:0'}]\n"
    "cluster: {members: [{name: m, address: '127.0.0.1:1'}]}\n";

struct RecordingOwner : core::Transport::Owner {
  void on_transport_read(const char* data, size_t len) override {
    read.append(data, len);
    if (on_read) on_read();
  }
  void on_transport_error(int status) override {
    ++errors;
    last_error = status;
  }
  void on_transport_produce() override {
    ++produced;
    if (on_produce) on_produce();
  }
  void on_transport_closed() override { ++closed; }
  void on_transport_secure() override { ++secure; }

  std::string read;
  int errors = 0;
  int last_error = 0;
  int produced = 0;
  int closed = 0;
  int secure = 0;
  std::function<void()> on_read;
  std::function<void()> on_produce;
};

// One transport and its owner; `fd` becomes the transport's socket.
struct TestEndpoint {
  TestEndpoint(core::LoopContext& context, int fd) : transport(context, owner, bytes_in, bytes_out) {
    EXPECT_EQ(uv_tcp_open(transport.tcp(), fd), 0);
  }
  RecordingOwner owner;
  metrics::Counter bytes_in;
  metrics::Counter bytes_out;
  core::Transport transport;
};

// A connected pair of transports on one loop. The destructor closes both
// and runs the loop until their handles closed.
struct TransportPair {
  explicit TransportPair(const std::string& yaml = kMinimalConfig) : test(yaml) {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    a = std::make_unique<TestEndpoint>(test.context, fds[0]);
    b = std::make_unique<TestEndpoint>(test.context, fds[1]);
    test.context.scheduler().start();
  }
  ~TransportPair() {
    a->transport.close();
    b->transport.close();
    test.finish();
  }
  TransportPair(const TransportPair&) = delete;
  TransportPair& operator=(const TransportPair&) = delete;

  // Runs loop turns without blocking until `done` holds; false if it never did.
  bool run_until(const std::function<bool()>& done, int max_turns = 10000) {
    for (int i = 0; i < max_turns; ++i) {
      if (done()) return true;
      uv_run(test.context.loop(), UV_RUN_NOWAIT);
    }
    return done();
  }
  void turn() { uv_run(test.context.loop(), UV_RUN_NOWAIT); }

  TestContext test;
  std::unique_ptr<TestEndpoint> a;
  std::unique_ptr<TestEndpoint> b;
};

}  // namespace sidemux::unit
