#include "conf/config.h"
#include "conf/cpu_count.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace sidemux::conf {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

// The smallest valid config; cases append to it so their lines start at 3.
const std::string kBase =
    "listeners: [{name: c, address: 127.0.0.1:0}]\n"
    "cluster: {members: [{name: m1, address: 127.0.0.1:1}]}\n";
const std::string kListener = "listeners: [{name: c, address: 127.0.0.1:0}]\n";

std::string repo_root() {
  // __FILE__ is absolute under CMake and relative to the repo in a one-off build.
  const std::string file = __FILE__;
  const std::string suffix = "t/unit/conf/config_test.cc";
  return file.substr(0, file.size() - suffix.size());
}

std::string load_error(const std::string& yaml) {
  const LoadResult result = load_string(yaml, "t.yaml");
  EXPECT_FALSE(result) << "loaded:\n" << yaml;
  return result.error;
}

std::shared_ptr<const Config> load_ok(const std::string& yaml) {
  LoadResult result = load_string(yaml, "t.yaml");
  EXPECT_TRUE(result) << result.error << "\n" << yaml;
  return result.config;
}

// ---------------------------------------------------------------------------
// Every kind of mistake, with the exact line a user sees.

struct BadConfig {
  const char* name;
  std::string yaml;
  std::string error;
};

std::ostream& operator<<(std::ostream& out, const BadConfig& c) { return out << c.name; }

class ConfigErrorTest : public testing::TestWithParam<BadConfig> {};

TEST_P(ConfigErrorTest, ReportsExactLine) {
  EXPECT_EQ(load_error(GetParam().yaml), GetParam().error) << GetParam().yaml;
}

