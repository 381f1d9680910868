// One cluster member as this worker sees it: address, health, its pool of
// connections and its stream counts. Health is passive for now: a member is
// healthy once a connection to it is up, unhealthy when connecting fails,
// unknown before the first attempt.
#pragma once

#include <memory>
#include <string>

#include "conf/config.h"
#include "proxy/metrics.h"
#include "upstream/pool.h"

namespace sidemux {
class Worker;
}

namespace sidemux::upstream {

enum class Health { unknown, healthy, unhealthy };
const char* to_string(Health h);

class Member {
 public:
  Member(Worker& worker, const conf::Member& conf);
  Member(const Member&) = delete;
  Member& operator=(const Member&) = delete;

  const std::string& name() const { return conf_.name; }
  const conf::HostPort& address() const { return conf_.address; }
  Health health() const { return health_; }
  const std::string& health_reason() const { return health_reason_; }
  void set_health(Health h, std::string reason);

  Pool& pool() { return pool_; }
  int64_t active_streams() const { return active_streams_.value(); }
  void stream_started() { active_streams_.inc(); }
  void stream_ended() { active_streams_.dec(); }
  metrics::Gauge& connections_gauge() { return connections_; }
  metrics::Histogram& stream_duration() { return duration_; }

  // Per-member series, looked up once.
  metrics::Registry& registry() { return registry_; }

 private:
  Worker& worker_;
  conf::Member conf_;
  metrics::Registry& registry_;
  Health health_ = Health::unknown;
  std::string health_reason_ = "not checked yet";
  metrics::Gauge& up_;  // merged across workers by max
  metrics::Gauge& active_streams_;
  metrics::Gauge& connections_;
  metrics::Histogram& duration_;
  Pool pool_;
};

}  // namespace sidemux::upstream
