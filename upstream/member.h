// One cluster member as this worker sees it: address, health and stream
// counts. The forwarding and health-check work fill the state in; until a
// check has run the member's health is unknown. sidemux_member_up is not
// kept here: it is one figure per process, not a sum over workers.
#pragma once

#include <string>

#include "conf/config.h"
#include "proxy/metrics.h"

namespace sidemux::upstream {

enum class Health { unknown, healthy, unhealthy };
const char* to_string(Health h);

class Member {
 public:
  Member(const conf::Member& conf, metrics::Registry& registry);
  Member(const Member&) = delete;
  Member& operator=(const Member&) = delete;

  const std::string& name() const { return conf_.name; }
  const conf::HostPort& address() const { return conf_.address; }
  Health health() const { return health_; }
  const std::string& health_reason() const { return health_reason_; }
  int64_t active_streams() const { return active_streams_.value(); }

  void set_health(Health h, std::string reason);

 private:
  conf::Member conf_;
  Health health_ = Health::unknown;
  std::string health_reason_ = "not checked yet";
  metrics::Gauge& active_streams_;
};

}  // namespace sidemux::upstream