const BadConfig kBadConfigs[] = {
    // durations
    {"duration_bad_unit", kBase + "limits:\n  classify_timeout: 5x\n",
     R"(t.yaml:4:21: limits.classify_timeout: bad duration "5x" (expected a number followed by ms, s, m or h))"},
    {"duration_no_unit", kBase + "limits: {idle_timeout: 300}\n",
     R"(t.yaml:3:24: limits.idle_timeout: bad duration "300" (expected a number followed by ms, s, m or h))"},
    {"duration_negative", kBase + "limits: {drain_timeout: -5s}\n",
     R"(t.yaml:3:25: limits.drain_timeout: bad duration "-5s" (expected a number followed by ms, s, m or h))"},
    {"duration_fraction", kBase + "limits: {drain_timeout: 1.5s}\n",
     R"(t.yaml:3:25: limits.drain_timeout: bad duration "1.5s" (expected a number followed by ms, s, m or h))"},
    {"duration_space", kBase + "limits: {drain_timeout: 5 s}\n",
     R"(t.yaml:3:25: limits.drain_timeout: bad duration "5 s" (expected a number followed by ms, s, m or h))"},
    {"duration_overflow", kBase + "limits: {drain_timeout: 99999999999999999999h}\n",
     R"(t.yaml:3:25: limits.drain_timeout: bad duration "99999999999999999999h" (too large))"},
    {"duration_zero",
     kListener + "cluster:\n  members: [{name: m1, address: 127.0.0.1:1}]\n  health_check:\n"
                 "    interval: 0s\n",
     "t.yaml:5:15: cluster.health_check.interval: must be > 0"},
    {"duration_nested",
     kListener + "cluster:\n  members: [{name: m1, address: 127.0.0.1:1}]\n  outlier:\n"
                 "    ejection_time: 30\n",
     R"(t.yaml:5:20: cluster.outlier.ejection_time: bad duration "30" (expected a number followed by ms, s, m or h))"},
    {"duration_empty_points_at_key", kBase + "limits:\n  idle_timeout:\n",
     "t.yaml:4:3: limits.idle_timeout: expected a string"},

    // addresses
    {"address_no_port",
     kListener + "cluster:\n  members:\n    - name: m1\n      address: foo\n",
     R"(t.yaml:5:16: cluster.members[0].address: bad address "foo" (expected host:port or [v6]:port))"},
    {"address_second_member",
     kListener + "cluster:\n  members:\n    - {name: m1, address: 127.0.0.1:1}\n"
                 "    - {name: m2, address: \"127.0.0.1:\"}\n",
     R"(t.yaml:5:27: cluster.members[1].address: bad address "127.0.0.1:" (expected host:port or [v6]:port))"},
    {"address_member_port_zero",
     kListener + "cluster: {members: [{name: m1, address: 127.0.0.1:0}]}\n",
     R"(t.yaml:2:41: cluster.members[0].address: bad address "127.0.0.1:0" (port must be 1..65535))"},
    {"address_port_too_big", "listeners: [{name: c, address: 127.0.0.1:65536}]\n",
     R"(t.yaml:1:32: listeners[0].address: bad address "127.0.0.1:65536" (port must be 0..65535))"},
    {"address_unbracketed_v6", "listeners: [{name: c, address: \"::1:2379\"}]\n",
     R"(t.yaml:1:32: listeners[0].address: bad address "::1:2379" (expected host:port or [v6]:port))"},
    {"address_brackets_not_v6", "listeners: [{name: c, address: \"[10.0.0.1]:80\"}]\n",
     R"(t.yaml:1:32: listeners[0].address: bad address "[10.0.0.1]:80" (expected host:port or [v6]:port))"},
    {"address_bad_ipv4_is_not_a_name",
     kListener + "cluster: {members: [{name: m1, address: 10.0.0.256:1}]}\n",
     R"(t.yaml:2:41: cluster.members[0].address: bad address "10.0.0.256:1" (expected host:port or [v6]:port))"},
    {"address_listener_needs_ip", "listeners: [{name: c, address: localhost:2379}]\n",
     R"(t.yaml:1:32: listeners[0].address: bad address "localhost:2379" (a listener needs an IP address, not a name))"},
    {"address_escaped_in_message", "listeners: [{name: c, address: \"a\\nb\\\"\"}]\n",
     R"(t.yaml:1:32: listeners[0].address: bad address "a\x0ab\"" (expected host:port or [v6]:port))"},

    // unknown keys at several depths
    {"unknown_top_level", kBase + "listener: []\n", "t.yaml:3:1: listener: unknown key"},
    {"unknown_in_cluster",
     kListener + "cluster:\n  members: [{name: m1, address: 127.0.0.1:1}]\n  helth_check: {}\n",
     "t.yaml:4:3: cluster.helth_check: unknown key"},
    {"unknown_three_deep",
     kListener + "cluster:\n  members: [{name: m1, address: 127.0.0.1:1}]\n  health_check:\n"
                 "    interval: 5s\n    intervall: 5s\n",
     "t.yaml:6:5: cluster.health_check.intervall: unknown key"},
    {"unknown_in_list_entry",
     kListener + "cluster:\n  members:\n    - name: m1\n      address: 127.0.0.1:1\n"
                 "    - name: m2\n      adress: 127.0.0.1:2\n",
     "t.yaml:7:7: cluster.members[1].adress: unknown key"},
    {"unknown_in_listener_tls",
     "listeners:\n  - name: c\n    address: 127.0.0.1:0\n    tls: {cert_file: a, key_file: b, cert: c}\n",
     "t.yaml:4:38: listeners[0].tls.cert: unknown key"},
    {"unknown_reported_before_required", "listeners: [{name: c, adress: 127.0.0.1:0}]\n",
     "t.yaml:1:23: listeners[0].adress: unknown key"},
    {"duplicate_key", kBase + "workers: 2\nworkers: 3\n", "t.yaml:4:1: workers: duplicate key"},
    {"non_string_key", kBase + "? [a]\n: 1\n", "t.yaml:3:3: (root): expected a string key"},

    // wrong types
    {"listeners_not_a_list", "listeners: {name: c}\n", "t.yaml:1:12: listeners: expected a list"},
    {"listener_not_a_mapping", "listeners: [c]\n", "t.yaml:1:13: listeners[0]: expected a mapping"},
    {"cluster_not_a_mapping", kListener + "cluster: [m1]\n", "t.yaml:2:10: cluster: expected a mapping"},
    {"integer_expected", kBase + "limits: {max_connections: many}\n",
     "t.yaml:3:27: limits.max_connections: expected an integer"},
    {"integer_not_float", kBase + "limits: {max_connections: 1e4}\n",
     "t.yaml:3:27: limits.max_connections: expected an integer"},
    {"bool_expected", kBase + "log: {access_log: yes}\n", "t.yaml:3:19: log.access_log: expected true or false"},
    {"string_expected", kBase + "log: {level: [info]}\n", "t.yaml:3:14: log.level: expected a string"},
    {"string_not_empty", "listeners: [{name: \"\", address: 127.0.0.1:0}]\n",
     "t.yaml:1:20: listeners[0].name: must not be empty"},
    {"null_section", kBase + "limits:\n", "t.yaml:3:1: limits: expected a mapping"},
    {"root_not_a_mapping", "- a\n", "t.yaml:1:1: (root): expected a mapping"},

    // ranges
    {"workers_zero", kBase + "workers: 0\n", "t.yaml:3:10: workers: must be >= 1"},
    {"workers_too_many", kBase + "workers: 5000\n", "t.yaml:3:10: workers: must be <= 1024"},
    {"workers_word", kBase + "workers: many\n", "t.yaml:3:10: workers: expected an integer"},
    {"threshold_zero",
     kListener + "cluster:\n  members: [{name: m1, address: 127.0.0.1:1}]\n  health_check: {healthy_threshold: 0}\n",
     "t.yaml:4:37: cluster.health_check.healthy_threshold: must be >= 1"},
    {"max_streams_zero",
     kListener + "cluster:\n  members: [{name: m1, address: 127.0.0.1:1}]\n  max_streams_per_connection: 0\n",
     "t.yaml:4:31: cluster.max_streams_per_connection: must be >= 1"},
    {"attempts_negative",
     kListener + "cluster:\n  members: [{name: m1, address: 127.0.0.1:1}]\n  retry: {attempts: -1}\n",
     "t.yaml:4:21: cluster.retry.attempts: must be >= 0"},
    {"attempts_past_what_a_stream_remembers",
     kListener + "cluster:\n  members: [{name: m1, address: 127.0.0.1:1}]\n  retry: {attempts: 4}\n",
     "t.yaml:4:21: cluster.retry.attempts: must be <= 3"},
    {"limit_over_32_bits", kBase + "limits: {max_http1_request_bytes: 4294967296}\n",
     "t.yaml:3:35: limits.max_http1_request_bytes: must be <= 4294967295"},
    {"header_list_over_nghttp2_send_limit", kBase + "limits: {max_header_list_size: 65537}\n",
     "t.yaml:3:32: limits.max_header_list_size: must be <= 65536"},
    {"keepalive_interval_zero", kBase + "limits: {keepalive_interval: 0s}\n",
     "t.yaml:3:30: limits.keepalive_interval: must be > 0"},
    {"keepalive_timeout_no_unit", kBase + "limits:\n  keepalive_timeout: 10\n",
     R"(t.yaml:4:22: limits.keepalive_timeout: bad duration "10" (expected a number followed by ms, s, m or h))"},
    {"limit_huge", kBase + "limits: {max_connections: 99999999999999999999999}\n",
     "t.yaml:3:27: limits.max_connections: must be <= 4294967295"},

    // required
    {"empty_file", "", "t.yaml:1:1: listeners: required"},
    {"comments_only", "# nothing yet\n", "t.yaml:1:1: listeners: required"},
    {"listeners_missing", "workers: 1\n", "t.yaml:1:1: listeners: required"},
    {"listeners_empty", "listeners: []\n", "t.yaml:1:12: listeners: must not be empty"},
    {"listener_address_missing", "listeners:\n  - name: c\n",
     "t.yaml:2:5: listeners[0].address: required"},
    {"cluster_missing", kListener, "t.yaml:1:1: cluster: required"},
    {"members_missing", kListener + "cluster:\n  name: etcd\n", "t.yaml:3:3: cluster.members: required"},
    {"members_empty", kListener + "cluster: {members: []}\n", "t.yaml:2:20: cluster.members: must not be empty"},
    {"member_name_missing", kListener + "cluster: {members: [{address: 127.0.0.1:1}]}\n",
     "t.yaml:2:21: cluster.members[0].name: required"},
    {"listener_tls_key_missing",
     "listeners:\n  - name: c\n    address: 127.0.0.1:0\n    tls:\n      cert_file: s.crt\n",
     "t.yaml:5:7: listeners[0].tls.key_file: required"},
    {"cluster_tls_ca_missing",
     kListener + "cluster:\n  members: [{name: m1, address: 127.0.0.1:1}]\n  tls: {server_name: x}\n",
     "t.yaml:4:8: cluster.tls.ca_file: required"},
    {"cluster_tls_key_without_cert",
     kListener + "cluster:\n  members: [{name: m1, address: 127.0.0.1:1}]\n"
                 "  tls: {ca_file: ca.crt, key_file: c.key}\n",
     "t.yaml:4:8: cluster.tls.cert_file: required when key_file is set"},
    {"cluster_tls_cert_without_key",
     kListener + "cluster:\n  members: [{name: m1, address: 127.0.0.1:1}]\n"
                 "  tls: {ca_file: ca.crt, cert_file: c.crt}\n",
     "t.yaml:4:8: cluster.tls.key_file: required when cert_file is set"},

    // duplicate names
    {"duplicate_member",
     kListener + "cluster:\n  members:\n    - {name: m1, address: 127.0.0.1:1}\n"
                 "    - {name: m2, address: 127.0.0.1:2}\n    - {name: m1, address: 127.0.0.1:3}\n",
     R"(t.yaml:6:14: cluster.members[2].name: duplicate name "m1")"},
    {"duplicate_listener",
     "listeners:\n  - {name: c, address: 127.0.0.1:1}\n  - {name: c, address: 127.0.0.1:2}\n",
     R"(t.yaml:3:12: listeners[1].name: duplicate name "c")"},
    {"duplicate_listener_address",
     "listeners:\n  - {name: a, address: 127.0.0.1:2379}\n  - {name: b, address: 127.0.0.1:2379}\n" +
         std::string("cluster: {members: [{name: m1, address: 127.0.0.1:1}]}\n"),
     R"(t.yaml:3:24: listeners[1].address: duplicate address "127.0.0.1:2379")"},

    // enums
    {"bad_balance",
     kListener + "cluster:\n  members: [{name: m1, address: 127.0.0.1:1}]\n  balance: random\n",
     R"(t.yaml:4:12: cluster.balance: bad value "random" (expected least_request or round_robin))"},
    {"bad_log_level", kBase + "log: {level: verbose}\n",
     R"(t.yaml:3:14: log.level: bad value "verbose" (expected debug, info, warn or error))"},
    {"bad_kind", kListener + "cluster:\n  kind: consul\n  members: [{name: m1, address: 127.0.0.1:1}]\n",
     R"(t.yaml:3:9: cluster.kind: bad value "consul" (expected grpc or etcd))"},
    {"bad_log_format", kBase + "log: {format: xml}\n",
     R"(t.yaml:3:15: log.format: bad value "xml" (expected json or text))"},

    // CIDRs
    {"cidr_prefix_too_long", kBase + "admin:\n  allow: [10.0.0.0/8, 10.0.0.0/33]\n",
     R"(t.yaml:4:23: admin.allow[1]: bad CIDR "10.0.0.0/33" (expected an IP address with an optional /prefix))"},
    {"cidr_not_an_address", kBase + "admin:\n  allow:\n    - localhost\n",
     R"(t.yaml:5:7: admin.allow[0]: bad CIDR "localhost" (expected an IP address with an optional /prefix))"},
    {"cidr_v6_prefix_too_long", kBase + "admin: {allow: [\"::/129\"]}\n",
     R"(t.yaml:3:17: admin.allow[0]: bad CIDR "::/129" (expected an IP address with an optional /prefix))"},
    {"allow_not_a_list", kBase + "admin: {allow: 10.0.0.0/8}\n", "t.yaml:3:16: admin.allow: expected a list"},

    // kind etcd and what depends on it
    {"etcd_block_without_kind",
     kListener + "cluster:\n  members: [{name: m1, address: 127.0.0.1:1}]\n  etcd: {leader_routing: false}\n",
     "t.yaml:4:9: cluster.etcd: only allowed with kind: etcd (kind is grpc)"},
    {"etcd_block_with_kind_grpc",
     kListener + "cluster:\n  kind: grpc\n  members: [{name: m1, address: 127.0.0.1:1}]\n"
                 "  etcd:\n    leader_routing: true\n",
     "t.yaml:6:5: cluster.etcd: only allowed with kind: etcd (kind is grpc)"},
    {"etcd_unknown_key",
     kListener + "cluster:\n  kind: etcd\n  members: [{name: m1, address: 127.0.0.1:1}]\n"
                 "  etcd: {leader_routing: true, leader: m1}\n",
     "t.yaml:5:32: cluster.etcd.leader: unknown key"},
    {"etcd_leader_routing_not_bool",
     kListener + "cluster:\n  kind: etcd\n  members: [{name: m1, address: 127.0.0.1:1}]\n"
                 "  etcd: {leader_routing: on}\n",
     "t.yaml:5:26: cluster.etcd.leader_routing: expected true or false"},
    {"etcd_not_a_mapping",
     kListener + "cluster:\n  kind: etcd\n  members: [{name: m1, address: 127.0.0.1:1}]\n  etcd: true\n",
     "t.yaml:5:9: cluster.etcd: expected a mapping"},
    {"http1_forward_relative",
     kListener + "cluster:\n  members: [{name: m1, address: 127.0.0.1:1}]\n  http1_forward: [/v3/, v3beta/]\n",
     R"(t.yaml:4:25: cluster.http1_forward[1]: bad path prefix "v3beta/" (must start with /))"},
    {"http1_forward_space",
     kListener + "cluster:\n  members: [{name: m1, address: 127.0.0.1:1}]\n  http1_forward:\n"
                 "    - \"/v3 /\"\n",
     R"(t.yaml:5:7: cluster.http1_forward[0]: bad path prefix "/v3 /" (no spaces or control characters))"},
    {"http1_forward_control_char",
     kListener + "cluster:\n  members: [{name: m1, address: 127.0.0.1:1}]\n  http1_forward: [\"/v3/\\t\"]\n",
     R"(t.yaml:4:19: cluster.http1_forward[0]: bad path prefix "/v3/\x09" (no spaces or control characters))"},
    {"http1_forward_empty_prefix",
     kListener + "cluster:\n  members: [{name: m1, address: 127.0.0.1:1}]\n  http1_forward: [\"\"]\n",
     "t.yaml:4:19: cluster.http1_forward[0]: must not be empty"},
    {"http1_forward_not_a_list",
     kListener + "cluster:\n  kind: etcd\n  members: [{name: m1, address: 127.0.0.1:1}]\n  http1_forward: /v3/\n",
     "t.yaml:5:18: cluster.http1_forward: expected a list"},

    // reload
    {"reload_watch_not_bool", kBase + "reload: {watch: 1}\n", "t.yaml:3:17: reload.watch: expected true or false"},
    {"reload_unknown_key", kBase + "reload:\n  watch: true\n  interval: 1s\n",
     "t.yaml:5:3: reload.interval: unknown key"},

    // YAML syntax
    {"yaml_unclosed_flow", "listeners: [\n", "t.yaml:2:1: yaml: end of sequence flow not found"},
    {"yaml_undefined_alias", kBase + "workers: *n\n", "t.yaml:3:10: yaml: the referenced anchor is not defined"},
    {"yaml_two_documents", kBase + "---\nworkers: 2\n", "t.yaml:4:1: yaml: expected a single document"},
    {"yaml_empty_second_document", kBase + "---\n", "t.yaml:4:1: yaml: expected a single document"},
    // yaml-cpp 0.7 loops forever, allocating, on these (found by t/fuzz/config).
    {"yaml_lone_comma", ",", R"(t.yaml:1:1: yaml: unexpected ",")"},
    // yaml-cpp names a bad escape with the raw byte (found by t/fuzz/config).
    {"yaml_control_byte_in_message", "x: \"\\\x01\"\n", R"(t.yaml:1:7: yaml: unknown escape character: \x01)"},
    {"control_byte_in_key", kBase + "\"a\\tb\": 1\n", R"(t.yaml:3:1: a\x09b: unknown key)"},
    {"yaml_comma_before_mapping", ",listeners:\n  - name: c\n", R"(t.yaml:1:1: yaml: unexpected ",")"},
};

