#include "proxy/server.h"

#include <unistd.h>

#include <algorithm>

#include "proxy/core/metric_names.h"
#include "proxy/listener.h"

namespace sidemux {

namespace {
Server* self(uv_handle_t* h) { return static_cast<Server*>(h->data); }

// Listener settings are bound at start; a reload that changes them is
// applied except for the listeners, which need a restart for now.
bool same_listeners(const conf::Config& a, const conf::Config& b) {
  if (a.listeners.size() != b.listeners.size()) return false;
  for (size_t i = 0; i < a.listeners.size(); ++i) {
    const auto& x = a.listeners[i];
    const auto& y = b.listeners[i];
    if (x.name != y.name || x.address.to_string() != y.address.to_string() || x.tls.has_value() != y.tls.has_value())
      return false;
  }
  return true;
}
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
  sighup_.data = sigterm_.data = sigint_.data = worker_drained_.data = this;
  uv_signal_start(&sighup_, [](uv_signal_t* s, int) { self(reinterpret_cast<uv_handle_t*>(s))->reload(); }, SIGHUP);
  auto on_stop = [](uv_signal_t* s, int) { self(reinterpret_cast<uv_handle_t*>(s))->drain(); };
  uv_signal_start(&sigterm_, on_stop, SIGTERM);
  uv_signal_start(&sigint_, on_stop, SIGINT);

  tls_ = core::TlsContexts::build(*config_, error);
  if (!tls_ || !rewatch(error)) return false;
  unsigned n = config_->workers;
  // Every worker gets its own socket per listener (SO_REUSEPORT). A port of 0
  // is resolved by the first bind, and the other workers bind that port.
  std::vector<std::vector<int>> fds(n);
  auto close_all = [&] {
    for (auto& per_worker : fds)
      for (int fd : per_worker) ::close(fd);
  };
  for (const auto& l : config_->listeners) {
    conf::HostPort address = l.address;
    for (unsigned i = 0; i < n; ++i) {
      int fd = bind_listener(address, error);
      if (fd < 0) {
        error = "listener " + l.name + ": " + error;
        close_all();
        return false;
      }
      fds[i].push_back(fd);
      if (address.port == 0) address.port = local_port(fd);
    }
    log_.info("listening", {{"listener", l.name}, {"address", address.to_string()}});
  }

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
        std::make_unique<Worker>(i, *process_, *worker_registries_[i], config_, tls_, std::move(fds[i])));

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
  if (!same_listeners(*config_, *next)) {
    // Workers index their listeners (and TLS contexts) by position; until
    // listeners can change on reload, the running set carries over.
    log_.warn("listener changes take effect at the next restart; keeping the running listeners");
    auto copy = std::make_shared<conf::Config>(*next);
    copy->listeners = config_->listeners;
    next = std::move(copy);
  }
  // Certificates and keys are read again, for new handshakes; a file that
  // does not load fails the reload as a bad config does.
  std::string error;
  auto tls = core::TlsContexts::build(*next, error);
  if (!tls) {
    registry_.counter(metrics::kConfigReloads, {"failure"}).inc();
    log_.error("config reload failed; keeping the running config",
               {{"error", error}, {"generation", config_->generation}});
    return;
  }
  config_ = std::move(next);
  tls_ = std::move(tls);
  log_.configure(config_->log);
  for (auto& w : workers_) w->set_config(config_, tls_);
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
  for (uv_handle_t* h : {reinterpret_cast<uv_handle_t*>(&sighup_), reinterpret_cast<uv_handle_t*>(&sigterm_),
                         reinterpret_cast<uv_handle_t*>(&sigint_), reinterpret_cast<uv_handle_t*>(&worker_drained_)})
    uv_close(h, nullptr);
}

}  // namespace sidemux
