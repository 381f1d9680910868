// When the server gives the heap's free pages back to the system
// (malloc_trim). glibc returns only the top of a heap by itself; pages
// free in the middle stay resident until a trim, and a trim walks every
// arena under its lock, so it runs when something says it will find pages:
// - a crowd left: the open client connections fell to half the peak seen
//   since the last trim, a peak of at least kCrowd;
// - the workers' small-block lists gave back kFreed bytes since then (a
//   flood's streams, say, on few connections: core/small_blocks.h);
// - RSS grew by kGrowth, or a tenth, over what the last trim left: the
//   heaps fragment under mixed traffic (1 MiB messages, TLS handshakes)
//   and would otherwise creep from one trim to the next.
// Clients that open and close a connection per request make none of them
// by themselves; and one trim per kGapMs at most whatever happens, so the
// cost is bounded (a few milliseconds per 30 s).
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>

namespace sidemux {

class HeapTrim {
 public:
  static constexpr uint32_t kCrowd = 256;
  static constexpr uint64_t kFreed = 1024 * 1024;
  static constexpr uint64_t kGrowth = 2 * 1024 * 1024;
  static constexpr uint64_t kGapMs = 30'000;

  // What the server samples each check.
  struct Sample {
    uint64_t now_ms;
    uint32_t open_connections;
    uint64_t blocks_freed;  // bytes, since the start (ProcessState)
    uint64_t rss;           // bytes
  };

  // Whether to trim now; counts the sample's connections into the peak.
  bool due(const Sample& s) {
    peak_ = std::max(peak_, s.open_connections);
    if (trimmed_at_ && s.now_ms - *trimmed_at_ < kGapMs) return false;
    bool crowd_left = peak_ >= kCrowd && s.open_connections <= peak_ / 2;
    bool blocks_left = s.blocks_freed - freed_at_trim_ >= kFreed;
    bool grew = s.rss >= rss_after_trim_ + std::max(kGrowth, rss_after_trim_ / 10);
    return crowd_left || blocks_left || grew;
  }

  // The trim ran at `s` and left `rss_after` resident.
  void trimmed(const Sample& s, uint64_t rss_after) {
    peak_ = s.open_connections;
    freed_at_trim_ = s.blocks_freed;
    rss_after_trim_ = rss_after;
    trimmed_at_ = s.now_ms;
  }

 private:
  uint32_t peak_ = 0;                   // open client connections since the last trim
  uint64_t freed_at_trim_ = 0;          // Sample::blocks_freed then
  uint64_t rss_after_trim_ = 0;         // 0 before the first: the first check trims
  std::optional<uint64_t> trimmed_at_;  // Sample::now_ms of the last trim
};

}  // namespace sidemux
