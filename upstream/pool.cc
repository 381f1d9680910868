#include "upstream/pool.h"

#include <algorithm>

#include "proxy/core/loop_context.h"
#include "upstream/member.h"

namespace sidemux::upstream {

namespace {

std::unique_ptr<UpstreamSession> take(std::vector<std::unique_ptr<UpstreamSession>>& list, UpstreamSession& s) {
  auto it = std::find_if(list.begin(), list.end(), [&](const auto& p) { return p.get() == &s; });
  if (it == list.end()) return nullptr;
  auto owned = std::move(*it);
  list.erase(it);
  return owned;
}
}  // namespace

UpstreamSession* Pool::open() {
  connecting_.push_back(std::make_unique<UpstreamSession>(context_, *this, member_));
  UpstreamSession* s = connecting_.back().get();
  member_.connections_gauge().inc();
  s->connect();
  // connect() may have failed at once and closed the session.
  return s->state() == UpstreamSession::State::closed ? nullptr : s;
}

UpstreamSession* Pool::session_for_new_stream() {
  if (shut_down_) return nullptr;
  for (auto& s : ready_)
    if (s->has_capacity()) return s.get();
  for (auto& s : connecting_)
    if (s->has_capacity()) return s.get();
  return open();
}

Pool::List& Pool::list_for(UpstreamSession::State state) {
  switch (state) {
    case UpstreamSession::State::connecting: return connecting_;
    case UpstreamSession::State::ready: return ready_;
    case UpstreamSession::State::draining: return draining_;
    case UpstreamSession::State::closed: break;
  }
  return closed_;
}

void Pool::on_state_change(UpstreamSession& s, UpstreamSession::State old) {
  auto owned = take(list_for(old), s);
  if (!owned) return;
  list_for(s.state()).push_back(std::move(owned));
  if (s.state() == UpstreamSession::State::ready) member_.record_success();
  if (s.state() == UpstreamSession::State::closed) member_.connections_gauge().dec();
}

void Pool::on_connect_failed(UpstreamSession&, const std::string& reason) {
  last_failure_ = reason;
  member_.record_failure(reason);
}

void Pool::on_closed(UpstreamSession& s) {
  // The session's last handle closed: nothing of it is on the stack.
  take(closed_, s);
}

void Pool::drain() {
  shut_down_ = true;  // no new streams or connections
  // drain() moves sessions to draining_ (or closes them), so walk copies.
  for (List* list : {&connecting_, &ready_}) {
    std::vector<UpstreamSession*> sessions;
    for (auto& s : *list) sessions.push_back(s.get());
    for (UpstreamSession* s : sessions) s->drain();
  }
}

void Pool::close_silent(uint64_t since, std::string_view why) {
  // close() moves each session to closed_, so walk copies of the lists.
  std::vector<UpstreamSession*> silent;
  for (List* list : {&connecting_, &ready_, &draining_})
    for (auto& s : *list)
      if (s->silent_since(since)) silent.push_back(s.get());
  for (UpstreamSession* s : silent) s->close(why, true);
}

void Pool::shutdown() {
  shut_down_ = true;
  // close() moves each session to closed_, so walk copies of the lists.
  for (List* list : {&connecting_, &ready_, &draining_}) {
    std::vector<UpstreamSession*> sessions;
    for (auto& s : *list) sessions.push_back(s.get());
    for (UpstreamSession* s : sessions) s->close("sidemux is shutting down", false);
  }
}

}  // namespace sidemux::upstream
