#include "proxy/core/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <ctime>
#include <limits>
#include <string>
#include <vector>

#include "proxy/core/metric_names.h"
#include "proxy/core/metrics_text.h"
#include "proxy/core/process_stats.h"

namespace sidemux::metrics {
namespace {

const Family kTestCounter{"test_events_total", "Events seen.", Type::counter, {}, {}};
const Family kTestHistogram{"test_latency_seconds", "Latency.", Type::histogram, {"route"}, {0.005, 0.25, 1}};
const Family kTestEscaping{"test_escaping", "Help with \\ and\nnewline.", Type::gauge, {"value"}, {}};

std::string render_all(const std::vector<const Registry*>& registries) { return render(registries); }

// The rendered families, without the process_* metrics (which vary between runs).
std::string render_families(const std::vector<const Registry*>& registries) {
  std::string text = render_all(registries);
  return text.substr(0, text.find("# HELP process_"));
}

// The value of the unlabelled sample `name` in `text`, or NaN if absent.
double sample_value(const std::string& text, const std::string& name) {
  size_t pos = text.find("\n" + name + " ");
  if (pos == std::string::npos) return std::nan("");
  return std::stod(text.substr(pos + name.size() + 2));
}

TEST(MetricsRender, Counter) {
  Registry r;
  r.counter(kTestCounter).inc();
  r.counter(kTestCounter).inc(41);
  EXPECT_EQ(render_families({&r}),
            "# HELP test_events_total Events seen.\n"
            "# TYPE test_events_total counter\n"
            "test_events_total 42\n");
}

TEST(MetricsRender, LabelledGaugeSortedByLabels) {
  Registry r;
  r.gauge(kMemberActiveStreams, {"b"}).set(7);
  Gauge& a = r.gauge(kMemberActiveStreams, {"a"});
  a.inc(3);
  a.dec(5);
  EXPECT_EQ(render_families({&r}),
            "# HELP sidemux_member_active_streams Streams open to a member.\n"
            "# TYPE sidemux_member_active_streams gauge\n"
            "sidemux_member_active_streams{member=\"a\"} -2\n"
            "sidemux_member_active_streams{member=\"b\"} 7\n");
}

TEST(MetricsRender, FamiliesSortedByName) {
  Registry r;
  r.gauge(kConfigGeneration).set(3);
  r.counter(kConfigReloads, {"success"}).inc();
  EXPECT_EQ(render_families({&r}),
            "# HELP sidemux_config_generation Generation number of the config in force.\n"
            "# TYPE sidemux_config_generation gauge\n"
            "sidemux_config_generation 3\n"
            "# HELP sidemux_config_reloads_total Config reloads by result.\n"
            "# TYPE sidemux_config_reloads_total counter\n"
            "sidemux_config_reloads_total{result=\"success\"} 1\n");
}

TEST(MetricsRender, HistogramCumulativeBuckets) {
  Registry r;
  Histogram& h = r.histogram(kTestHistogram, {"/x"});
  h.observe(0.25);  // on a bound: buckets are "le", so it counts in that one
  h.observe(0.75);
  h.observe(4);
  EXPECT_EQ(render_families({&r}),
            "# HELP test_latency_seconds Latency.\n"
            "# TYPE test_latency_seconds histogram\n"
            "test_latency_seconds_bucket{route=\"/x\",le=\"0.005\"} 0\n"
            "test_latency_seconds_bucket{route=\"/x\",le=\"0.25\"} 1\n"
            "test_latency_seconds_bucket{route=\"/x\",le=\"1\"} 2\n"
            "test_latency_seconds_bucket{route=\"/x\",le=\"+Inf\"} 3\n"
            "test_latency_seconds_sum{route=\"/x\"} 5\n"
            "test_latency_seconds_count{route=\"/x\"} 3\n");
}

TEST(MetricsRender, SumsSeriesAcrossRegistries) {
  Registry a;
  Registry b;
  a.counter(kUpstreamStreams, {"m1", "OK"}).inc(2);
  b.counter(kUpstreamStreams, {"m1", "OK"}).inc(3);
  b.counter(kUpstreamStreams, {"m1", "UNAVAILABLE"}).inc();
  a.gauge(kStreamsActive).set(4);
  b.gauge(kStreamsActive).set(-1);
  a.histogram(kTestHistogram, {"/x"}).observe(0.5);
  b.histogram(kTestHistogram, {"/x"}).observe(0.00390625);  // 2^-8: the sum below is exact
  b.histogram(kTestHistogram, {"/x"}).observe(2);
  EXPECT_EQ(render_families({&a, &b}),
            "# HELP sidemux_streams_active HTTP/2 streams open on client connections.\n"
            "# TYPE sidemux_streams_active gauge\n"
            "sidemux_streams_active 3\n"
            "# HELP sidemux_upstream_streams_total Proxied streams by member and final grpc-status.\n"
            "# TYPE sidemux_upstream_streams_total counter\n"
            "sidemux_upstream_streams_total{member=\"m1\",grpc_status=\"OK\"} 5\n"
            "sidemux_upstream_streams_total{member=\"m1\",grpc_status=\"UNAVAILABLE\"} 1\n"
            "# HELP test_latency_seconds Latency.\n"
            "# TYPE test_latency_seconds histogram\n"
            "test_latency_seconds_bucket{route=\"/x\",le=\"0.005\"} 1\n"
            "test_latency_seconds_bucket{route=\"/x\",le=\"0.25\"} 1\n"
            "test_latency_seconds_bucket{route=\"/x\",le=\"1\"} 2\n"
            "test_latency_seconds_bucket{route=\"/x\",le=\"+Inf\"} 3\n"
            "test_latency_seconds_sum{route=\"/x\"} 2.50390625\n"
            "test_latency_seconds_count{route=\"/x\"} 3\n");
}

TEST(MetricsRender, EscapesLabelValuesAndHelp) {
  Registry r;
  r.gauge(kTestEscaping, {"a\"b\\c\nd"}).set(1);
  EXPECT_EQ(render_families({&r}),
            "# HELP test_escaping Help with \\\\ and\\nnewline.\n"
            "# TYPE test_escaping gauge\n"
            "test_escaping{value=\"a\\\"b\\\\c\\nd\"} 1\n");
}

TEST(MetricsRender, OmitsFamiliesWithoutSeries) {
  Registry empty;
  EXPECT_EQ(render_families({&empty}), "");

  // Reading a value must not create the series.
  Registry r;
  EXPECT_EQ(r.counter_value(kConfigReloads, {"failure"}), 0u);
  EXPECT_EQ(r.gauge_value(kMemberUp, {"m1"}), 0);
  EXPECT_EQ(render_families({&empty, &r}), "");

  // A series that exists is rendered even when zero.
  r.counter(kTestCounter);
  EXPECT_EQ(render_families({&empty, &r}),
            "# HELP test_events_total Events seen.\n"
            "# TYPE test_events_total counter\n"
            "test_events_total 0\n");
}

TEST(MetricsRegistry, ValuesOfOneSeries) {
  Registry r;
  r.counter(kConnectionsAccepted, {"main", "h2", "true"}).inc(5);
  r.gauge(kMemberUp, {"m1"}).set(1);
  EXPECT_EQ(r.counter_value(kConnectionsAccepted, {"main", "h2", "true"}), 5u);
  EXPECT_EQ(r.counter_value(kConnectionsAccepted, {"main", "http1", "true"}), 0u);
  EXPECT_EQ(r.gauge_value(kMemberUp, {"m1"}), 1);
  EXPECT_EQ(r.gauge_value(kMemberUp, {"m2"}), 0);
}

TEST(MetricsRegistry, SameSeriesSameObject) {
  Registry r;
  EXPECT_EQ(&r.counter(kBytes, {"upstream", "in"}), &r.counter(kBytes, {"upstream", "in"}));
  EXPECT_NE(&r.counter(kBytes, {"upstream", "in"}), &r.counter(kBytes, {"upstream", "out"}));
}

TEST(MetricsHistogram, BucketsCountAndSum) {
  const std::vector<double> bounds{1, 2};
  Histogram h(bounds);
  h.observe(0.5);
  h.observe(1);
  h.observe(1.5);
  h.observe(3);
  h.observe(std::numeric_limits<double>::quiet_NaN());  // like client_golang: +Inf
  EXPECT_EQ(h.bucket(0), 2u);
  EXPECT_EQ(h.bucket(1), 1u);
  EXPECT_EQ(h.bucket(2), 2u);
  EXPECT_EQ(h.count(), 5u);
  EXPECT_TRUE(std::isnan(h.sum()));
}

TEST(MetricsProcess, RenderedWithPlausibleValues) {
  Registry r;
  std::string text = render_all({&r});
  for (const char* name : {"process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds",
                           "process_start_time_seconds"}) {
    EXPECT_NE(text.find(std::string("# HELP ") + name + " "), std::string::npos) << name;
    EXPECT_NE(text.find(std::string("# TYPE ") + name + " "), std::string::npos) << name;
  }
  EXPECT_NE(text.find("# TYPE process_cpu_seconds_total counter\n"), std::string::npos);

  EXPECT_GT(sample_value(text, "process_resident_memory_bytes"), 1024 * 1024);
  EXPECT_GE(sample_value(text, "process_cpu_seconds_total"), 0);
  EXPECT_GE(sample_value(text, "process_open_fds"), 3);  // at least stdin, stdout, stderr
  // This test process started moments ago; btime has one-second resolution.
  const double now = static_cast<double>(std::time(nullptr));
  const double start = sample_value(text, "process_start_time_seconds");
  EXPECT_GT(start, now - 3600);
  EXPECT_LE(start, now + 2);
}

TEST(MetricsProcess, OpenFdsFollowsDescriptors) {
  const uint64_t before = read_process_stats().open_fds;
  FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(read_process_stats().open_fds, before + 1);
  std::fclose(f);
}

TEST(MetricsDeathTest, WrongTypeAborts) {
  Registry r;
  EXPECT_DEATH(r.counter(kMemberUp, {"m1"}), "sidemux_member_up: is a gauge, used as a counter");
  EXPECT_DEATH(r.counter_value(kMemberUp, {"m1"}), "is a gauge, used as a counter");
  EXPECT_DEATH(r.gauge(kTestHistogram, {"/x"}), "is a histogram, used as a gauge");
}

TEST(MetricsDeathTest, WrongLabelCountAborts) {
  Registry r;
  EXPECT_DEATH(r.counter(kUpstreamStreams, {"m1"}), "expects 2 label values, got 1");
  EXPECT_DEATH(r.gauge(kStreamsActive, {"x"}), "expects 0 label values, got 1");
}

TEST(MetricsDeathTest, ConflictingDefinitionsAbort) {
  const Family other{"test_events_total", "Events seen.", Type::gauge, {}, {}};
  Registry a;
  Registry b;
  a.counter(kTestCounter);
  b.gauge(other);
  EXPECT_DEATH(render_all({&a, &b}), "defined twice");
}

}  // namespace
}  // namespace sidemux::metrics

namespace sidemux::metrics {
namespace {

TEST(MetricsSnapshot, CountersAndGaugesByExpositionName) {
  const Family c{"test_total", "C.", Type::counter, {"k"}};
  Registry a, b;
  a.counter(c, {"x\"y"}).inc(2);
  b.counter(c, {"x\"y"}).inc(3);
  const Registry* regs[] = {&a, &b};
  auto snap = snapshot(regs);
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_EQ(snap[0].first, "test_total{k=\"x\\\"y\"}");
  EXPECT_EQ(snap[0].second, 5);
}

}  // namespace
}  // namespace sidemux::metrics
