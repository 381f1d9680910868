#include "proxy/connection_drain.h"

#include <algorithm>

namespace sidemux {

namespace {
// The first GOAWAY is a notice; the final one follows after this long (or
// at the end of drain_timeout, if that is shorter), as h2o does.
constexpr uint64_t kFinalGoawayDelayMs = 1000;
}  // namespace

ConnectionDrain::ConnectionDrain(uv_loop_t* loop, std::function<void(Step)> on_step) : on_step_(std::move(on_step)) {
  uv_timer_init(loop, &timer_);
  timer_.data = this;
}

void ConnectionDrain::start(std::chrono::milliseconds drain_timeout) {
  drain_ms_ = static_cast<uint64_t>(drain_timeout.count());
  uv_timer_start(&timer_, [](uv_timer_t* t) { static_cast<ConnectionDrain*>(t->data)->on_timer(); },
                 std::min(kFinalGoawayDelayMs, drain_ms_), 0);
  on_step_(Step::notice);
}

void ConnectionDrain::on_timer() {
  if (!final_sent_) {
    final_sent_ = true;
    uv_timer_start(&timer_, [](uv_timer_t* t) { static_cast<ConnectionDrain*>(t->data)->on_timer(); },
                   drain_ms_ > kFinalGoawayDelayMs ? drain_ms_ - kFinalGoawayDelayMs : 0, 0);
    on_step_(Step::final_notice);
    return;
  }
  on_step_(Step::deadline);
}

void ConnectionDrain::close(std::function<void()> on_closed) {
  if (closing_) return;
  closing_ = true;
  on_closed_ = std::move(on_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), [](uv_handle_t* h) {
    auto* self = static_cast<ConnectionDrain*>(h->data);
    // The callback may free this object: it is moved out first.
    auto closed = std::move(self->on_closed_);
    if (closed) closed();
  });
}

}  // namespace sidemux
