// The HTTP/2 connections of one worker to one member.
//
// A documented state machine with one list per state:
//   connecting_  TCP connect (and DNS) under way; may already carry streams,
//                which wait in nghttp2 until the connection is up
//   ready_       up; takes new streams while it has capacity
//   draining_    no new streams (member GOAWAY, retirement); closes after its
//                last stream
// A closed session leaves every list and is freed from its last close
// callback. The pool keeps one connection open ("warm") so the member's
// state is known before the first stream, and reconnects with backoff when
// connecting fails.
#pragma once

#include <uv.h>

#include <memory>
#include <string>
#include <vector>

#include "upstream/upstream_session.h"

namespace sidemux {
class Worker;
}

namespace sidemux::upstream {

class Member;

class Pool {
 public:
  Pool(Worker& worker, Member& member);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  void start();  // open the warm connection
  // A session with room for one more stream: a ready one, else a connecting
  // one, else a new connection. nullptr once the pool is shut down.
  UpstreamSession* session_for_new_stream();
  // Close every connection (worker shutdown); handles close on later turns.
  void shutdown();

  // From sessions.
  void on_state_change(UpstreamSession& s, UpstreamSession::State old);
  void on_connect_failed(UpstreamSession& s, const std::string& reason);
  void on_closed(UpstreamSession& s);

 private:
  using List = std::vector<std::unique_ptr<UpstreamSession>>;
  List& list_for(UpstreamSession::State state);
  UpstreamSession* open();
  void schedule_reconnect();

  Worker& worker_;
  Member& member_;
  List connecting_;
  List ready_;
  List draining_;
  List closed_;  // closing handles; freed in on_closed
  uv_timer_t reconnect_timer_;
  uint64_t backoff_ms_ = 0;
  bool shut_down_ = false;
};

}  // namespace sidemux::upstream