INSTANTIATE_TEST_SUITE_P(Config, ConfigErrorTest, testing::ValuesIn(kBadConfigs),
                         [](const testing::TestParamInfo<BadConfig>& param) { return param.param.name; });

// Every error must be one line: the contract of `sidemux --check`.
TEST(ConfigError, IsOneLine) {
  for (const BadConfig& c : kBadConfigs) EXPECT_EQ(c.error.find('\n'), std::string::npos) << c.name;
}

// ---------------------------------------------------------------------------
// Loading.

TEST(LoadFile, SampleConfigLoadsWithDefaults) {
  const std::string path = repo_root() + "conf/sidemux.yaml";
  const LoadResult result = load_file(path, 7);
  ASSERT_TRUE(result) << result.error;
  const Config& c = *result.config;
  EXPECT_EQ(c.source, path);
  EXPECT_EQ(c.generation, 7u);

  ASSERT_EQ(c.listeners.size(), 1u);
  EXPECT_EQ(c.listeners[0].name, "client");
  EXPECT_EQ(c.listeners[0].address.to_string(), "127.0.0.1:2379");
  EXPECT_FALSE(c.listeners[0].tls);
  EXPECT_EQ(c.workers, conf::cpu_count());

  ASSERT_EQ(c.cluster.members.size(), 3u);
  const char* const addresses[] = {"127.0.0.1:12379", "127.0.0.1:22379", "127.0.0.1:32379"};
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(c.cluster.members[i].name, "m" + std::to_string(i + 1));
    EXPECT_EQ(c.cluster.members[i].address.to_string(), addresses[i]);
  }
  EXPECT_FALSE(c.cluster.tls);

  // The sample documents the defaults of kind etcd, so it must say what an
  // empty section means for that kind.
  EXPECT_EQ(c.cluster.kind, ClusterKind::etcd);
  const Config defaults = *load_ok(kListener +
                                   "cluster: {kind: etcd, members: [{name: m1, address: 127.0.0.1:1}]}\n");
  EXPECT_EQ(c.cluster.name, defaults.cluster.name);
  EXPECT_EQ(c.cluster.http1_forward, defaults.cluster.http1_forward);
  ASSERT_TRUE(c.cluster.etcd);
  EXPECT_EQ(c.cluster.etcd->leader_routing, defaults.cluster.etcd->leader_routing);
  EXPECT_EQ(c.cluster.balance, defaults.cluster.balance);
  EXPECT_EQ(c.cluster.connect_timeout, defaults.cluster.connect_timeout);
  EXPECT_EQ(c.cluster.max_streams_per_connection, defaults.cluster.max_streams_per_connection);
  EXPECT_EQ(c.cluster.health_check.interval, defaults.cluster.health_check.interval);
  EXPECT_EQ(c.cluster.health_check.timeout, defaults.cluster.health_check.timeout);
  EXPECT_EQ(c.cluster.health_check.unhealthy_threshold, defaults.cluster.health_check.unhealthy_threshold);
  EXPECT_EQ(c.cluster.health_check.healthy_threshold, defaults.cluster.health_check.healthy_threshold);
  EXPECT_EQ(c.cluster.outlier.consecutive_failures, defaults.cluster.outlier.consecutive_failures);
  EXPECT_EQ(c.cluster.outlier.ejection_time, defaults.cluster.outlier.ejection_time);
  EXPECT_EQ(c.cluster.retry.attempts, defaults.cluster.retry.attempts);
  EXPECT_EQ(c.limits.max_connections, defaults.limits.max_connections);
  EXPECT_EQ(c.limits.max_concurrent_streams, defaults.limits.max_concurrent_streams);
  EXPECT_EQ(c.limits.classify_timeout, defaults.limits.classify_timeout);
  EXPECT_EQ(c.limits.idle_timeout, defaults.limits.idle_timeout);
  EXPECT_EQ(c.limits.max_header_list_size, defaults.limits.max_header_list_size);
  EXPECT_EQ(c.limits.max_http1_request_bytes, defaults.limits.max_http1_request_bytes);
  EXPECT_EQ(c.limits.drain_timeout, defaults.limits.drain_timeout);
  EXPECT_EQ(c.limits.keepalive_interval, defaults.limits.keepalive_interval);
  EXPECT_EQ(c.limits.keepalive_timeout, defaults.limits.keepalive_timeout);
  EXPECT_EQ(c.reload.watch, defaults.reload.watch);
  ASSERT_EQ(c.admin.allow.size(), defaults.admin.allow.size());
  for (size_t i = 0; i < c.admin.allow.size(); ++i) {
    EXPECT_EQ(c.admin.allow[i].ipv6, defaults.admin.allow[i].ipv6);
    EXPECT_EQ(c.admin.allow[i].bytes, defaults.admin.allow[i].bytes);
    EXPECT_EQ(c.admin.allow[i].prefix_len, defaults.admin.allow[i].prefix_len);
  }
  EXPECT_EQ(c.log.level, defaults.log.level);
  EXPECT_EQ(c.log.format, defaults.log.format);
  EXPECT_EQ(c.log.access_log, defaults.log.access_log);
}

