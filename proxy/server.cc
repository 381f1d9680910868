#include "proxy/server.h"

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "proxy/core/metric_names.h"
#include "proxy/listener.h"

namespace sidemux {

namespace {
Server* self(uv_handle_t* h) { return static_cast<Server*>(h->data); }

// malloc_trim when a peak left: the open client connections fell to half
// the peak seen since the last trim, a peak of at least kTrimCrowd, or the
// workers' small-block lists gave back kTrimFreed bytes since then (a
// flood's streams, say, on few connections). Clients that open and close a
// connection per request make neither, so they cannot make the main
// thread walk every arena each second; and one trim per kTrimGapMs at most.
// Checked each kTrimCheckMs (two atomic loads).
constexpr uint32_t kTrimCrowd = 256;
constexpr uint64_t kTrimFreed = 1024 * 1024;
constexpr uint64_t kTrimGapMs = 30'000;
constexpr uint64_t kTrimCheckMs = 1000;

// The sockets of a generation's listeners: one per worker and listener
// (SO_REUSEPORT), or -1 where a running listener carries over
// (same_socket). A port of 0 is resolved by the first bind, and the other
// workers bind that port. Sockets no worker took are closed at the end.
class ListenerSockets {
 public:
  explicit ListenerSockets(unsigned workers) : fds_(workers) {}
  ~ListenerSockets() {
    for (auto& per_worker : fds_)
      for (int fd : per_worker)
        if (fd >= 0) ::close(fd);
  }
  ListenerSockets(const ListenerSockets&) = delete;
  ListenerSockets& operator=(const ListenerSockets&) = delete;

  // False, with `error` naming the listener, if one cannot be bound.
  bool bind(const std::vector<conf::Listener>& wanted, const std::vector<conf::Listener>& running,
            std::string& error) {
    for (const auto& l : wanted) {
      bool kept = std::any_of(running.begin(), running.end(), [&](const auto& r) { return same_socket(r, l); });
      conf::HostPort address = l.address;
      for (auto& per_worker : fds_) {
        int fd = kept ? -1 : bind_listener(address, error);
        if (!kept && fd < 0) {
          error = "listener " + l.name + ": " + error;
          return false;
        }
        per_worker.push_back(fd);
        if (!kept && address.port == 0) address.port = local_port(fd);
      }
      if (!kept) bound_.push_back({l.name, address.to_string()});
    }
    return true;
  }

  std::vector<int> take(unsigned worker) { return std::exchange(fds_[worker], {}); }

  void log_bound(const core::Logger& log) const {
    for (const auto& [name, address] : bound_) log.info("listening", {{"listener", name}, {"address", address}});
  }

