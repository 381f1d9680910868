// The process-wide side of health checking: one SharedHealth per member
// (by name and address, so a reload that keeps a member keeps its state),
// and the two ways the checker and the workers reach each other.
//
// Health checks run once per process, on the server's main loop (its own
// core::LoopContext, Cluster, Pool and connection per member), not on a
// worker: the main loop carries no traffic, so a check's timing is not
// skewed by a busy worker, no worker is special (every one can drain and
// stop like the others), and `workers: 16` costs members no more checks
// than `workers: 1`. The price is one extra connection per member, and that
// "this member's connections are dead" must reach the workers: broadcast()
// posts a job to every worker's loop (Worker::post), which runs it on that
// worker's Cluster.
//
// Workers ask for an immediate Status round (etcd said "not leader") with
// request_round(), thread-safe, coalesced by the checker's uv_async.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "conf/config.h"
#include "upstream/shared_health.h"

namespace sidemux::upstream {

class Cluster;

class HealthBoard {
 public:
  using ClusterJob = std::function<void(Cluster&)>;

  // Set once before any loop runs. Without them (unit tests) broadcasts and
  // round requests go nowhere.
  void set_broadcast(std::function<void(ClusterJob)> fn) { broadcast_ = std::move(fn); }
  void set_round_request(std::function<void()> fn) { round_request_ = std::move(fn); }

  // The shared state of a member; the same object for every loop while any
  // of them holds it. Takes a lock: members are made at start and reload only.
  std::shared_ptr<SharedHealth> state_for(const conf::Member& member);

  // From the checker's loop: `job` runs on every worker's loop, on its Cluster.
  void broadcast(ClusterJob job) const {
    if (broadcast_) broadcast_(std::move(job));
  }
  // Any thread.
  void request_round() const {
    if (round_request_) round_request_();
  }

 private:
  std::function<void(ClusterJob)> broadcast_;
  std::function<void()> round_request_;
  std::mutex mu_;
  std::map<std::pair<std::string, std::string>, std::weak_ptr<SharedHealth>> states_;
};

}  // namespace sidemux::upstream
