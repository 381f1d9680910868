// The members of one config generation, as one worker sees them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "conf/config.h"
#include "upstream/member.h"

namespace sidemux::upstream {

class Cluster {
 public:
  Cluster(const conf::Cluster& conf, metrics::Registry& registry);

  const std::vector<std::unique_ptr<Member>>& members() const { return members_; }

  // At least one member healthy, else a reason naming each member's state
  // (the text /health, /readyz and UNAVAILABLE answers carry).
  struct Verdict {
    bool healthy;
    std::string reason;
  };
  Verdict health() const;

 private:
  std::vector<std::unique_ptr<Member>> members_;
};

}  // namespace sidemux::upstream
