// One client connection's flow-control budget in one direction: the sum of
// the stream windows sidemux grants for its streams (towards the members for
// responses, towards the client for requests). A window bounds what its
// stream can make sidemux buffer, so the sum bounds the connection.
//
// Every stream starts with the initial window of its side (flow_windows.h),
// granted whatever the budget says (the peer may send that much before we could refuse), and
// doubles each time its bytes move on while the budget has room, up to
// core::kStreamWindow. No stream is ever stopped by the budget: its initial
// window keeps reopening as its bytes are taken, so streams that joined when
// the budget was spent still move, only slower.
#pragma once

#include <algorithm>
#include <cstdint>

#include "proxy/core/flow_windows.h"

namespace sidemux {

class WindowBudget {
 public:
  explicit WindowBudget(uint32_t initial, uint64_t limit = core::kConnectionBudget)
      : initial_(initial), limit_(limit) {}

  // A stream joins with the initial window; returns it.
  uint32_t join() {
    granted_ += initial_;
    return initial_;
  }
  // The stream's window `current` leaves the budget.
  void leave(uint32_t current) { granted_ -= current; }
  // The window a stream whose bytes moved on may have now: `current`
  // doubled, within kStreamWindow and the room left. Counts the growth.
  uint32_t grow(uint32_t current) {
    uint64_t room = granted_ < limit_ ? limit_ - granted_ : 0;
    uint64_t more = std::min<uint64_t>({current, core::kStreamWindow - std::min(current, core::kStreamWindow), room});
    granted_ += more;
    return current + static_cast<uint32_t>(more);
  }
  uint64_t granted() const { return granted_; }

 private:
  uint32_t initial_;
  uint64_t limit_;
  uint64_t granted_ = 0;
};

}  // namespace sidemux
