#include "proxy/core/write_scheduler.h"

#include "proxy/core/transport.h"

namespace sidemux::core {

namespace {
// Bound on produce passes per loop turn when producing schedules more work.
constexpr int kMaxProducePasses = 16;
}  // namespace

WriteScheduler::WriteScheduler(uv_loop_t* loop) {
  uv_prepare_init(loop, &prepare_);
  uv_idle_init(loop, &idle_);
  prepare_.data = idle_.data = this;
}

void WriteScheduler::start() {
  uv_prepare_start(&prepare_, [](uv_prepare_t* p) { static_cast<WriteScheduler*>(p->data)->on_prepare(); });
}

void WriteScheduler::close() {
  uv_close(reinterpret_cast<uv_handle_t*>(&prepare_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&idle_), nullptr);
}

void WriteScheduler::schedule(Transport* t) {
  if (t->scheduled) return;
  t->scheduled = true;
  t->schedule_slot = scheduled_.size();
  scheduled_.push_back(t);
  ++live_;
}

void WriteScheduler::unschedule(Transport* t) {
  if (!t->scheduled) return;
  t->scheduled = false;
  // on_prepare() may be walking producing_ right now: blank the entry
  // rather than shift the ones after it past the walk. A transport still
  // waiting in that walk sits in producing_ at its slot; else in scheduled_.
  size_t slot = t->schedule_slot;
  if (slot < producing_.size() && producing_[slot] == t) {
    producing_[slot] = nullptr;
  } else {
    scheduled_[slot] = nullptr;
    --live_;
  }
}

void WriteScheduler::on_prepare() {
  // Runs before the loop polls: every transport touched since the last turn
  // produces its output and writes it in one batch.
  for (int pass = 0; pass < kMaxProducePasses && live_ > 0; ++pass) {
    producing_.swap(scheduled_);
    live_ = 0;
    for (size_t i = 0; i < producing_.size(); ++i) {
      Transport* t = producing_[i];
      if (!t) continue;
      // Blanked first: an entry left in producing_ means "still waiting".
      producing_[i] = nullptr;
      t->scheduled = false;
      t->produce_and_flush();
    }
    producing_.clear();
  }
  if (live_ == 0) scheduled_.clear();  // only blanked entries left
  // Streams that keep feeding each other can leave work after the last
  // pass; then the poll that follows must not block.
  if (live_ == 0) {
    uv_idle_stop(&idle_);
  } else {
    uv_idle_start(&idle_, [](uv_idle_t*) {});
  }
}

}  // namespace sidemux::core
