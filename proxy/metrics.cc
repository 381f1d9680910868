#include "proxy/metrics.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <concepts>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <variant>

namespace sidemux::metrics {

namespace {

// Misuse of the API (wrong type, wrong label count, unsorted buckets) is a bug
// in the caller; abort loudly in every build type rather than rely on assert().
[[noreturn]] void fail(std::string_view family, std::string_view what) {
  std::fprintf(stderr, "sidemux::metrics: %.*s: %.*s\n", static_cast<int>(family.size()),
               family.data(), static_cast<int>(what.size()), what.data());
  std::abort();
}

std::string_view type_name(Type type) {
  switch (type) {
    case Type::counter: return "counter";
    case Type::gauge: return "gauge";
    case Type::histogram: return "histogram";
  }
  return "untyped";
}

void check_use(const Family& family, Type type, size_t label_count) {
  if (family.type != type) {
    fail(family.name, std::string("is a ") + std::string(type_name(family.type)) + ", used as a " +
                          std::string(type_name(type)));
  }
  if (label_count != family.label_names.size()) {
    fail(family.name, "expects " + std::to_string(family.label_names.size()) + " label values, got " +
                          std::to_string(label_count));
  }
}

}  // namespace

Histogram::Histogram(const std::vector<double>& bounds)
    : bounds_(bounds), counts_(std::make_unique<std::atomic<uint64_t>[]>(bounds.size() + 1)) {
  if (!std::is_sorted(bounds.begin(), bounds.end())) fail("histogram", "bucket bounds are not ascending");
}

void Histogram::observe(double v) {
  // First bound with v <= bound. Written as partition_point on !(b >= v) rather
  // than lower_bound so that NaN lands in +Inf, as client_golang does.
  auto it = std::partition_point(bounds_.begin(), bounds_.end(), [v](double b) { return !(b >= v); });
  counts_[it - bounds_.begin()].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

struct Registry::Series {
  explicit Series(const Family& family) {
    switch (family.type) {
      case Type::counter: break;  // the variant starts out holding a Counter
      case Type::gauge: metric.emplace<Gauge>(); break;
      case Type::histogram: metric.emplace<Histogram>(family.buckets); break;
    }
  }
  std::variant<Counter, Gauge, Histogram> metric;
};

Registry::Registry() = default;
Registry::~Registry() = default;

Registry::Series& Registry::find_or_create(const Family& family,
                                           std::initializer_list<std::string_view> labels) {
  Key key{&family, {labels.begin(), labels.end()}};  // allocate before taking the lock
  std::lock_guard lock(mu_);
  auto [it, inserted] = series_.try_emplace(std::move(key));
  if (inserted) it->second = std::make_unique<Series>(family);
  return *it->second;
}

// The pointer stays valid after unlocking: series are never erased.
const Registry::Series* Registry::find(const Family& family,
                                       std::initializer_list<std::string_view> labels) const {
  Key key{&family, {labels.begin(), labels.end()}};
  std::lock_guard lock(mu_);
  auto it = series_.find(key);
  return it == series_.end() ? nullptr : it->second.get();
}

Counter& Registry::counter(const Family& family, std::initializer_list<std::string_view> labels) {
  check_use(family, Type::counter, labels.size());
  return std::get<Counter>(find_or_create(family, labels).metric);
}

Gauge& Registry::gauge(const Family& family, std::initializer_list<std::string_view> labels) {
  check_use(family, Type::gauge, labels.size());
  return std::get<Gauge>(find_or_create(family, labels).metric);
}

Histogram& Registry::histogram(const Family& family, std::initializer_list<std::string_view> labels) {
  check_use(family, Type::histogram, labels.size());
  return std::get<Histogram>(find_or_create(family, labels).metric);
}

uint64_t Registry::counter_value(const Family& family, std::initializer_list<std::string_view> labels) const {
  check_use(family, Type::counter, labels.size());
  const Series* s = find(family, labels);
  return s ? std::get<Counter>(s->metric).value() : 0;
}

int64_t Registry::gauge_value(const Family& family, std::initializer_list<std::string_view> labels) const {
  check_use(family, Type::gauge, labels.size());
  const Series* s = find(family, labels);
  return s ? std::get<Gauge>(s->metric).value() : 0;
}

namespace {

// One series summed over all registries; only the fields of its type are used.
struct Totals {
  Merge merge = Merge::sum;
  bool seen = false;
  uint64_t counter = 0;
  int64_t gauge = 0;
  std::vector<uint64_t> buckets;  // non-cumulative, last one is +Inf
  double sum = 0;

  void add(const Counter& c) { counter += c.value(); }
  void add(const Gauge& g) {
    gauge = merge == Merge::max && seen ? std::max(gauge, g.value()) : gauge + g.value();
    seen = true;
  }
  void add(const Histogram& h) {
    buckets.resize(h.bounds().size() + 1);
    for (size_t i = 0; i < buckets.size(); ++i) buckets[i] += h.bucket(i);
    sum += h.sum();
  }
};

struct FamilyTotals {
  const Family* family = nullptr;
  std::map<std::vector<std::string>, Totals> series;  // by label values
};

bool same_definition(const Family& a, const Family& b) {
  return a.type == b.type && a.help == b.help && a.label_names == b.label_names && a.buckets == b.buckets &&
         a.merge == b.merge;
}

// HELP text escapes backslash and newline; label values also escape '"'.
void append_escaped(std::string& out, std::string_view s, bool quote) {
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quote) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

void append_number(std::string& out, std::integral auto v) {
  char buf[24];
  auto end = std::to_chars(buf, buf + sizeof buf, v).ptr;
  out.append(buf, end);
}

// Shortest round-trip form, so bucket bounds read le="0.005" and not
// 0.0050000000000000001; Prometheus parses both plain and exponent forms.
void append_number(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else {
    char buf[32];
    auto end = std::to_chars(buf, buf + sizeof buf, v).ptr;
    out.append(buf, end);
  }
}

void append_header(std::string& out, std::string_view name, std::string_view help, Type type) {
  out += "# HELP ";
  out += name;
  out += ' ';
  append_escaped(out, help, false);
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type_name(type);
  out += '\n';
}

// One sample line: name+suffix, the series' labels plus `le` when not empty.
void append_sample(std::string& out, std::string_view name, std::string_view suffix,
                   const std::vector<std::string_view>& label_names, const std::vector<std::string>& label_values,
                   std::string_view le, auto value) {
  out += name;
  out += suffix;
  if (!label_names.empty() || !le.empty()) {
    char sep = '{';
    auto label = [&](std::string_view label_name, std::string_view label_value) {
      out += sep;
      out += label_name;
      out += "=\"";
      append_escaped(out, label_value, true);
      out += '"';
      sep = ',';
    };
    for (size_t i = 0; i < label_names.size(); ++i) label(label_names[i], label_values[i]);
    if (!le.empty()) label("le", le);
    out += '}';
  }
  out += ' ';
  append_number(out, value);
  out += '\n';
}

void append_histogram(std::string& out, const Family& f, const std::vector<std::string>& labels, const Totals& t) {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < t.buckets.size(); ++i) {
    cumulative += t.buckets[i];
    std::string le;
    append_number(le, i < f.buckets.size() ? f.buckets[i] : std::numeric_limits<double>::infinity());
    append_sample(out, f.name, "_bucket", f.label_names, labels, le, cumulative);
  }
  append_sample(out, f.name, "_sum", f.label_names, labels, {}, t.sum);
  // _count is the +Inf bucket rather than Histogram::count(): observe() runs
  // concurrently with the scrape, and the format requires the two to agree.
  append_sample(out, f.name, "_count", f.label_names, labels, {}, cumulative);
}

void append_family(std::string& out, const FamilyTotals& ft) {
  const Family& f = *ft.family;
  append_header(out, f.name, f.help, f.type);
  for (const auto& [labels, t] : ft.series) {
    switch (f.type) {
      case Type::counter: append_sample(out, f.name, {}, f.label_names, labels, {}, t.counter); break;
      case Type::gauge: append_sample(out, f.name, {}, f.label_names, labels, {}, t.gauge); break;
      case Type::histogram: append_histogram(out, f, labels, t); break;
    }
  }
}

void append_process_metric(std::string& out, std::string_view name, std::string_view help, Type type,
                           auto value) {
  append_header(out, name, help, type);
  append_sample(out, name, {}, {}, {}, {}, value);
}

void append_process_metrics(std::string& out) {
  ProcessStats ps = read_process_stats();
  append_process_metric(out, "process_resident_memory_bytes", "Resident memory size in bytes.", Type::gauge,
                        ps.resident_memory_bytes);
  append_process_metric(out, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                        Type::counter, ps.cpu_seconds);
  append_process_metric(out, "process_open_fds", "Number of open file descriptors.", Type::gauge, ps.open_fds);
  append_process_metric(out, "process_start_time_seconds",
                        "Start time of the process since unix epoch in seconds.", Type::gauge,
                        ps.start_time_seconds);
}

}  // namespace

namespace {

// Every family's series summed across registries, keyed by name so that
// families sort by name and two identical definitions of one family (say, in
// two libraries) merge.
std::map<std::string_view, FamilyTotals> merge(std::span<const Registry* const> registries,
                                               const auto& series_of) {
  std::map<std::string_view, FamilyTotals> families;
  for (const Registry* r : registries) {
    series_of(*r, [&](const Family* family, const std::vector<std::string>& labels, const auto& metric) {
      FamilyTotals& ft = families[family->name];
      if (!ft.family) {
        ft.family = family;
      } else if (ft.family != family && !same_definition(*ft.family, *family)) {
        fail(family->name, "defined twice with different type, help, labels or buckets");
      }
      Totals& t = ft.series[labels];
      t.merge = family->merge;
      std::visit([&t](const auto& m) { t.add(m); }, metric);
    });
  }
  return families;
}

}  // namespace

// Visits a registry's series under its lock (friend access for merge()).
struct RegistryAccess {
  template <typename Fn>
  void operator()(const Registry& r, Fn&& fn) const {
    std::lock_guard lock(r.mu_);
    for (const auto& [key, series] : r.series_) fn(key.first, key.second, series->metric);
  }
};

std::string render(std::span<const Registry* const> registries) {
  std::string out;
  for (const auto& [name, ft] : merge(registries, RegistryAccess{})) append_family(out, ft);
  append_process_metrics(out);
  return out;
}

std::vector<std::pair<std::string, double>> snapshot(std::span<const Registry* const> registries) {
  std::vector<std::pair<std::string, double>> out;
  for (const auto& [name, ft] : merge(registries, RegistryAccess{})) {
    const Family& f = *ft.family;
    if (f.type == Type::histogram) continue;
    for (const auto& [labels, t] : ft.series) {
      // The exposition line without its value is the key.
      std::string line;
      append_sample(line, f.name, {}, f.label_names, labels, {}, 0);
      line.resize(line.rfind(' '));
      out.emplace_back(std::move(line), f.type == Type::counter ? static_cast<double>(t.counter)
                                                                : static_cast<double>(t.gauge));
    }
  }
  return out;
}

namespace {

// Reads a whole file in one go. Only used on /proc pseudo-files, which the
// kernel generates in memory without disk I/O, so calling this from a worker's
// event loop (as a scrape does) does not block it. Their stat() size is 0,
// hence reading until EOF. Returns "" if the file cannot be opened.
std::string read_proc_file(const char* path) {
  std::string data;
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return data;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      data.append(buf, static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(fd);
  return data;
}

// The index-th (from 0) whitespace-separated field of `text` as a number, 0 if
// absent or not a number.
uint64_t field(std::string_view text, size_t index) {
  constexpr std::string_view kSpace = " \t\n";
  size_t start = text.find_first_not_of(kSpace);
  for (size_t i = 0; i < index && start != std::string_view::npos; ++i) {
    start = text.find_first_not_of(kSpace, text.find_first_of(kSpace, start));
  }
  uint64_t v = 0;
  if (start != std::string_view::npos) std::from_chars(text.data() + start, text.data() + text.size(), v);
  return v;
}

// Boot time in seconds since the epoch. Cached: it never changes, and
// /proc/stat is large and costly to generate on machines with many CPUs.
uint64_t boot_time_seconds() {
  static const uint64_t btime = [] {
    std::string stat = read_proc_file("/proc/stat");
    size_t pos = stat.find("\nbtime ");
    return pos == std::string::npos ? 0 : field(std::string_view(stat).substr(pos), 1);
  }();
  return btime;
}

uint64_t count_open_fds() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return 0;
  uint64_t n = 0;
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ++n;  // skips "." and ".."
  }
  ::closedir(dir);
  // Not counting the directory's own descriptor, open only for this count.
  return n > 0 ? n - 1 : 0;
}

}  // namespace

ProcessStats read_process_stats() {
  ProcessStats ps;
  const double ticks_per_second = static_cast<double>(::sysconf(_SC_CLK_TCK));

  // Fields after "(comm)", which may itself contain spaces and parentheses;
  // index 0 is field 3 (state) of proc(5), so utime(14) is index 11.
  std::string stat = read_proc_file("/proc/self/stat");
  if (size_t paren = stat.rfind(')'); paren != std::string::npos) {
    std::string_view fields = std::string_view(stat).substr(paren + 1);
    ps.cpu_seconds = static_cast<double>(field(fields, 11) + field(fields, 12)) / ticks_per_second;
    ps.start_time_seconds =
        static_cast<double>(boot_time_seconds()) + static_cast<double>(field(fields, 19)) / ticks_per_second;
  }

  ps.resident_memory_bytes =
      field(read_proc_file("/proc/self/statm"), 1) * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  ps.open_fds = count_open_fds();
  return ps;
}

}  // namespace sidemux::metrics
