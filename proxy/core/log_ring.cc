#include "proxy/core/log_ring.h"

#include <algorithm>
#include <cstring>

namespace sidemux::core {

LogRing::LogRing(size_t capacity, std::chrono::milliseconds linger)
    : capacity_(capacity), linger_(linger), data_(new char[capacity]) {}

bool LogRing::push(std::string_view line) {
  bool wake;
  {
    std::lock_guard lock(mu_);
    if (closed_ || line.size() > capacity_ - (head_ - tail_)) return false;
    size_t at = head_ % capacity_;
    size_t first = std::min(line.size(), capacity_ - at);
    std::memcpy(data_.get() + at, line.data(), first);
    std::memcpy(data_.get(), line.data() + first, line.size() - first);
    head_ += line.size();
    wake = reader_waiting_ || (reader_lingering_ && cut_linger());
    reader_waiting_ = false;
    if (wake) reader_lingering_ = false;
  }
  // One wake-up per batch: while the reader lingers or writes, pushes only
  // queue.
  if (wake) readable_.notify_one();
  return true;
}

int LogRing::wait_readable(iovec (&iov)[2]) {
  std::unique_lock lock(mu_);
  bool woken = false;
  while (head_ == tail_ && !closed_) {
    reader_waiting_ = true;
    readable_.wait(lock);
    woken = true;
  }
  // Only the first line of a burst waits for the rest: bytes already queued
  // (what came during the last write, or what a short write left) go out
  // at once, or a slow stderr would be written 10 ms at a time.
  if (woken && !cut_linger()) {
    reader_lingering_ = true;
    readable_.wait_for(lock, linger_, [this] { return cut_linger(); });
    reader_lingering_ = false;
  }
  size_t used = head_ - tail_;
  if (used == 0) return 0;
  size_t at = tail_ % capacity_;
  size_t first = std::min(used, capacity_ - at);
  iov[0] = {data_.get() + at, first};
  iov[1] = {data_.get(), used - first};
  return used > first ? 2 : 1;
}

void LogRing::consume(size_t n) {
  bool wake;
  {
    std::lock_guard lock(mu_);
    tail_ += n;
    wake = drain_waiters_ > 0;
  }
  if (wake) consumed_.notify_all();
}

bool LogRing::wait_drained(std::chrono::milliseconds stall) {
  std::unique_lock lock(mu_);
  const size_t target = head_;
  ++drain_waiters_;
  // A lingering reader writes now.
  readable_.notify_one();
  bool drained = true;
  while (tail_ < target) {
    size_t before = tail_;
    if (!consumed_.wait_for(lock, stall, [&] { return tail_ != before; })) {
      drained = false;
      break;
    }
  }
  --drain_waiters_;
  return drained;
}

void LogRing::close() {
  {
    std::lock_guard lock(mu_);
    closed_ = true;
  }
  readable_.notify_one();
}

}  // namespace sidemux::core
