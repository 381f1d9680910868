// Marks work done by a test's own peers (its HTTP/2 client and member) on
// the loop they share with the proxy, so that a test counting the proxy's
// heap allocations (t/unit/alloc) can leave theirs out. A thread-local depth
// and nothing else: free in test binaries that do not count.
#pragma once

namespace sidemux::unit {

inline thread_local int peer_work_depth = 0;

struct PeerWork {
  PeerWork() { ++peer_work_depth; }
  ~PeerWork() { --peer_work_depth; }
  PeerWork(const PeerWork&) = delete;
  PeerWork& operator=(const PeerWork&) = delete;
};

}  // namespace sidemux::unit
