#include "proxy/worker.h"

#include <unistd.h>

#include <algorithm>

#include "proxy/client_connection.h"
#include "proxy/core/metric_names.h"
#include "proxy/listener.h"

namespace sidemux {

namespace {
Worker* self(uv_handle_t* h) { return static_cast<Worker*>(h->data); }

// The first GOAWAY is a notice; the final one follows after this long (or
// at the end of drain_timeout, if that is shorter), as h2o does.
constexpr uint64_t kFinalGoawayDelayMs = 1000;
}  // namespace

Worker::Worker(unsigned index, ProcessState& process, metrics::Registry& registry,
               std::shared_ptr<const conf::Config> config, std::shared_ptr<const core::TlsContexts> tls,
               std::vector<int> fds)
    : process_(process),
      fds_(std::move(fds)),
      streams_active_(registry.gauge(metrics::kStreamsActive)),
      downstream_in_(registry.counter(metrics::kBytes, {"downstream", "in"})),
      downstream_out_(registry.counter(metrics::kBytes, {"downstream", "out"})) {
  uv_loop_init(&loop_);
  context_ = std::make_unique<core::LoopContext>(&loop_, index, process.log, registry, std::move(config),
                                                 std::move(tls));
  cluster_ = std::make_unique<upstream::Cluster>(*context_, context_->config()->cluster, process.health, false);
  uv_async_init(&loop_, &async_, [](uv_async_t* a) { self(reinterpret_cast<uv_handle_t*>(a))->on_async(); });
  uv_timer_init(&loop_, &drain_timer_);
  async_.data = drain_timer_.data = this;
}

Worker::~Worker() {
  // The loop has ended (join) and every handle is closed.
  cluster_.reset();
  context_.reset();
  uv_loop_close(&loop_);
  for (int fd : fds_) ::close(fd);
}

void Worker::start() {
  for (size_t i = 0; i < fds_.size(); ++i) {
    auto l = std::make_unique<Listener>(*this, config()->listeners[i], i, fds_[i]);
    std::string error;
    // The server bound and listened on these sockets already: this cannot
    // fail short of fd exhaustion, which is worth a loud abort.
    if (!l->start(error)) {
      log().error("listener failed", {{"error", error}});
      log().flush();
      std::abort();
    }
    listeners_.push_back(std::move(l));
  }
  // uv_tcp_open took ownership of the fds; uv_close will close them.
  fds_.clear();
  context_->scheduler().start();
  started_ = true;
  uv_thread_create(&thread_, [](void* arg) { static_cast<Worker*>(arg)->run(); }, this);
}

void Worker::join() {
  if (started_) uv_thread_join(&thread_);
  started_ = false;
}

void Worker::run() {
  cluster_->start();
  uv_run(&loop_, UV_RUN_DEFAULT);
}

void Worker::post(std::function<void(Worker&)> fn) {
  // uv_async_send under the lock: close_handles() closes async_ only after
  // taking it, so a send never races the close.
  std::lock_guard lock(mailbox_mu_);
  if (mailbox_closed_) return;
  mailbox_.push_back(std::move(fn));
  uv_async_send(&async_);
}

void Worker::on_async() {
  std::vector<std::function<void(Worker&)>> jobs;
  {
    std::lock_guard lock(mailbox_mu_);
    jobs.swap(mailbox_);
  }
  for (auto& job : jobs) job(*this);
}

void Worker::set_config(std::shared_ptr<const conf::Config> config, std::shared_ptr<const core::TlsContexts> tls) {
  post([config = std::move(config), tls = std::move(tls)](Worker& w) {
    w.context_->set_config(config, tls);
    w.cluster_->apply(config->cluster);
  });
}

void Worker::drain(std::function<void()> done) {
  post([done = std::move(done)](Worker& w) {
    w.drain_done_ = done;
    w.begin_drain();
  });
}

LocalContext Worker::local_context() const {
  return LocalContext{*config(), *cluster_, process_.registries, context_->metrics(), process_.started,
                      !draining_, process_.workers};
}

void Worker::adopt(std::unique_ptr<ClientConnection> conn) {
  conn->slot = connections_.size();
  connections_.push_back(std::move(conn));
}

void Worker::release(ClientConnection* conn) {
  // Swap-with-last keeps removal O(1) with thousands of connections.
  size_t slot = conn->slot;
  std::swap(connections_[slot], connections_.back());
  connections_[slot]->slot = slot;
  connections_.pop_back();
  finish_drain_if_empty();
}

void Worker::begin_drain() {
  if (draining_) return;
  draining_ = true;
  for (auto& l : listeners_) l->close();
  // shutdown() may close connections, which only happens in later close
  // callbacks, so iterating the list here is safe.
  for (auto& c : connections_) c->shutdown(false);
  uint64_t drain_ms = static_cast<uint64_t>(config()->limits.drain_timeout.count());
  uv_timer_start(&drain_timer_, on_drain_timer, std::min(kFinalGoawayDelayMs, drain_ms), 0);
  finish_drain_if_empty();
}

void Worker::on_drain_timer(uv_timer_t* t) {
  Worker* w = self(reinterpret_cast<uv_handle_t*>(t));
  if (!w->final_goaway_sent_) {
    w->final_goaway_sent_ = true;
    for (auto& c : w->connections_) c->shutdown(true);
    uint64_t drain_ms = static_cast<uint64_t>(w->config()->limits.drain_timeout.count());
    uv_timer_start(t, on_drain_timer, drain_ms > kFinalGoawayDelayMs ? drain_ms - kFinalGoawayDelayMs : 0, 0);
    return;
  }
  w->log().warn("drain timeout: closing connections with open streams", {{"connections", w->connections_.size()}});
  for (auto& c : w->connections_) c->close();
}

void Worker::finish_drain_if_empty() {
  if (!draining_ || closing_ || !connections_.empty()) return;
  closing_ = true;
  close_handles();
}

void Worker::close_handles() {
  // Member connections go last: client streams on them are gone by now.
  cluster_->shutdown();
  {
    std::lock_guard lock(mailbox_mu_);
    mailbox_closed_ = true;
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
  context_->scheduler().close();
  uv_close(reinterpret_cast<uv_handle_t*>(&drain_timer_), nullptr);
  // Handles that remain (listeners already closing) end with the loop;
  // the callback that says so runs last on this thread.
  if (drain_done_) {
    auto done = std::move(drain_done_);
    done();
  }
}

}  // namespace sidemux
