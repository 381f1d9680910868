#include "proxy/core/metrics.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace sidemux::metrics {

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

namespace {

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
  Metric metric;
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

void RegistryAccess::operator()(const Registry& r, const Visit& fn) const {
  std::lock_guard lock(r.mu_);
  for (const auto& [key, series] : r.series_) fn(key.first, key.second, series->metric);
}

}  // namespace sidemux::metrics