 private:
  std::vector<std::vector<int>> fds_;                       // [worker][listener]
  std::vector<std::pair<std::string, std::string>> bound_;  // name, address with the port bound
};

// What reload.watch watches: the config file and every certificate, key and
// CA file it names, as written (relative paths resolve as the loaders do).
std::vector<std::string> watched_paths(const conf::Config& cfg, const std::string& config_path) {
  std::vector<std::string> paths{config_path};
  for (const auto& l : cfg.listeners)
    if (l.tls) paths.insert(paths.end(), {l.tls->cert_file, l.tls->key_file, l.tls->client_ca_file});
  if (const auto& t = cfg.cluster.tls) paths.insert(paths.end(), {t->ca_file, t->cert_file, t->key_file});
  std::erase(paths, std::string());
  std::sort(paths.begin() + 1, paths.end());
  paths.erase(std::unique(paths.begin() + 1, paths.end()), paths.end());
  return paths;
}
}  // namespace

Server::Server(std::string config_path, core::Logger& log) : config_path_(std::move(config_path)), log_(log) {
  uv_loop_init(&loop_);
}

Server::~Server() {
  workers_.clear();
  checker_.reset();
  checker_context_.reset();
  uv_loop_close(&loop_);
}

int Server::run() {
  auto loaded = conf::load_file(config_path_);
  if (!loaded) {
    log_.error("invalid config", {{"error", loaded.error}});
    return 2;
  }
  config_ = loaded.config;
  log_.configure(config_->log);
  std::string error;
  if (!start(error)) {
    log_.error("cannot start", {{"error", error}});
    close_handles();
    uv_run(&loop_, UV_RUN_DEFAULT);  // runs the close callbacks
    return 1;
  }
  uv_run(&loop_, UV_RUN_DEFAULT);
  for (auto& w : workers_) w->join();
  // No loop runs any more: wait for the log's backlog (as long as stderr
  // takes bytes at all), or under backpressure the last line of all would
  // find the buffer full and be dropped.
  log_.flush();
  log_.info("stopped");
  return 0;
}

bool Server::start(std::string& error) {
  // Signals are caught before anything says "listening": a supervisor may
  // send SIGHUP or SIGTERM as soon as it sees that line. The callbacks run
  // only inside uv_run(), once everything below is in place.
  uv_signal_init(&loop_, &sighup_);
  uv_signal_init(&loop_, &sigterm_);
  uv_signal_init(&loop_, &sigint_);
  uv_async_init(&loop_, &worker_drained_, [](uv_async_t* a) {
    self(reinterpret_cast<uv_handle_t*>(a))->on_worker_drained();
  });
  uv_async_init(&loop_, &status_round_, [](uv_async_t* a) {
    Server* s = self(reinterpret_cast<uv_handle_t*>(a));
    if (s->checker_) s->checker_->check_now();
  });
  uv_timer_init(&loop_, &trim_timer_);
  sighup_.data = sigterm_.data = sigint_.data = worker_drained_.data = status_round_.data = trim_timer_.data = this;
  uv_timer_start(
      &trim_timer_, [](uv_timer_t* t) { self(reinterpret_cast<uv_handle_t*>(t))->maybe_trim(); }, kTrimCheckMs,
      kTrimCheckMs);
  uv_signal_start(&sighup_, [](uv_signal_t* s, int) { self(reinterpret_cast<uv_handle_t*>(s))->reload(); }, SIGHUP);
  auto on_stop = [](uv_signal_t* s, int) { self(reinterpret_cast<uv_handle_t*>(s))->drain(); };
  uv_signal_start(&sigterm_, on_stop, SIGTERM);
  uv_signal_start(&sigint_, on_stop, SIGINT);

  tls_ = core::TlsContexts::build(*config_, error);
  if (!tls_ || !rewatch(error)) return false;
  unsigned n = config_->workers;
  ListenerSockets sockets(n);
  if (!sockets.bind(config_->listeners, {}, error)) return false;
  sockets.log_bound(log_);

  // Brace-initialised: make_unique would need C++20 parenthesised aggregate
  // init, which clang 14 (the fuzz build) lacks.
  process_.reset(new ProcessState{log_});
  process_->workers = n;
  process_->registries.push_back(&registry_);
  process_->registries.push_back(&log_.metrics());
  for (unsigned i = 0; i < n; ++i) {
    worker_registries_.push_back(std::make_unique<metrics::Registry>());
    process_->registries.push_back(worker_registries_.back().get());
  }
  registry_.gauge(metrics::kConfigGeneration).set(static_cast<int64_t>(config_->generation));
  registry_.counter(metrics::kConfigReloads, {"success"});
  registry_.counter(metrics::kConfigReloads, {"failure"});
  for (unsigned i = 0; i < n; ++i)
    workers_.push_back(
        std::make_unique<Worker>(i, *process_, *worker_registries_[i], config_, tls_, sockets.take(i)));

  // The checker reaches the workers through their mailboxes, and they reach
  // it through status_round_; both outlive every call (close_handles).
  process_->health.set_broadcast([this](upstream::HealthBoard::ClusterJob job) {
    for (auto& w : workers_) w->post([job](Worker& worker) { job(worker.cluster()); });
  });
  process_->health.set_round_request([this] { uv_async_send(&status_round_); });
  checker_context_ = std::make_unique<core::LoopContext>(&loop_, n, log_, registry_, config_, tls_);
  checker_context_->scheduler().start();
  checker_ = std::make_unique<upstream::Cluster>(*checker_context_, config_->cluster, process_->health, true);
  checker_->start();

  for (auto& w : workers_) w->start();
  log_.info("started", {{"workers", n}, {"config", config_path_}, {"generation", config_->generation}});
  return true;
}

void Server::reload() {
  if (draining_) return;
  auto loaded = conf::load_file(config_path_, config_->generation + 1);
  if (!loaded) {
    registry_.counter(metrics::kConfigReloads, {"failure"}).inc();
    log_.error("config reload failed; keeping the running config",
               {{"error", loaded.error}, {"generation", config_->generation}});
    return;
  }
  std::shared_ptr<const conf::Config> next = loaded.config;
  // Everything that can fail comes first, so that a failure applies nothing:
  // certificates and keys are read again, for new handshakes, and new
  // listeners are bound.
  std::string error;
  auto tls = core::TlsContexts::build(*next, error);
  ListenerSockets sockets(static_cast<unsigned>(workers_.size()));
  if (!tls || !sockets.bind(next->listeners, config_->listeners, error)) {
    registry_.counter(metrics::kConfigReloads, {"failure"}).inc();
    log_.error("config reload failed; keeping the running config",
               {{"error", error}, {"generation", config_->generation}});
    return;
  }
  if (next->workers != workers_.size())
    log_.warn("a change of workers takes effect at the next restart", {{"workers", workers_.size()}});
  for (const auto& l : config_->listeners) {
    bool kept = std::any_of(next->listeners.begin(), next->listeners.end(),
                            [&](const auto& n) { return same_socket(l, n); });
    if (!kept) log_.info("listener removed; draining its connections", {{"listener", l.name}});
  }
  sockets.log_bound(log_);
  config_ = std::move(next);
  tls_ = std::move(tls);
  log_.configure(config_->log);
  checker_context_->set_config(config_, tls_);
  checker_->apply(config_->cluster);
  for (unsigned i = 0; i < workers_.size(); ++i) workers_[i]->set_config(config_, tls_, sockets.take(i));
  registry_.counter(metrics::kConfigReloads, {"success"}).inc();
  registry_.gauge(metrics::kConfigGeneration).set(static_cast<int64_t>(config_->generation));
  log_.info("config reloaded", {{"generation", config_->generation}});
  // The new generation may name other files. A watch that cannot follow
  // them keeps the old one; the reload itself stands.
  if (!rewatch(error)) log_.error("reload.watch: keeping the previous watch", {{"error", error}});
}

bool Server::rewatch(std::string& error) {
  if (!config_->reload.watch) {
    watch_.reset();
    return true;
  }
  std::vector<std::string> paths = watched_paths(*config_, config_path_);
  if (watch_ && watch_->paths() == paths) return true;  // its baseline is current
  // This may run inside the old watch's callback, which may drop it.
  auto next = core::FileWatch::start(
      &loop_, std::move(paths),
      [this] {
        log_.info("reload.watch: a watched file changed; reloading");
        reload();
      },
      error);
  if (!next) return false;
  watch_ = std::move(next);
  return true;
}

void Server::drain() {
  if (draining_) return;
  draining_ = true;
  log_.info("draining", {{"drain_timeout_ms", static_cast<int64_t>(config_->limits.drain_timeout.count())}});
  uv_signal_stop(&sighup_);
  watch_.reset();
  for (auto& w : workers_) w->drain([this] {
    drained_.fetch_add(1);
    uv_async_send(&worker_drained_);
  });
}

void Server::on_worker_drained() {
  if (drained_.load() < workers_.size()) return;
  close_handles();
}

void Server::close_handles() {
  watch_.reset();
  if (checker_) {
    checker_->shutdown();
    checker_context_->scheduler().close();
  }
  for (uv_handle_t* h : {reinterpret_cast<uv_handle_t*>(&sighup_), reinterpret_cast<uv_handle_t*>(&sigterm_),
                         reinterpret_cast<uv_handle_t*>(&sigint_), reinterpret_cast<uv_handle_t*>(&worker_drained_),
                         reinterpret_cast<uv_handle_t*>(&status_round_), reinterpret_cast<uv_handle_t*>(&trim_timer_)})
    uv_close(h, nullptr);
}

void Server::maybe_trim() {
  if (!process_) return;
  uint32_t open = process_->connections.load(std::memory_order_relaxed);
  peak_since_trim_ = std::max(peak_since_trim_, open);
  uint64_t now = uv_now(&loop_);
  uint64_t freed = process_->blocks_freed.load(std::memory_order_relaxed);
  bool crowd_left = peak_since_trim_ >= kTrimCrowd && open <= peak_since_trim_ / 2;
  bool blocks_left = freed - freed_at_trim_ >= kTrimFreed;
  if (!(crowd_left || blocks_left) || (trimmed_at_ != 0 && now - trimmed_at_ < kTrimGapMs)) return;
  peak_since_trim_ = open;
  freed_at_trim_ = freed;
  trimmed_at_ = now;
  // Walks every arena's free chunks and returns whole free pages (a few
  // milliseconds at most, on this thread); workers allocating meanwhile
  // wait for their arena's lock only while it is being walked.
  malloc_trim(0);
}

}  // namespace sidemux
