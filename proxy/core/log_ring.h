// The bounded buffer between the threads that log and the one thread that
// writes the log out (SPEC "Fault paths": logging never blocks a loop).
//
// Hand-written rather than taken from a library: no Debian package offers a
// byte ring whose reader can write(2) straight out of it, and the whole of it
// is one mutex around a memcpy. One ring shared by every thread (rather than a
// ring per thread) keeps lines in the order they were logged and memory fixed
// whatever the number of workers; the lock is held for one memcpy of a line:
// under callgrind push() is about 240 (its mutex included) of the ~1,900
// instructions of an access line.
#pragma once

#include <sys/uio.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string_view>

namespace sidemux::core {

class LogRing {
 public:
  // `linger`: how long the reader, woken by a line, waits for more before it
  // writes (cut short once half the ring is used, or by wait_drained()).
  explicit LogRing(size_t capacity, std::chrono::milliseconds linger = kLinger);

  // Lines come in bursts (an access line per stream): gathered for a moment,
  // a burst is one wake-up and one write(2). A reader woken for every line
  // costs, on a busy core, a futex wake, two context switches and a write(2)
  // per line: measured, that took the access log from free to a third of
  // the proxy's CPU. Envoy flushes its access logs once a second; a line
  // here is out within 10 ms.
  static constexpr std::chrono::milliseconds kLinger{10};

  // Any thread: queues the whole line, or nothing and returns false when it
  // does not fit in the free space. Never waits for the reader.
  bool push(std::string_view line);

  // The reader: waits until bytes are queued or close() was called; if it
  // had to wait, then also for `linger` unless the ring fills to half, a
  // drain is asked for or it is closed. Points `iov` at the queued bytes in
  // order (two spans when they wrap) and
  // returns how many of `iov` it filled; 0 once closed and empty. The bytes
  // stay valid until consume().
  int wait_readable(iovec (&iov)[2]);
  // The reader: `n` bytes from the front were written out; their space is free.
  void consume(size_t n);

  // Any thread: waits until everything queued before the call was consumed.
  // Gives up (returns false) when the reader consumed nothing for `stall`.
  bool wait_drained(std::chrono::milliseconds stall);
  // Any thread: the reader returns 0 from wait_readable() once it is empty.
  void close();

 private:
  bool cut_linger() const { return closed_ || drain_waiters_ > 0 || head_ - tail_ >= capacity_ / 2; }

  const size_t capacity_;
  const std::chrono::milliseconds linger_;
  std::unique_ptr<char[]> data_;
  std::mutex mu_;
  std::condition_variable readable_;  // the reader waits here
  std::condition_variable consumed_;  // wait_drained() waits here
  size_t head_ = 0;                   // total bytes ever pushed
  size_t tail_ = 0;                   // total bytes ever consumed
  bool reader_waiting_ = false;       // so that a push wakes it only when it sleeps
  bool reader_lingering_ = false;     // a push that fills the ring to half cuts it short
  int drain_waiters_ = 0;
  bool closed_ = false;
};

}  // namespace sidemux::core
