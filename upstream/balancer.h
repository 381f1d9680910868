// Chooses the member for one stream: least_request (power of two choices on
// this worker's active streams per member) or round_robin. Members that are
// not eligible (unhealthy or ejected), or already tried by this stream, are
// skipped.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <span>

#include "conf/config.h"

namespace sidemux::upstream {

class Member;

class Balancer {
 public:
  explicit Balancer(conf::Balance policy, uint32_t seed = std::random_device{}());

  static constexpr size_t kNone = static_cast<size_t>(-1);

  // The index of the member to use, or kNone when no member is eligible.
  // `tried` is a bitmask of member indexes to skip (streams retry on at
  // most a few members; past 64 members the rest are not skipped).
  size_t pick(std::span<const std::shared_ptr<Member>> members, uint64_t tried);

 private:
  conf::Balance policy_;
  size_t next_ = 0;
  std::minstd_rand rng_;
};

}  // namespace sidemux::upstream
