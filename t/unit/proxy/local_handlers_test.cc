#include "proxy/local_handlers.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include "proxy/core/metric_names.h"
#include "t/unit/support/test_cluster.h"

namespace sidemux {
namespace {

sockaddr_in ipv4(const char* addr) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  inet_pton(AF_INET, addr, &sin.sin_addr);
  return sin;
}

class LocalHandlers : public ::testing::Test {
 protected:
  upstream::Cluster& cluster() { return w.cluster(); }

  LocalResponse get(std::string_view target, const char* from = "127.0.0.1", std::string_view method = "GET") {
    sockaddr_in peer = ipv4(from);
    LocalContext ctx{*w.test.config, w.cluster(), registries, w.registry, started, true, 1};
    return handle_local({method, target, reinterpret_cast<sockaddr*>(&peer)}, ctx);
  }

  unit::TestCluster w{
      "listeners: [{name: client, address: '127.0.0.1:0'}]\n"
      "cluster: {members: [{name: m1, address: '127.0.0.1:1'}, {name: m2, address: '127.0.0.1:2'}]}\n"};
  std::vector<const metrics::Registry*> registries{&w.registry};
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
};

TEST_F(LocalHandlers, HealthIsUnavailableUntilAMemberIsHealthy) {
  auto r = get("/health");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(r.body,
            "{\"health\":\"false\",\"reason\":\"no healthy member (m1: unknown, not checked yet; "
            "m2: unknown, not checked yet)\"}");
  EXPECT_EQ(get("/readyz").status, 503);

  cluster().members()[1]->set_health(upstream::Health::healthy, "");
  r = get("/health");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "{\"health\":\"true\",\"reason\":\"\"}");
  EXPECT_EQ(get("/readyz").status, 200);
}

TEST_F(LocalHandlers, LivezAndVersion) {
  EXPECT_EQ(get("/livez").body, "ok");
  auto v = get("/version");
  EXPECT_EQ(v.status, 200);
  for (const char* key : {"\"sidemux\":", "\"libuv\":", "\"nghttp2\":", "\"llhttp\":\"8.1.0\"", "\"openssl\":"})
    EXPECT_NE(v.body.find(key), std::string::npos) << key;
}

TEST_F(LocalHandlers, QueryStringIsIgnoredForRouting) {
  EXPECT_EQ(get("/livez?verbose=1").status, 200);
  EXPECT_TRUE(is_local_path("/health?x"));
  EXPECT_FALSE(is_local_path("/etcdserverpb.KV/Range"));
  EXPECT_FALSE(is_local_path("/healthz"));
  EXPECT_FALSE(is_local_path("/health/x"));
  EXPECT_TRUE(is_local_path("/version#top"));
}

TEST_F(LocalHandlers, MethodsAndUnknownPaths) {
  EXPECT_EQ(get("/nope").status, 404);
  EXPECT_EQ(get("/nope", "127.0.0.1", "POST").status, 404);
  auto r = get("/health", "127.0.0.1", "POST");
  EXPECT_EQ(r.status, 405);
  EXPECT_TRUE(r.method_not_allowed());
  EXPECT_EQ(get("/livez", "127.0.0.1", "HEAD").status, 200);
}

TEST_F(LocalHandlers, AdminEndpointsFollowAdminAllow) {
  EXPECT_EQ(get("/metrics").status, 200);
  EXPECT_EQ(get("/debug/vars").status, 200);
  EXPECT_EQ(get("/metrics", "10.1.2.3").status, 403);
  EXPECT_EQ(get("/debug/vars", "192.168.0.1").status, 403);
  // Health stays public: load balancers probe it from anywhere.
  EXPECT_EQ(get("/livez", "10.1.2.3").status, 200);
}

TEST_F(LocalHandlers, MetricsAreRenderedAndRequestsCounted) {
  get("/livez");
  get("/livez");
  get("/unknown/path/1");
  get("/unknown/path/2");
  auto m = get("/metrics");
  EXPECT_NE(m.content_type.find("version=0.0.4"), std::string_view::npos);
  EXPECT_NE(m.body.find("sidemux_http_requests_total{path=\"/livez\",code=\"200\"} 2"), std::string::npos) << m.body;
  // Unknown paths share one label value.
  EXPECT_NE(m.body.find("sidemux_http_requests_total{path=\"other\",code=\"404\"} 2"), std::string::npos);
  EXPECT_NE(m.body.find("process_resident_memory_bytes"), std::string::npos);
}

TEST_F(LocalHandlers, DebugVarsShowsGenerationCountersAndMembers) {
  get("/livez");
  auto r = get("/debug/vars");
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_NE(r.body.find("\"config_generation\":1,"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("\"sidemux_http_requests_total{path=\\\"/livez\\\",code=\\\"200\\\"}\":1"),
            std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find("{\"name\":\"m1\",\"address\":\"127.0.0.1:1\",\"health\":\"unknown\""), std::string::npos);
  EXPECT_NE(r.body.find("\"rss_bytes\":"), std::string::npos);
}

}  // namespace
}  // namespace sidemux