TEST(LoadString, DefaultsMatchTheSpec) {
  const auto c = load_ok(kBase);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->source, "t.yaml");
  EXPECT_EQ(c->generation, 1u);
  EXPECT_EQ(c->workers, conf::cpu_count());  // auto
  EXPECT_EQ(c->listeners[0].address.port, 0);  // 0: the kernel picks a port
  EXPECT_EQ(c->cluster.name, "etcd");
  EXPECT_EQ(c->cluster.kind, ClusterKind::grpc);
  EXPECT_TRUE(c->cluster.http1_forward.empty());
  EXPECT_FALSE(c->cluster.etcd);
  EXPECT_EQ(c->cluster.balance, Balance::least_request);
  EXPECT_EQ(c->cluster.connect_timeout, seconds(2));
  EXPECT_EQ(c->cluster.max_streams_per_connection, 100u);
  EXPECT_EQ(c->cluster.health_check.interval, seconds(5));
  EXPECT_EQ(c->cluster.health_check.timeout, seconds(1));
  EXPECT_EQ(c->cluster.health_check.unhealthy_threshold, 3u);
  EXPECT_EQ(c->cluster.health_check.healthy_threshold, 2u);
  EXPECT_EQ(c->cluster.outlier.consecutive_failures, 5u);
  EXPECT_EQ(c->cluster.outlier.ejection_time, seconds(30));
  EXPECT_EQ(c->cluster.retry.attempts, 2u);
  EXPECT_EQ(c->limits.max_connections, 10000u);
  EXPECT_EQ(c->limits.max_concurrent_streams, 256u);
  EXPECT_EQ(c->limits.classify_timeout, seconds(10));
  EXPECT_EQ(c->limits.idle_timeout, minutes(5));
  EXPECT_EQ(c->limits.max_header_list_size, 65536u);
  EXPECT_EQ(c->limits.max_http1_request_bytes, 16384u);
  EXPECT_EQ(c->limits.drain_timeout, seconds(30));
  EXPECT_EQ(c->limits.keepalive_interval, seconds(30));
  EXPECT_EQ(c->limits.keepalive_timeout, seconds(10));
  EXPECT_FALSE(c->reload.watch);
  ASSERT_EQ(c->admin.allow.size(), 2u);
  EXPECT_EQ(c->log.level, LogLevel::info);
  EXPECT_EQ(c->log.format, LogFormat::json);
  EXPECT_TRUE(c->log.access_log);
}

