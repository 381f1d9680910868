// The members of one config generation, as one worker sees them, and the
// balancer that picks one per stream.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "conf/config.h"
#include "upstream/balancer.h"
#include "upstream/member.h"

namespace sidemux {
class Worker;
}

namespace sidemux::upstream {

class Cluster {
 public:
  Cluster(Worker& worker, const conf::Cluster& conf);

  void start();     // health checks (each opens its member's first connection)
  void shutdown();  // stop checks, close every member connection

  const std::vector<std::unique_ptr<Member>>& members() const { return members_; }
  size_t index_of(const Member& m) const;
  // The member for a new stream, skipping the `tried` bitmask (by index).
  Member* pick(uint64_t tried) { return balancer_.pick(members_, tried); }

  // At least one member healthy, else a reason naming each member's state
  // (the text /health, /readyz and UNAVAILABLE answers carry).
  struct Verdict {
    bool healthy;
    std::string reason;
  };
  Verdict health() const;
  bool any_healthy() const;
  // Why no member can take a stream: each member's health and ejection.
  std::string unavailable_reason() const;

 private:
  std::vector<std::unique_ptr<Member>> members_;
  Balancer balancer_;
};

}  // namespace sidemux::upstream
