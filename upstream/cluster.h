// The members of the config in force, as one loop sees them, and the
// balancer that picks one per stream. Each worker has one; the health
// checker has its own (checks on), on the server's main loop. A reload applies a new member list in
// place: members whose name and address stay keep their connections and
// health; new ones start; removed ones retire: they take no new streams,
// their open streams finish for up to limits.drain_timeout, then their
// connections close. Streams hold their member by shared_ptr, so a retired
// member lives until its last stream and its last handle are gone.
#pragma once

#include <uv.h>

#include <memory>
#include <string>
#include <vector>

#include "conf/config.h"
#include "proxy/core/metrics.h"
#include "upstream/balancer.h"
#include "upstream/health_board.h"
#include "upstream/member.h"

namespace sidemux::core {
class LoopContext;
}

namespace sidemux::upstream {

// Where a stream should go: kind etcd's writes to the leader (etcd_routes.h).
enum class Route { balanced, leader };

class Cluster {
 public:
  // `checks`: this is the checker's cluster, whose members run the health
  // checks; a worker's only reads their verdicts from `board`.
  Cluster(core::LoopContext& context, const conf::Cluster& conf, HealthBoard& board, bool checks);

  void start();     // health checks (each opens its member's first connection)
  void shutdown();  // stop checks, close every member connection
  void apply(const conf::Cluster& next);  // a reload's member list and balancer

  const std::vector<std::shared_ptr<Member>>& members() const { return members_; }
  // The member for a new stream, skipping those in `tried`, which gets the
  // chosen one added. nullptr when none is eligible.
  // Route::leader (with etcd.leader_routing) takes the leader while it is
  // eligible and not tried, else the balancer's choice: leader routing
  // never fails a stream the balancer would have placed.
  std::shared_ptr<Member> pick(TriedMembers& tried, Route route = Route::balanced);
  // This loop's members (current and retired) that share `state`.
  std::vector<Member*> members_with(const SharedHealth* state);
  // A Status round now (etcd answered "not leader"); any loop.
  void request_status_round() const { board_.request_round(); }
  // The checker's cluster: each member checks now (see HealthCheck::run_soon).
  void check_now();

  // At least one member healthy, else a reason naming each member's state
  // (the text /health, /readyz and UNAVAILABLE answers carry).
  struct HealthSummary {
    bool healthy;
    std::string reason;
  };
  HealthSummary health() const;
  bool any_healthy() const;
  // kind etcd: the alarms members reported (Status errors), "" when none.
  // They fail /health as etcd's own /health does, never a member.
  std::string alarms() const;
  // Whether outlier ejection may take `m` out now: at most half the members
  // (rounded down) ejected at once, and another member left eligible. Past
  // that, ejection would only turn the failures into UNAVAILABLE for every
  // stream (one client whose requests make every member look bad, a
  // network blip). Per worker, as the ejections it counts.
  bool may_eject(const Member& m) const;
  // Why no member can take a stream: each member's health and ejection.
  std::string unavailable_reason() const;

 private:
  struct Retired {
    std::shared_ptr<Member> member;
    uint64_t deadline;  // uv_now(): connections still open then are closed
  };
  static void on_sweep(uv_timer_t* t);

  core::LoopContext& context_;
  HealthBoard& board_;
  bool checks_;
  conf::ClusterKind kind_;  // of the members_ (apply())
  metrics::Counter& routed_leader_;
  metrics::Counter& routed_balanced_;
  std::vector<std::shared_ptr<Member>> members_;
  std::vector<Retired> retired_;
  uv_timer_t sweep_timer_;  // retired members: force-close and free
  Balancer balancer_;
};

// The members one request may try, its first pick and its retries alike:
// at most 1 + retry.attempts of them, none twice, and kind etcd's writes to
// the leader first (Cluster::pick). Both a gRPC stream and a forwarded
// HTTP/1 request hold one.
class Attempts {
 public:
  Attempts() = default;
  // `path`: the gRPC :path or the HTTP/1 target, which picks the route.
  Attempts(const conf::Cluster& conf, std::string_view path);
  // The member to try next; nullptr once the attempts are spent or no
  // member left untried is eligible.
  std::shared_ptr<Member> next(Cluster& cluster);

 private:
  TriedMembers tried_;
  Route route_ = Route::balanced;
  uint32_t left_ = 0;
};

}  // namespace sidemux::upstream
