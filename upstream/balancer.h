// Chooses the member for one stream: least_request (power of two choices on
// this worker's active streams per member) or round_robin. Members that are
// not eligible (unhealthy or ejected), or already tried by this stream, are
// skipped.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <random>
#include <span>

#include "conf/config.h"

namespace sidemux::upstream {

class Member;

// The members one stream already tried, by identity rather than by index: a
// reload between two attempts may reorder or replace the member list. Held
// by shared_ptr, so that a freed member's address, reused by a new one,
// cannot make the new one look tried. Fixed room, no allocation per stream:
// room for the first pick and every retry conf allows.
class TriedMembers {
 public:
  static constexpr size_t kCapacity = 1 + conf::Retry::kMaxAttempts;
  void add(std::shared_ptr<Member> m) {
    if (n_ < kCapacity) tried_[n_++] = std::move(m);
  }
  bool contains(const Member* m) const {
    for (size_t i = 0; i < n_; ++i)
      if (tried_[i].get() == m) return true;
    return false;
  }

 private:
  std::array<std::shared_ptr<Member>, kCapacity> tried_;
  size_t n_ = 0;
};

class Balancer {
 public:
  explicit Balancer(conf::Balance policy, uint32_t seed = std::random_device{}());

  static constexpr size_t kNone = static_cast<size_t>(-1);

  // The index of the member to use, or kNone when no member is eligible
  // outside `tried`.
  size_t pick(std::span<const std::shared_ptr<Member>> members, const TriedMembers& tried);

 private:
  conf::Balance policy_;
  size_t next_ = 0;
  std::minstd_rand rng_;
};

}  // namespace sidemux::upstream
