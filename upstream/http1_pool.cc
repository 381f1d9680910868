#include "upstream/http1_pool.h"

#include <algorithm>

#include "upstream/member.h"

namespace sidemux::upstream {

Http1Connection* Http1Pool::acquire() {
  if (shut_down_) return nullptr;
  if (!idle_.empty()) {
    Http1Connection* c = idle_.back();
    return c;  // start() takes it off the idle list
  }
  connections_.push_back(std::make_unique<Http1Connection>(context_, *this, member_));
  Http1Connection* c = connections_.back().get();
  member_.connections_gauge().inc();
  c->connect();
  return c->state() == Http1Connection::State::closed ? nullptr : c;
}

void Http1Pool::on_idle(Http1Connection& c) {
  if (shut_down_) {
    c.close("pool drained", false);
    return;
  }
  idle_.push_back(&c);
}

void Http1Pool::on_busy(Http1Connection& c) { std::erase(idle_, &c); }

void Http1Pool::on_closed(Http1Connection& c) {
  auto it = std::find_if(connections_.begin(), connections_.end(), [&](const auto& p) { return p.get() == &c; });
  if (it != connections_.end()) connections_.erase(it);
}

void Http1Pool::drain() {
  shut_down_ = true;
  std::vector<Http1Connection*> idle = idle_;
  for (Http1Connection* c : idle) c->close("pool drained", false);
}

void Http1Pool::shutdown() {
  shut_down_ = true;
  // close() edits idle_, never connections_ (freed from close callbacks).
  std::vector<Http1Connection*> all;
  for (auto& c : connections_) all.push_back(c.get());
  for (Http1Connection* c : all) c->close("sidemux is shutting down", false, Http1Exchange::Close::ended);
}

}  // namespace sidemux::upstream