TEST(LoadString, EveryKeyIsRead) {
  const auto c = load_ok(R"(
listeners:
  - name: plain
    address: 0.0.0.0:2379
  - name: secure
    address: "[::1]:2380"
    tls: {cert_file: s.crt, key_file: s.key, client_ca_file: ca.crt, require_tls: false}
workers: 3
cluster:
  name: prod
  kind: etcd
  members:
    - {name: a, address: "etcd-0.etcd.svc.cluster.local:2379"}
    - {name: b, address: "[fd00::2]:2379"}
  balance: round_robin
  http1_forward: [/v3/kv/, /v3/watch]
  etcd: {leader_routing: false}
  connect_timeout: 250ms
  max_streams_per_connection: 7
  tls: {ca_file: ca.crt, cert_file: c.crt, key_file: c.key, server_name: etcd.local}
  health_check: {interval: 1m, timeout: 2s, unhealthy_threshold: 4, healthy_threshold: 5}
  outlier: {consecutive_failures: 6, ejection_time: 1h}
  retry: {attempts: 0}
limits:
  max_connections: 1
  max_concurrent_streams: 2
  classify_timeout: 3s
  idle_timeout: 4m
  max_header_list_size: 5
  max_http1_request_bytes: 6
  drain_timeout: 7s
  keepalive_interval: 8s
  keepalive_timeout: 900ms
reload: {watch: true}
admin:
  allow: [10.0.0.0/8]
log: {level: debug, format: text, access_log: False}
)");
  ASSERT_TRUE(c);
  ASSERT_EQ(c->listeners.size(), 2u);
  EXPECT_FALSE(c->listeners[0].tls);
  const Listener& secure = c->listeners[1];
  EXPECT_EQ(secure.address.host, "::1");
  EXPECT_TRUE(secure.address.ipv6);
  ASSERT_TRUE(secure.tls);
  EXPECT_EQ(secure.tls->cert_file, "s.crt");
  EXPECT_EQ(secure.tls->key_file, "s.key");
  EXPECT_EQ(secure.tls->client_ca_file, "ca.crt");
  EXPECT_FALSE(secure.tls->require_tls);
  EXPECT_EQ(c->workers, 3u);
  EXPECT_EQ(c->cluster.name, "prod");
  EXPECT_EQ(c->cluster.kind, ClusterKind::etcd);
  EXPECT_EQ(c->cluster.http1_forward, (std::vector<std::string>{"/v3/kv/", "/v3/watch"}));
  ASSERT_TRUE(c->cluster.etcd);
  EXPECT_FALSE(c->cluster.etcd->leader_routing);
  EXPECT_EQ(c->cluster.members[0].address.host, "etcd-0.etcd.svc.cluster.local");
  EXPECT_EQ(c->cluster.members[1].address.to_string(), "[fd00::2]:2379");
  EXPECT_EQ(c->cluster.balance, Balance::round_robin);
  EXPECT_EQ(c->cluster.connect_timeout, milliseconds(250));
  EXPECT_EQ(c->cluster.max_streams_per_connection, 7u);
  ASSERT_TRUE(c->cluster.tls);
  EXPECT_EQ(c->cluster.tls->ca_file, "ca.crt");
  EXPECT_EQ(c->cluster.tls->cert_file, "c.crt");
  EXPECT_EQ(c->cluster.tls->key_file, "c.key");
  EXPECT_EQ(c->cluster.tls->server_name, "etcd.local");
  EXPECT_EQ(c->cluster.health_check.interval, minutes(1));
  EXPECT_EQ(c->cluster.health_check.timeout, seconds(2));
  EXPECT_EQ(c->cluster.health_check.unhealthy_threshold, 4u);
  EXPECT_EQ(c->cluster.health_check.healthy_threshold, 5u);
  EXPECT_EQ(c->cluster.outlier.consecutive_failures, 6u);
  EXPECT_EQ(c->cluster.outlier.ejection_time, hours(1));
  EXPECT_EQ(c->cluster.retry.attempts, 0u);
  EXPECT_EQ(c->limits.max_connections, 1u);
  EXPECT_EQ(c->limits.max_concurrent_streams, 2u);
  EXPECT_EQ(c->limits.classify_timeout, seconds(3));
  EXPECT_EQ(c->limits.idle_timeout, minutes(4));
  EXPECT_EQ(c->limits.max_header_list_size, 5u);
  EXPECT_EQ(c->limits.max_http1_request_bytes, 6u);
  EXPECT_EQ(c->limits.drain_timeout, seconds(7));
  EXPECT_EQ(c->limits.keepalive_interval, seconds(8));
  EXPECT_EQ(c->limits.keepalive_timeout, milliseconds(900));
  EXPECT_TRUE(c->reload.watch);
  ASSERT_EQ(c->admin.allow.size(), 1u);  // a given list replaces the default
  EXPECT_EQ(c->log.level, LogLevel::debug);
  EXPECT_EQ(c->log.format, LogFormat::text);
  EXPECT_FALSE(c->log.access_log);
}

