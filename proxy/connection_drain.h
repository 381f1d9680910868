// The schedule of draining a set of client connections: the worker's at
// SIGTERM, a listener's when a reload removed it. As h2o does: a GOAWAY
// notice now (HTTP/1: Connection: close), the final GOAWAY a second later
// (or at drain_timeout if that is sooner), and whatever is still open is
// closed at drain_timeout. The owner says what each step does to its
// connections.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>

namespace sidemux {

class ConnectionDrain {
 public:
  enum class Step { notice, final_notice, deadline };

  ConnectionDrain(uv_loop_t* loop, std::function<void(Step)> on_step);
  ConnectionDrain(const ConnectionDrain&) = delete;
  ConnectionDrain& operator=(const ConnectionDrain&) = delete;

  // Runs the notice step now and schedules the others.
  void start(std::chrono::milliseconds drain_timeout);
  // Stops the schedule and closes the timer; `on_closed` (may be empty) runs
  // from its close callback. The object must live until then.
  void close(std::function<void()> on_closed);
  bool closing() const { return closing_; }

 private:
  void on_timer();

  uv_timer_t timer_;
  std::function<void(Step)> on_step_;
  std::function<void()> on_closed_;
  uint64_t drain_ms_ = 0;
  bool final_sent_ = false;
  bool closing_ = false;
};

}  // namespace sidemux
