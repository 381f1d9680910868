#include "proxy/worker.h"

#include <unistd.h>

#include <algorithm>
#include <utility>

#include "proxy/client_connection.h"
#include "proxy/core/metric_names.h"
#include "proxy/core/small_blocks.h"
#include "proxy/listener.h"

namespace sidemux {

namespace {
// A worker gives memory back on a 1 s tick. Every 10 s, the small blocks
// its lists held unused (core::decay_small_blocks): a peak's blocks go
// within two periods, and a period is long against the bursts of steady
// traffic, which keeps its blocks. Each tick, the empty buffers of
// connections quiet for 10 s: long against the pauses of a client in use,
// whose buffers would only be faulted in again. A release is about 8 µs
// (two madvise calls; 8.5 ms for 1,000 plaintext connections in one go,
// measured while a build ran on the other core), so a tick
// takes at most 256 of them, and looks at no more than 4,096 connections,
// going on from where the last tick stopped: a crowd that went quiet
// together is released over a few seconds, and a tick stays near 2 ms
// however many connections a worker holds.
constexpr uint64_t kMemoryTickMs = 1'000;
constexpr uint64_t kBlocksDecayTicks = 10;
constexpr uint64_t kQuietMs = 10'000;
constexpr size_t kReleasesPerTick = 256;
constexpr size_t kChecksPerTick = 4096;

Worker* self(uv_handle_t* h) { return static_cast<Worker*>(h->data); }

[[noreturn]] void fatal(const core::Logger& log, const std::string& error) {
  log.error("fatal", {{"error", error}});
  log.flush();
  std::abort();
}

// For the member initialisers that need the loop before the body runs.
uv_loop_t* initialised(uv_loop_t* loop) {
  uv_loop_init(loop);
  return loop;
}
}  // namespace

Worker::Worker(unsigned index, ProcessState& process, metrics::Registry& registry,
               std::shared_ptr<const conf::Config> config, std::shared_ptr<const core::TlsContexts> tls,
               std::vector<int> fds)
    : process_(process),
      fds_(std::move(fds)),
      streams_active_(registry.gauge(metrics::kStreamsActive)),
      downstream_in_(registry.counter(metrics::kBytes, {"downstream", "in"})),
      downstream_out_(registry.counter(metrics::kBytes, {"downstream", "out"})),
      drain_(initialised(&loop_), [this](ConnectionDrain::Step step) { drain_step(step, nullptr); }) {
  context_ = std::make_unique<core::LoopContext>(&loop_, index, process.log, registry, std::move(config),
                                                 std::move(tls));
  cluster_ = std::make_unique<upstream::Cluster>(*context_, context_->config()->cluster, process.health, false);
  uv_async_init(&loop_, &async_, [](uv_async_t* a) { self(reinterpret_cast<uv_handle_t*>(a))->on_async(); });
  uv_timer_init(&loop_, &memory_timer_);
  async_.data = memory_timer_.data = this;
}

Worker::~Worker() {
  // The loop has ended (join) and every handle is closed.
  cluster_.reset();
  context_.reset();
  uv_loop_close(&loop_);
  for (int fd : fds_) ::close(fd);
}

void Worker::start() {
  // uv_tcp_open takes ownership of the fds; uv_close will close them.
  apply_listeners(std::exchange(fds_, {}));
  context_->scheduler().start();
  uv_timer_start(
      &memory_timer_, [](uv_timer_t* t) { self(reinterpret_cast<uv_handle_t*>(t))->give_back_memory(); },
      kMemoryTickMs, kMemoryTickMs);
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

void Worker::give_back_memory() {
  uint64_t now = uv_now(&loop_);
  if (now > kQuietMs) {
    // Removals reorder the list (swap with the last): the cursor may skip
    // or revisit a connection, which the next round makes up for.
    size_t releases = kReleasesPerTick;
    for (size_t n = std::min(connections_.size(), kChecksPerTick); n > 0 && releases > 0; --n) {
      if (sweep_cursor_ >= connections_.size()) sweep_cursor_ = 0;
      if (connections_[sweep_cursor_++]->release_idle_memory(now - kQuietMs)) --releases;
    }
  }
  if (++memory_ticks_ % kBlocksDecayTicks != 0) return;
  // The pages the freed blocks pinned go back to the system at the next
  // malloc_trim, which the server runs when enough was freed (server.cc).
  if (size_t freed = core::decay_small_blocks()) process_.blocks_freed.fetch_add(freed, std::memory_order_relaxed);
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

void Worker::set_config(std::shared_ptr<const conf::Config> config, std::shared_ptr<const core::TlsContexts> tls,
                        std::vector<int> fds) {
  post([config = std::move(config), tls = std::move(tls), fds = std::move(fds)](Worker& w) mutable {
    w.context_->set_config(config, tls);
    w.cluster_->apply(config->cluster);
    w.apply_listeners(std::move(fds));
  });
}

void Worker::apply_listeners(std::vector<int> fds) {
  const auto& wanted = config()->listeners;
  std::vector<std::unique_ptr<Listener>> next;
  for (size_t i = 0; i < wanted.size(); ++i) {
    if (fds[i] < 0) {
      auto kept = std::find_if(listeners_.begin(), listeners_.end(),
                               [&](const auto& l) { return same_socket(l->conf(), wanted[i]); });
      // The server decided "kept" against the generation these listeners
      // came from; a miss is a bug, not a runtime condition.
      if (kept == listeners_.end()) fatal(log(), "no running listener to keep: " + wanted[i].name);
      (*kept)->update(wanted[i], i, tls());
      next.push_back(std::move(*kept));
      listeners_.erase(kept);
      continue;
    }
    auto l = std::make_unique<Listener>(*this, wanted[i], i, tls(), fds[i]);
    std::string error;
    // The server bound and listened on this socket already: this cannot
    // fail short of fd exhaustion, which is worth a loud abort.
    if (!l->start(error)) fatal(log(), "listener failed: " + error);
    log().debug("listener accepting", {{"listener", wanted[i].name}, {"worker", index()}});
    next.push_back(std::move(l));
  }
  for (auto& removed : listeners_) {
    log().debug("listener retired", {{"listener", removed->name()}, {"worker", index()}});
    removed->retire();
    retired_.push_back(std::move(removed));
  }
  listeners_ = std::move(next);
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

void Worker::release(Listener* retired) {
  std::erase_if(retired_, [&](const auto& l) { return l.get() == retired; });
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
  drain_.start(config()->limits.drain_timeout);
  finish_drain_if_empty();
}

void Worker::drain_step(ConnectionDrain::Step step, const Listener* only) {
  using Step = ConnectionDrain::Step;
  if (step == Step::deadline) {
    size_t open = std::count_if(connections_.begin(), connections_.end(),
                                [&](const auto& c) { return !only || &c->listener() == only; });
    log().warn("drain timeout: closing connections with open streams",
               {{"connections", open}, {"listener", only ? only->name() : std::string("*")}});
  }
  // shutdown() and close() free connections only in later close callbacks,
  // so iterating the list here is safe.
  for (auto& c : connections_) {
    if (only && &c->listener() != only) continue;
    if (step == Step::deadline) {
      c->close();
    } else {
      c->shutdown(step == Step::final_notice);
    }
  }
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
  uv_close(reinterpret_cast<uv_handle_t*>(&memory_timer_), nullptr);
  context_->scheduler().close();
  drain_.close(nullptr);
  // Handles that remain (listeners already closing) end with the loop;
  // the callback that says so runs last on this thread.
  if (drain_done_) {
    auto done = std::move(drain_done_);
    done();
  }
}

}  // namespace sidemux