const std::string kEtcdBase =
    kListener + "cluster:\n  kind: etcd\n  members: [{name: m1, address: 127.0.0.1:1}]\n";

TEST(LoadString, KindEtcdForwardsTheGatewayAndRoutesToTheLeaderByDefault) {
  const auto c = load_ok(kEtcdBase);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->cluster.kind, ClusterKind::etcd);
  EXPECT_EQ(c->cluster.http1_forward, (std::vector<std::string>{"/v3/", "/v3beta/", "/v3alpha/"}));
  ASSERT_TRUE(c->cluster.etcd);
  EXPECT_TRUE(c->cluster.etcd->leader_routing);
}

TEST(LoadString, KindEtcdEmptyBlockKeepsDefaults) {
  const auto c = load_ok(kEtcdBase + "  etcd: {}\n");
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->cluster.etcd);
  EXPECT_TRUE(c->cluster.etcd->leader_routing);
}

// An explicit empty list turns the gateway off; it is not the same as absent.
TEST(LoadString, KindEtcdEmptyForwardListForwardsNothing) {
  const auto c = load_ok(kEtcdBase + "  http1_forward: []\n");
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->cluster.http1_forward.empty());
}

// The kind is read first whatever its place in the file, so defaults that
// depend on it do not overwrite a list given before it.
TEST(LoadString, KindAfterForwardListKeepsTheList) {
  const auto c = load_ok(kListener +
                         "cluster:\n  http1_forward: [/v3/kv/]\n  etcd: {leader_routing: false}\n"
                         "  members: [{name: m1, address: 127.0.0.1:1}]\n  kind: etcd\n");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->cluster.http1_forward, (std::vector<std::string>{"/v3/kv/"}));
  ASSERT_TRUE(c->cluster.etcd);
  EXPECT_FALSE(c->cluster.etcd->leader_routing);
}

