#include "conf/config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <set>
#include <span>
#include <sstream>
#include <system_error>
#include <type_traits>
#include <utility>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include "conf/cpu_count.h"

namespace sidemux::conf {
namespace {

// ---------------------------------------------------------------------------
// Scalar syntax shared by the public parsers and the loader.

enum class Syntax { ok, malformed, out_of_range };

// Unsigned decimal only: no sign, no 0x, no spaces, so that "-1" or " 5" never
// slip through as something else.
Syntax parse_decimal(std::string_view text, uint64_t& out) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  if (ec == std::errc::result_out_of_range) return Syntax::out_of_range;
  if (ec != std::errc() || ptr != end) return Syntax::malformed;
  return Syntax::ok;
}

struct DurationUnit {
  std::string_view suffix;
  int64_t ms;
};
constexpr DurationUnit kDurationUnits[] = {{"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}};

// Durations are later converted to nanoseconds (steady_clock); capping them
// here means no caller has to think about that conversion overflowing.
constexpr int64_t kMaxDurationMs = std::numeric_limits<int64_t>::max() / 1'000'000;

Syntax parse_duration_syntax(std::string_view text, Duration& out) {
  const size_t unit_at = text.find_first_not_of("0123456789");
  if (unit_at == 0 || unit_at == std::string_view::npos) return Syntax::malformed;
  const std::string_view unit = text.substr(unit_at);
  const auto* found = std::find_if(std::begin(kDurationUnits), std::end(kDurationUnits),
                                   [&](const DurationUnit& u) { return u.suffix == unit; });
  if (found == std::end(kDurationUnits)) return Syntax::malformed;
  uint64_t count = 0;
  if (parse_decimal(text.substr(0, unit_at), count) != Syntax::ok ||
      count > static_cast<uint64_t>(kMaxDurationMs / found->ms)) {
    return Syntax::out_of_range;  // the digits were fine, there were just too many
  }
  out = Duration(static_cast<int64_t>(count) * found->ms);
  return Syntax::ok;
}

// inet_pton stops at a NUL, which a quoted YAML string may hold ("::1\0junk").
bool parse_ip(std::string_view text, int family, void* out) {
  return text.find('\0') == std::string_view::npos &&
         inet_pton(family, std::string(text).c_str(), out) == 1;
}

bool is_ipv4_literal(std::string_view host) {
  in_addr ignored{};
  return parse_ip(host, AF_INET, &ignored);
}

bool is_ipv6_literal(std::string_view host) {
  in6_addr ignored{};
  return parse_ip(host, AF_INET6, &ignored);
}

bool is_dns_label_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

// An IPv4 literal or a DNS name (RFC 1123 labels, '_' tolerated as resolvers do).
bool is_host(const std::string& host) {
  // "10.0.0.256" or "1.2.3" would otherwise pass as names and resolve to surprises.
  if (host.find_first_not_of("0123456789.") == std::string::npos) return is_ipv4_literal(host);
  std::string_view name = host;
  if (name.ends_with('.')) name.remove_suffix(1);  // fully qualified
  if (name.empty() || name.size() > 253) return false;
  size_t start = 0;
  while (start <= name.size()) {
    const size_t dot = std::min(name.find('.', start), name.size());
    const std::string_view label = name.substr(start, dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-' ||
        !std::all_of(label.begin(), label.end(), is_dns_label_char)) {
      return false;
    }
    start = dot + 1;
  }
  return true;
}

constexpr std::string_view kAddressForm = "expected host:port or [v6]:port";

// Returns the problem with text, or an empty string when it is a valid address.
// min_port is 0 for listeners (pick a free port) and 1 for members.
std::string parse_host_port_problem(std::string_view text, uint64_t min_port, HostPort& out) {
  HostPort parsed;
  std::string_view port;
  if (text.starts_with('[')) {
    const size_t close = text.find(']');
    if (close == std::string_view::npos || text.substr(close + 1, 1) != ":") {
      return std::string(kAddressForm);
    }
    parsed.host = text.substr(1, close - 1);
    parsed.ipv6 = true;
    port = text.substr(close + 2);
    if (!is_ipv6_literal(parsed.host)) return std::string(kAddressForm);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::string(kAddressForm);
    parsed.host = text.substr(0, colon);
    port = text.substr(colon + 1);
    // A bare IPv6 literal is ambiguous about where the port starts.
    if (parsed.host.find(':') != std::string::npos || !is_host(parsed.host)) {
      return std::string(kAddressForm);
    }
  }
  uint64_t number = 0;
  const Syntax syntax = parse_decimal(port, number);
  if (syntax == Syntax::malformed) return std::string(kAddressForm);
  if (syntax == Syntax::out_of_range || number < min_port || number > 65535) {
    return "port must be " + std::to_string(min_port) + "..65535";
  }
  parsed.port = static_cast<uint16_t>(number);
  out = std::move(parsed);
  return {};
}

// Clears the host bits so that equal ranges compare equal however they were written.
void clear_host_bits(std::span<uint8_t> bytes, unsigned prefix_len) {
  for (size_t i = 0; i < bytes.size(); ++i) {
    const unsigned kept = std::min(8u, prefix_len - std::min(prefix_len, static_cast<unsigned>(i * 8)));
    bytes[i] &= static_cast<uint8_t>(0xff00u >> kept);
  }
}

bool prefix_matches(const uint8_t* a, const uint8_t* b, unsigned prefix_len) {
  const unsigned whole = prefix_len / 8;
  if (std::memcmp(a, b, whole) != 0) return false;
  const unsigned rest = prefix_len % 8;
  const auto mask = static_cast<uint8_t>(0xff00u >> rest);
  return rest == 0 || ((a[whole] ^ b[whole]) & mask) == 0;
}

constexpr uint8_t kV4MappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

// The peer in IPv6 form (IPv4 as ::ffff:a.b.c.d), so that a dual-stack socket
// and an IPv4 socket see the same client the same way.
std::optional<std::array<uint8_t, 16>> peer_as_ipv6(const sockaddr* addr) {
  if (addr == nullptr) return std::nullopt;
  std::array<uint8_t, 16> bytes{};
  if (addr->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(addr);
    std::memcpy(bytes.data(), kV4MappedPrefix, sizeof kV4MappedPrefix);
    std::memcpy(bytes.data() + 12, &in->sin_addr, 4);
    return bytes;
  }
  if (addr->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    std::memcpy(bytes.data(), &in6->sin6_addr, 16);
    return bytes;
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// Loader. A mistake throws Invalid with the node it is about; load_string
// turns the first one into the single error line.

// A node together with where it is and what it is called in error messages.
struct Field {
  YAML::Node node;
  std::string path;
  YAML::Mark mark;
};

struct Invalid {
  YAML::Mark mark;
  std::string key;
  std::string problem;
};

[[noreturn]] void fail(const Field& field, std::string problem) {
  throw Invalid{field.mark, field.path, std::move(problem)};
}

// Escapes what would break the one-line form of an error line (control
// bytes as \xNN) and, for a quoted value, its quotes and backslashes.
std::string escaped(std::string_view text, bool in_quotes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (in_quotes && (c == '"' || c == '\\')) {
      out += '\\';
      out += c;
    } else if (byte < 0x20 || byte == 0x7f) {
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 0xf];
    } else {
      out += c;
    }
  }
  return out;
}

// Quotes a value for an error line.
std::string quoted(std::string_view text) { return "\"" + escaped(text, true) + "\""; }

std::string join(const std::string& parent, std::string_view key) {
  return parent.empty() ? std::string(key) : parent + "." + std::string(key);
}

// An empty value ("key:" with nothing after it) has the mark of whatever
// follows it, often the next line, so point at the key instead.
Field child(const Field& map, const YAML::Node& key, const YAML::Node& value) {
  return Field{value, join(map.path, key.Scalar()), value.IsNull() ? key.Mark() : value.Mark()};
}

std::optional<Field> find_child(const Field& map, std::string_view key) {
  for (const auto& entry : map.node) {
    if (entry.first.Scalar() == key) return child(map, entry.first, entry.second);
  }
  return std::nullopt;
}

std::vector<Field> items(const Field& list) {
  if (!list.node.IsSequence()) fail(list, "expected a list");
  std::vector<Field> out;
  for (const auto& item : list.node) {
    out.push_back(Field{item, list.path + "[" + std::to_string(out.size()) + "]", item.Mark()});
  }
  return out;
}

// One overload per kind of value; Mapping::get picks the one for its target,
// so every key of a kind is checked and reported the same way.
void convert(const Field& f, std::string& out);
void convert(const Field& f, bool& out);
void convert(const Field& f, uint32_t& out, uint32_t min = 1,
             uint32_t max = std::numeric_limits<uint32_t>::max());
void convert(const Field& f, Duration& out);
void convert(const Field& f, Cidr& out);
void convert(const Field& f, ListenerTls& out);
void convert(const Field& f, Listener& out);
void convert(const Field& f, Member& out);
void convert(const Field& f, UpstreamTls& out);
void convert(const Field& f, HealthCheck& out);
void convert(const Field& f, Outlier& out);
void convert(const Field& f, Retry& out);
void convert(const Field& f, Etcd& out);
void convert(const Field& f, Cluster& out);
void convert(const Field& f, Limits& out);
void convert(const Field& f, Reload& out);
void convert(const Field& f, Admin& out);
void convert(const Field& f, Log& out);
template <typename E>
  requires std::is_enum_v<E>
void convert(const Field& f, E& out);
template <typename T>
void convert(const Field& f, std::optional<T>& out);
template <typename T>
void convert(const Field& f, std::vector<T>& out);

// A YAML mapping with a fixed set of keys. The constructor rejects unknown
// and repeated keys before any value is read, so a misspelt key is reported
// as such rather than as a missing one.
class Mapping {
 public:
  Mapping(Field field, std::initializer_list<std::string_view> known) : field_(std::move(field)) {
    if (!field_.node.IsMap()) fail(field_, "expected a mapping");
    std::set<std::string> seen;
    for (const auto& entry : field_.node) {
      const YAML::Node& key = entry.first;
      if (!key.IsScalar()) fail(Field{key, field_.path, key.Mark()}, "expected a string key");
      const Field named{key, join(field_.path, key.Scalar()), key.Mark()};
      if (std::find(known.begin(), known.end(), key.Scalar()) == known.end()) fail(named, "unknown key");
      if (!seen.insert(key.Scalar()).second) fail(named, "duplicate key");
    }
  }

  std::optional<Field> find(std::string_view key) const { return find_child(field_, key); }

  // A missing key is reported at the mapping that should have held it.
  Field require(std::string_view key) const {
    if (auto found = find(key)) return *found;
    fail(Field{field_.node, join(field_.path, key), field_.mark}, "required");
  }

  // Leaves target (the default) untouched when key is absent.
  template <typename T, typename... Range>
  void get(std::string_view key, T& target, Range... range) const {
    if (auto found = find(key)) convert(*found, target, range...);
  }

  template <typename T>
  void require(std::string_view key, T& target) const {
    convert(require(key), target);
  }

 private:
  Field field_;
};

// One key of a mapping whose value goes straight into a member. A mapping
// made only of such keys names each key once (read_keys), so the keys it
// accepts and the keys it reads cannot drift apart.
template <typename T>
struct Key {
  std::string_view name;
  T& target;
  bool required;
  void read(const Mapping& m) const {
    if (required) {
      m.require(name, target);
    } else {
      m.get(name, target);
    }
  }
};

template <typename T>
Key<T> key(std::string_view name, T& target) {
  return {name, target, false};
}

template <typename T>
Key<T> required_key(std::string_view name, T& target) {
  return {name, target, true};
}

// An integer key whose range is not the default (1 and up).
struct BoundedKey {
  std::string_view name;
  uint32_t& target;
  uint32_t min;
  uint32_t max;
  void read(const Mapping& m) const { m.get(name, target, min, max); }
};

// Every key is checked against the list (Mapping) before the first value is
// read, and values are read in the order given, which is the order their
// errors are found in.
template <typename... Keys>
void read_keys(const Field& f, const Keys&... keys) {
  const Mapping m(f, {keys.name...});
  (keys.read(m), ...);
}

const std::string& scalar(const Field& f, std::string_view expected) {
  if (!f.node.IsScalar()) fail(f, "expected " + std::string(expected));
  return f.node.Scalar();
}

// Every string key names something (a file, a label, a host), so "" is a mistake.
const std::string& text(const Field& f) {
  const std::string& value = scalar(f, "a string");
  if (value.empty()) fail(f, "must not be empty");
  return value;
}

void convert(const Field& f, std::string& out) { out = text(f); }

void convert(const Field& f, bool& out) {
  // YAML 1.2 core schema spellings only; yes/no/on/off are YAML 1.1 traps.
  static constexpr std::string_view kTrue[] = {"true", "True", "TRUE"};
  static constexpr std::string_view kFalse[] = {"false", "False", "FALSE"};
  const std::string& value = scalar(f, "true or false");
  if (std::find(std::begin(kTrue), std::end(kTrue), value) != std::end(kTrue)) {
    out = true;
  } else if (std::find(std::begin(kFalse), std::end(kFalse), value) != std::end(kFalse)) {
    out = false;
  } else {
    fail(f, "expected true or false");
  }
}

void convert(const Field& f, uint32_t& out, uint32_t min, uint32_t max) {
  const std::string& value = scalar(f, "an integer");
  // A negative number is a number, just out of range, and should say so.
  const bool negative = value.starts_with('-');
  uint64_t magnitude = 0;
  switch (parse_decimal(std::string_view(value).substr(negative ? 1 : 0), magnitude)) {
    case Syntax::malformed:
      fail(f, "expected an integer");
    case Syntax::out_of_range:
      magnitude = std::numeric_limits<uint64_t>::max();
      break;
    case Syntax::ok:
      break;
  }
  if ((negative && magnitude > 0) || magnitude < min) fail(f, "must be >= " + std::to_string(min));
  if (magnitude > max) fail(f, "must be <= " + std::to_string(max));
  out = static_cast<uint32_t>(magnitude);
}

void convert(const Field& f, Duration& out) {
  const std::string& value = text(f);
  switch (parse_duration_syntax(value, out)) {
    case Syntax::malformed:
      fail(f, "bad duration " + quoted(value) + " (expected a number followed by ms, s, m or h)");
    case Syntax::out_of_range:
      fail(f, "bad duration " + quoted(value) + " (too large)");
    case Syntax::ok:
      break;
  }
  if (out.count() == 0) fail(f, "must be > 0");
}

void convert(const Field& f, Cidr& out) {
  const std::string& value = text(f);
  if (!parse_cidr(value, out)) {
    fail(f, "bad CIDR " + quoted(value) + " (expected an IP address with an optional /prefix)");
  }
}

constexpr const char* kBalanceNames[] = {"least_request", "round_robin"};
constexpr const char* kClusterKindNames[] = {"grpc", "etcd"};
constexpr const char* kLogLevelNames[] = {"debug", "info", "warn", "error"};
constexpr const char* kLogFormatNames[] = {"json", "text"};

// Indexed by the enum's value, which is also what to_string uses.
std::span<const char* const> names_of(Balance) { return kBalanceNames; }
std::span<const char* const> names_of(ClusterKind) { return kClusterKindNames; }
std::span<const char* const> names_of(LogLevel) { return kLogLevelNames; }
std::span<const char* const> names_of(LogFormat) { return kLogFormatNames; }

// "a, b or c"
std::string alternatives(std::span<const char* const> names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += i + 1 == names.size() ? " or " : ", ";
    out += names[i];
  }
  return out;
}

template <typename E>
  requires std::is_enum_v<E>
void convert(const Field& f, E& out) {
  const auto names = names_of(E{});
  const std::string& value = text(f);
  const auto found = std::find(names.begin(), names.end(), value);
  if (found == names.end()) {
    fail(f, "bad value " + quoted(value) + " (expected " + alternatives(names) + ")");
  }
  out = static_cast<E>(found - names.begin());
}

template <typename T>
void convert(const Field& f, std::optional<T>& out) {
  convert(f, out.emplace());
}

// A list given in the file replaces the default list entirely.
template <typename T>
void convert(const Field& f, std::vector<T>& out) {
  out.clear();
  for (const Field& item : items(f)) convert(item, out.emplace_back());
}

// Listeners and members are labels in metrics and logs: at least one entry is
// needed and a name must mean one entry.
template <typename T>
void convert_named_list(const Field& f, std::vector<T>& out) {
  const std::vector<Field> entries = items(f);
  if (entries.empty()) fail(f, "must not be empty");
  std::set<std::string> names;
  for (const Field& entry : entries) {
    T& value = out.emplace_back();
    convert(entry, value);
    if (!names.insert(value.name).second) {
      fail(*find_child(entry, "name"), "duplicate name " + quoted(value.name));
    }
  }
}

enum class AddressOf { listener, member };

HostPort address(const Field& f, AddressOf role) {
  const std::string& value = text(f);
  HostPort parsed;
  // Port 0 asks the kernel for a free port, which only makes sense for a listener.
  const std::string problem =
      parse_host_port_problem(value, role == AddressOf::listener ? 0 : 1, parsed);
  if (!problem.empty()) fail(f, "bad address " + quoted(value) + " (" + problem + ")");
  // A listener binds; resolving a name at bind time would make start-up
  // depend on DNS and pick one address silently.
  if (role == AddressOf::listener && !parsed.ipv6 && !is_ipv4_literal(parsed.host)) {
    fail(f, "bad address " + quoted(value) + " (a listener needs an IP address, not a name)");
  }
  return parsed;
}

// Files are only named here; they are read where TLS is set up.
void convert(const Field& f, ListenerTls& out) {
  read_keys(f, required_key("cert_file", out.cert_file), required_key("key_file", out.key_file),
            key("client_ca_file", out.client_ca_file), key("require_tls", out.require_tls));
}

void convert(const Field& f, Listener& out) {
  const Mapping m(f, {"name", "address", "tls"});
  m.require("name", out.name);
  out.address = address(m.require("address"), AddressOf::listener);
  m.get("tls", out.tls);
}

void convert(const Field& f, Member& out) {
  const Mapping m(f, {"name", "address"});
  m.require("name", out.name);
  out.address = address(m.require("address"), AddressOf::member);
}

void convert(const Field& f, UpstreamTls& out) {
  read_keys(f, required_key("ca_file", out.ca_file), key("cert_file", out.cert_file),
            key("key_file", out.key_file), key("server_name", out.server_name));
  // A certificate is useless without its key and the other way round.
  if (out.cert_file.empty() != out.key_file.empty()) {
    const bool has_cert = !out.cert_file.empty();
    fail(Field{f.node, join(f.path, has_cert ? "key_file" : "cert_file"), f.mark},
         has_cert ? "required when cert_file is set" : "required when key_file is set");
  }
}

void convert(const Field& f, HealthCheck& out) {
  read_keys(f, key("interval", out.interval), key("timeout", out.timeout),
            key("unhealthy_threshold", out.unhealthy_threshold), key("healthy_threshold", out.healthy_threshold));
}

void convert(const Field& f, Outlier& out) {
  read_keys(f, key("consecutive_failures", out.consecutive_failures), key("ejection_time", out.ejection_time));
}

void convert(const Field& f, Retry& out) {
  read_keys(f, BoundedKey{"attempts", out.attempts, /*min=*/0u, Retry::kMaxAttempts});  // 0 turns retries off
}

void convert(const Field& f, Etcd& out) { read_keys(f, key("leader_routing", out.leader_routing)); }

// etcd's grpc-gateway serves its JSON API under these (v3beta and v3alpha are
// older spellings of the same API), so clients of that API keep working.
constexpr const char* kEtcdGatewayPrefixes[] = {"/v3/", "/v3beta/", "/v3alpha/"};

// Prefixes are compared with the request target as sent. One that does not
// start with '/' or holds a byte no request target can hold would never match,
// which is a typo to report rather than a rule to keep silently.
void convert_path_prefixes(const Field& f, std::vector<std::string>& out) {
  out.clear();
  for (const Field& item : items(f)) {
    const std::string& value = text(item);
    if (!value.starts_with('/')) fail(item, "bad path prefix " + quoted(value) + " (must start with /)");
    if (std::any_of(value.begin(), value.end(), [](char c) {
          const auto byte = static_cast<unsigned char>(c);
          return byte <= 0x20 || byte == 0x7f;
        })) {
      fail(item, "bad path prefix " + quoted(value) + " (no spaces or control characters)");
    }
    out.push_back(value);
  }
}

void convert(const Field& f, Cluster& out) {
  const Mapping m(f, {"name", "kind", "members", "balance", "http1_forward", "etcd",
                      "connect_timeout", "max_streams_per_connection", "tls", "health_check",
                      "outlier", "retry"});
  m.get("name", out.name);
  // The kind decides defaults and allowed keys below, wherever it stands in the file.
  m.get("kind", out.kind);
  convert_named_list(m.require("members"), out.members);
  m.get("balance", out.balance);
  if (out.kind == ClusterKind::etcd) {
    out.http1_forward.assign(std::begin(kEtcdGatewayPrefixes), std::end(kEtcdGatewayPrefixes));
    out.etcd.emplace();
  }
  if (auto found = m.find("http1_forward")) convert_path_prefixes(*found, out.http1_forward);
  if (auto found = m.find("etcd")) {
    if (out.kind != ClusterKind::etcd) {
      fail(*found, std::string("only allowed with kind: etcd (kind is ") + to_string(out.kind) + ")");
    }
    convert(*found, out.etcd);
  }
  m.get("connect_timeout", out.connect_timeout);
  m.get("max_streams_per_connection", out.max_streams_per_connection);
  m.get("tls", out.tls);
  m.get("health_check", out.health_check);
  m.get("outlier", out.outlier);
  m.get("retry", out.retry);
}

// Headers accepted from one side are sent on to the other, and nghttp2 sends
// header blocks of at most 64 KiB (the default of
// nghttp2_option_set_max_send_header_block_length): a larger limit would accept
// headers that cannot be forwarded. RFC 9113 counts name + value + 32 per
// field, more than nghttp2_hd_deflate_bound() (12 + name + value + 12 per
// field), so any list within this cap also encodes within that 64 KiB.
constexpr uint32_t kMaxHeaderListSize = 65536;

void convert(const Field& f, Limits& out) {
  read_keys(f, key("max_connections", out.max_connections),
            key("max_concurrent_streams", out.max_concurrent_streams),
            key("classify_timeout", out.classify_timeout), key("idle_timeout", out.idle_timeout),
            BoundedKey{"max_header_list_size", out.max_header_list_size, 1u, kMaxHeaderListSize},
            key("max_http1_request_bytes", out.max_http1_request_bytes),
            key("drain_timeout", out.drain_timeout), key("keepalive_interval", out.keepalive_interval),
            key("keepalive_timeout", out.keepalive_timeout));
}

void convert(const Field& f, Reload& out) { read_keys(f, key("watch", out.watch)); }

void convert(const Field& f, Admin& out) {
  read_keys(f, key("allow", out.allow));  // an empty list is allowed: nobody reads /metrics
}

void convert(const Field& f, Log& out) {
  read_keys(f, key("level", out.level), key("format", out.format), key("access_log", out.access_log));
}

// Each worker is a thread with its own loop and sockets; a typo such as
// 10000 should not start that many.
constexpr uint32_t kMaxWorkers = 1024;

unsigned workers(const Field& f) {
  if (f.node.IsScalar() && f.node.Scalar() == "auto") return cpu_count();
  uint32_t count = 0;
  convert(f, count, 1, kMaxWorkers);
  return count;
}

// With SO_REUSEPORT a second listener on the same address would bind without
// error and silently share the first one's connections.
void reject_shared_addresses(const Field& list, const std::vector<Listener>& listeners) {
  const std::vector<Field> entries = items(list);
  std::set<std::string> addresses;
  for (size_t i = 0; i < listeners.size(); ++i) {
    const std::string address = listeners[i].address.to_string();
    if (listeners[i].address.port != 0 && !addresses.insert(address).second) {
      fail(*find_child(entries[i], "address"), "duplicate address " + quoted(address));
    }
  }
}

std::vector<Cidr> default_admin_allow() {
  std::vector<Cidr> allow(2);
  parse_cidr("127.0.0.0/8", allow[0]);
  parse_cidr("::1/128", allow[1]);
  return allow;
}

void convert_root(const Field& root, Config& out) {
  const Mapping m(root, {"listeners", "workers", "cluster", "limits", "reload", "admin", "log"});
  const Field listeners = m.require("listeners");
  convert_named_list(listeners, out.listeners);
  reject_shared_addresses(listeners, out.listeners);
  out.workers = cpu_count();
  if (auto found = m.find("workers")) out.workers = workers(*found);
  m.require("cluster", out.cluster);
  out.admin.allow = default_admin_allow();
  m.get("limits", out.limits);
  m.get("reload", out.reload);
  m.get("admin", out.admin);
  m.get("log", out.log);
}

std::string error_line(const std::string& source, const YAML::Mark& mark, const std::string& key,
                       const std::string& problem) {
  // Nodes made up by the loader (an empty file) have no position; 1:1 is the honest default.
  const int line = mark.is_null() ? 1 : mark.line + 1;
  const int column = mark.is_null() ? 1 : mark.column + 1;
  // Keys are the file's own text and yaml-cpp's messages may quote the
  // offending byte raw: neither may break the line.
  return source + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " +
         (key.empty() ? "(root)" : escaped(key, false)) + ": " + escaped(problem, false);
}

// Where the root node of each document starts, for the first two documents.
class DocumentRoots : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> marks;

  void OnDocumentStart(const YAML::Mark&) override { in_root_ = true; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { root(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { root(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t, const std::string&) override { root(mark); }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    root(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    root(mark);
  }
  void OnMapEnd() override {}

 private:
  void root(const YAML::Mark& mark) {
    if (in_root_) marks.push_back(mark);
    in_root_ = false;
  }
  bool in_root_ = false;
};

// The one document of a config file. yaml-cpp 0.7's LoadAll never returns
// on some malformed input ("," or ",a: b"): the parser leaves a token no
// rule takes where it is, reports an empty document there again and again,
// and LoadAll collects them until memory runs out (jbeder/yaml-cpp#1040;
// 0.8 stops at the first empty document). So the documents are walked as
// events first, never more than two, and a second root at the same place
// as the first means the parser is stuck there.
YAML::Node single_document(const std::string& yaml) {
  std::istringstream in(yaml);
  YAML::Parser parser(in);
  DocumentRoots roots;
  while (roots.marks.size() < 2 && parser.HandleNextDocument(roots)) {
  }
  if (roots.marks.size() == 2) {
    const YAML::Mark& second = roots.marks[1];
    if (second.pos == roots.marks[0].pos) {
      const auto pos = static_cast<size_t>(second.pos);
      throw Invalid{second, "yaml", pos < yaml.size() ? "unexpected " + quoted(yaml.substr(pos, 1)) : "unexpected end"};
    }
    throw Invalid{second, "yaml", "expected a single document"};
  }
  return roots.marks.empty() ? YAML::Node() : YAML::Load(yaml);
}

// The document root; an empty or comments-only file is an empty mapping so
// that it is reported as missing its required keys.
Field root_of(const YAML::Node& document) {
  if (!document || document.IsNull()) {
    return Field{YAML::Node(YAML::NodeType::Map), "", YAML::Mark::null_mark()};
  }
  return Field{document, "", document.Mark()};
}

// A config is a few kilobytes; the cap keeps `-c /dev/zero` from eating memory.
constexpr size_t kMaxConfigBytes = 16 << 20;

// POSIX calls rather than ifstream so that the error names the real cause
// (a directory, a permission, a missing file). Returns 0 or an errno value.
int read_whole_file(const std::string& path, std::string& out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  char buffer[16384];
  int error = 0;
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n > 0) {
      out.append(buffer, static_cast<size_t>(n));
      if (out.size() > kMaxConfigBytes) {
        error = EFBIG;
        break;
      }
    } else if (n == 0) {
      break;
    } else if (errno != EINTR) {
      error = errno;
      break;
    }
  }
  ::close(fd);
  return error;
}

}  // namespace

// ---------------------------------------------------------------------------
// Public interface.

std::string HostPort::to_string() const {
  return (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

bool Cidr::contains(const struct sockaddr* addr) const {
  const auto peer = peer_as_ipv6(addr);
  if (!peer) return false;
  if (ipv6) return prefix_matches(peer->data(), bytes.data(), prefix_len);
  const bool mapped = std::equal(std::begin(kV4MappedPrefix), std::end(kV4MappedPrefix), peer->begin());
  return mapped && prefix_matches(peer->data() + 12, bytes.data(), prefix_len);
}

bool Admin::allows(const struct sockaddr* addr) const {
  return std::any_of(allow.begin(), allow.end(), [&](const Cidr& range) { return range.contains(addr); });
}

bool parse_duration(std::string_view text, Duration& out) {
  return parse_duration_syntax(text, out) == Syntax::ok;
}

bool parse_host_port(std::string_view text, HostPort& out) {
  return parse_host_port_problem(text, 0, out).empty();
}

bool parse_cidr(std::string_view text, Cidr& out) {
  const size_t slash = text.find('/');
  const std::string_view address = text.substr(0, slash);
  Cidr parsed;
  if (parse_ip(address, AF_INET, parsed.bytes.data())) {
    parsed.ipv6 = false;
  } else if (parse_ip(address, AF_INET6, parsed.bytes.data())) {
    parsed.ipv6 = true;
  } else {
    return false;
  }
  const unsigned max_len = parsed.ipv6 ? 128 : 32;
  uint64_t prefix_len = max_len;  // a bare address is a range of one
  if (slash != std::string_view::npos &&
      (parse_decimal(text.substr(slash + 1), prefix_len) != Syntax::ok || prefix_len > max_len)) {
    return false;
  }
  parsed.prefix_len = static_cast<uint8_t>(prefix_len);
  clear_host_bits(std::span(parsed.bytes).first(max_len / 8), parsed.prefix_len);
  out = parsed;
  return true;
}

const char* to_string(LogLevel level) { return kLogLevelNames[static_cast<size_t>(level)]; }
const char* to_string(Balance balance) { return kBalanceNames[static_cast<size_t>(balance)]; }
const char* to_string(ClusterKind kind) { return kClusterKindNames[static_cast<size_t>(kind)]; }

LoadResult load_string(std::string_view yaml, const std::string& source, uint64_t generation) {
  auto config = std::make_shared<Config>();
  config->source = source;
  config->generation = generation;
  try {
    convert_root(root_of(single_document(std::string(yaml))), *config);
  } catch (const YAML::Exception& e) {
    return LoadResult{nullptr, error_line(source, e.mark, "yaml", e.msg)};
  } catch (const Invalid& e) {
    return LoadResult{nullptr, error_line(source, e.mark, e.key, e.problem)};
  }
  return LoadResult{std::move(config), {}};
}

LoadResult load_file(const std::string& path, uint64_t generation) {
  std::string yaml;
  if (const int error = read_whole_file(path, yaml)) {
    return LoadResult{nullptr, path + ": cannot read: " + std::generic_category().message(error)};
  }
  return load_string(yaml, path, generation);
}

}  // namespace sidemux::conf
