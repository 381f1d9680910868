// Batched writes for one loop: transports touched during a loop turn are
// scheduled here, and the prepare phase (just before the loop polls) lets
// each produce its output and write it in one uv_write.
#pragma once

#include <uv.h>

#include <vector>

namespace sidemux::core {

class Transport;

class WriteScheduler {
 public:
  explicit WriteScheduler(uv_loop_t* loop);
  WriteScheduler(const WriteScheduler&) = delete;
  WriteScheduler& operator=(const WriteScheduler&) = delete;

  void start();  // the prepare handle runs from the next loop turn on
  void close();  // both handles; they close on a later loop phase

  // The transport wants produce() and a write on this loop turn.
  void schedule(Transport* t);
  // O(1): the transport remembers its slot, which is blanked.
  void unschedule(Transport* t);

 private:
  void on_prepare();

  uv_prepare_t prepare_;
  uv_idle_t idle_;  // active while work is left for the next turn: poll must not wait
  std::vector<Transport*> scheduled_;
  std::vector<Transport*> producing_;  // swapped with scheduled_ while flushing
  size_t live_ = 0;                    // entries of scheduled_ not blanked
};

}  // namespace sidemux::core
