// A real upstream::Cluster on a TestContext whose loop never runs during the
// test, so it opens no socket and no member connection; members, pools and
// metrics are the real objects. It is a checker's cluster (its members take
// health check results), over its own HealthBoard. The destructor shuts the cluster down and
// runs the loop until its handles closed.
#pragma once

#include <string>

#include "t/unit/support/test_context.h"
#include "upstream/cluster.h"

namespace sidemux::unit {

class TestCluster {
 public:
  explicit TestCluster(const std::string& yaml)
      : test(yaml), cluster_(test.context, test.config->cluster, board, true) {}
  ~TestCluster() {
    cluster_.shutdown();
    test.finish();
  }
  TestCluster(const TestCluster&) = delete;
  TestCluster& operator=(const TestCluster&) = delete;

  upstream::Cluster& cluster() { return cluster_; }
  upstream::Member& member(size_t i) { return *cluster_.members()[i]; }

  TestContext test;
  metrics::Registry& registry = test.registry;
  upstream::HealthBoard board;

 private:
  upstream::Cluster cluster_;
};

}  // namespace sidemux::unit