TEST(LoadString, KindGrpcMayForwardHttp1) {
  const auto c = load_ok(kListener +
                         "cluster:\n  kind: grpc\n  members: [{name: m1, address: 127.0.0.1:1}]\n"
                         "  http1_forward: [/api/]\n");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->cluster.http1_forward, (std::vector<std::string>{"/api/"}));
  EXPECT_FALSE(c->cluster.etcd);
}

TEST(LoadString, HeaderListSizeCapIsAccepted) {
  const auto c = load_ok(kBase + "limits: {max_header_list_size: 65536}\n");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->limits.max_header_list_size, 65536u);
}

TEST(LoadString, WorkersAutoIsTheCpuCount) {
  const auto c = load_ok(kBase + "workers: auto\n");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->workers, conf::cpu_count());
}

TEST(LoadString, ListenersOnPortZeroMayRepeat) {
  EXPECT_TRUE(load_ok("listeners:\n  - {name: a, address: 127.0.0.1:0}\n  - {name: b, address: 127.0.0.1:0}\n"
                      "cluster: {members: [{name: m1, address: 127.0.0.1:1}]}\n"));
}

TEST(LoadString, EmptyAdminAllowListDeniesEveryone) {
  const auto c = load_ok(kBase + "admin: {allow: []}\n");
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->admin.allow.empty());
}

TEST(LoadFile, UnreadableFileNamesTheCause) {
  EXPECT_EQ(load_file("/nonexistent/sidemux.yaml").error,
            "/nonexistent/sidemux.yaml: cannot read: No such file or directory");
  EXPECT_EQ(load_file("/").error, "/: cannot read: Is a directory");
  EXPECT_EQ(load_file("/dev/zero").error, "/dev/zero: cannot read: File too large");
}

TEST(LoadFile, ErrorsNameTheFile) {
  char path[] = "/tmp/sidemux_config_test_XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  std::ofstream(path) << kBase << "workers: 0\n";
  EXPECT_EQ(load_file(path).error, std::string(path) + ":3:10: workers: must be >= 1");
  std::remove(path);
}

// ---------------------------------------------------------------------------
// Parsers.

TEST(ParseDuration, AcceptsEachUnit) {
  const std::pair<const char*, Duration> good[] = {
      {"250ms", milliseconds(250)}, {"5s", seconds(5)}, {"5m", minutes(5)}, {"1h", hours(1)},
      {"0s", Duration(0)},  // syntax only; the loader rejects zero timeouts
      {"007s", seconds(7)}, {"2562047h", hours(2562047)},
  };
  for (const auto& [text, expected] : good) {
    Duration out{};
    EXPECT_TRUE(parse_duration(text, out)) << text;
    EXPECT_EQ(out, expected) << text;
  }
}

TEST(ParseDuration, RejectsMalformedAndOverflow) {
  for (const char* text : {"", "s", "5", "ms", "5 s", " 5s", "5s ", "-5s", "+5s", "1.5s", "5S", "5sec",
                           "5ms5", "1m30s", "0x10s", "2562048h", "99999999999999999999ms"}) {
    Duration out = seconds(42);
    EXPECT_FALSE(parse_duration(text, out)) << text;
    EXPECT_EQ(out, seconds(42)) << "changed on failure: " << text;
  }
}

TEST(ParseHostPort, AcceptsNamesAndLiterals) {
  struct Good {
    const char* text;
    const char* host;
    uint16_t port;
    bool ipv6;
  };
  const Good good[] = {
      {"127.0.0.1:0", "127.0.0.1", 0, false},
      {"0.0.0.0:65535", "0.0.0.0", 65535, false},
      {"[::1]:2379", "::1", 2379, true},
      {"[::ffff:10.0.0.1]:1", "::ffff:10.0.0.1", 1, true},
      {"localhost:2379", "localhost", 2379, false},
      {"etcd-0.etcd.svc.cluster.local.:2379", "etcd-0.etcd.svc.cluster.local.", 2379, false},
      {"_srv.example:1", "_srv.example", 1, false},
  };
  for (const Good& g : good) {
    HostPort out;
    ASSERT_TRUE(parse_host_port(g.text, out)) << g.text;
    EXPECT_EQ(out.host, g.host);
    EXPECT_EQ(out.port, g.port);
    EXPECT_EQ(out.ipv6, g.ipv6);
    EXPECT_EQ(out.to_string(), g.text) << "round trip";
  }
}

TEST(ParseHostPort, RejectsMalformed) {
  for (const char* text : {"", ":80", "host", "host:", "host:65536", "host:-1", "host:+1", "host:8o", "::1:80",
                           "[::1]", "[::1]80", "[::1:80", "[]:80", "[1.2.3.4]:80", "[fe80::1%eth0]:80",
                           "1.2.3:80", "256.0.0.1:80", "-bad:80", "bad-:80", "a..b:80", "a b:80", ".:80",
                           "host:99999999999999999999"}) {
    HostPort out;
    EXPECT_FALSE(parse_host_port(text, out)) << text;
  }
  using namespace std::string_view_literals;
  HostPort out;
  EXPECT_FALSE(parse_host_port("[::1\0junk]:80"sv, out)) << "NUL inside the address";
}

TEST(ParseCidr, ParsesAndClearsHostBits) {
  Cidr out;
  ASSERT_TRUE(parse_cidr("10.1.2.3/8", out));
  EXPECT_FALSE(out.ipv6);
  EXPECT_EQ(out.prefix_len, 8);
  EXPECT_EQ(out.bytes, (std::array<uint8_t, 16>{10}));

  ASSERT_TRUE(parse_cidr("192.168.255.255/20", out));
  EXPECT_EQ(out.bytes, (std::array<uint8_t, 16>{192, 168, 240}));

  ASSERT_TRUE(parse_cidr("::1", out));  // a bare address is a single host
  EXPECT_TRUE(out.ipv6);
  EXPECT_EQ(out.prefix_len, 128);
  EXPECT_EQ(out.bytes[15], 1);

  ASSERT_TRUE(parse_cidr("10.0.0.7", out));
  EXPECT_EQ(out.prefix_len, 32);

  ASSERT_TRUE(parse_cidr("0.0.0.0/0", out));
  EXPECT_EQ(out.prefix_len, 0);
}

TEST(ParseCidr, RejectsMalformed) {
  for (const char* text : {"", "/8", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.0/-1", "10.0.0.0/+8",
                           "10.0.0/8", "[::1]/128", "localhost", "10.0.0.0/8/8", "10.0.0.0 /8"}) {
    Cidr out;
    EXPECT_FALSE(parse_cidr(text, out)) << text;
  }
  using namespace std::string_view_literals;
  Cidr out;
  EXPECT_FALSE(parse_cidr("10.0.0.1\0junk/8"sv, out)) << "NUL inside the address";
}

TEST(ToString, NamesMatchTheConfigWords) {
  EXPECT_STREQ(to_string(LogLevel::debug), "debug");
  EXPECT_STREQ(to_string(LogLevel::error), "error");
  EXPECT_STREQ(to_string(Balance::least_request), "least_request");
  EXPECT_STREQ(to_string(Balance::round_robin), "round_robin");
  EXPECT_STREQ(to_string(ClusterKind::grpc), "grpc");
  EXPECT_STREQ(to_string(ClusterKind::etcd), "etcd");
}

// ---------------------------------------------------------------------------
// Cidr::contains and Admin::allows.

sockaddr_storage peer(const char* ip) {
  sockaddr_storage storage{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&storage);
  if (inet_pton(AF_INET, ip, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
  } else if (inet_pton(AF_INET6, ip, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
  } else {
    ADD_FAILURE() << "bad test address " << ip;
  }
  return storage;
}

bool contains(const char* range, const char* ip) {
  Cidr cidr;
  EXPECT_TRUE(parse_cidr(range, cidr)) << range;
  const sockaddr_storage addr = peer(ip);
  return cidr.contains(reinterpret_cast<const sockaddr*>(&addr));
}

TEST(CidrContains, Ipv4) {
  EXPECT_TRUE(contains("127.0.0.0/8", "127.0.0.1"));
  EXPECT_TRUE(contains("127.0.0.0/8", "127.255.255.255"));
  EXPECT_FALSE(contains("127.0.0.0/8", "128.0.0.1"));
  EXPECT_TRUE(contains("192.168.16.0/20", "192.168.31.1"));
  EXPECT_FALSE(contains("192.168.16.0/20", "192.168.32.1"));
  EXPECT_TRUE(contains("10.0.0.5", "10.0.0.5"));
  EXPECT_FALSE(contains("10.0.0.5", "10.0.0.4"));
  EXPECT_TRUE(contains("0.0.0.0/0", "203.0.113.9"));
  EXPECT_FALSE(contains("0.0.0.0/0", "2001:db8::1"));  // an IPv4 range never holds real IPv6
}

TEST(CidrContains, Ipv6) {
  EXPECT_TRUE(contains("::1/128", "::1"));
  EXPECT_FALSE(contains("::1/128", "::2"));
  EXPECT_TRUE(contains("2001:db8::/33", "2001:db8:7fff::1"));
  EXPECT_FALSE(contains("2001:db8::/33", "2001:db8:8000::1"));
  EXPECT_TRUE(contains("::/0", "2001:db8::1"));
  EXPECT_FALSE(contains("::1/128", "127.0.0.1"));
}

TEST(CidrContains, Ipv4MappedIpv6) {
  EXPECT_TRUE(contains("127.0.0.0/8", "::ffff:127.0.0.1"));
  EXPECT_FALSE(contains("127.0.0.0/8", "::ffff:10.0.0.1"));
  EXPECT_FALSE(contains("127.0.0.0/8", "::127.0.0.1"));  // IPv4-compatible, not mapped
  EXPECT_FALSE(contains("127.0.0.0/8", "64:ff9b::7f00:1"));
  // A v6 range written in mapped form matches the same clients on either socket family.
  EXPECT_TRUE(contains("::ffff:10.0.0.0/104", "10.1.2.3"));
  EXPECT_TRUE(contains("::ffff:10.0.0.0/104", "::ffff:10.1.2.3"));
  EXPECT_FALSE(contains("::ffff:10.0.0.0/104", "11.1.2.3"));
}

TEST(CidrContains, OtherFamiliesNeverMatch) {
  Cidr everything;
  ASSERT_TRUE(parse_cidr("0.0.0.0/0", everything));
  sockaddr_un unix_addr{};
  unix_addr.sun_family = AF_UNIX;
  EXPECT_FALSE(everything.contains(reinterpret_cast<const sockaddr*>(&unix_addr)));
  EXPECT_FALSE(everything.contains(nullptr));
}

TEST(AdminAllows, DefaultIsLoopbackOnly) {
  const auto c = load_ok(kBase);
  ASSERT_TRUE(c);
  for (const char* ip : {"127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"}) {
    const sockaddr_storage addr = peer(ip);
    EXPECT_TRUE(c->admin.allows(reinterpret_cast<const sockaddr*>(&addr))) << ip;
  }
  for (const char* ip : {"10.0.0.1", "::2", "::ffff:10.0.0.1"}) {
    const sockaddr_storage addr = peer(ip);
    EXPECT_FALSE(c->admin.allows(reinterpret_cast<const sockaddr*>(&addr))) << ip;
  }
}

}  // namespace
}  // namespace sidemux::conf
