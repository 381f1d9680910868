// The HTTP/2 connections of one worker to one member.
//
// A documented state machine with one list per state:
//   connecting_  TCP connect (and DNS) under way; may already carry streams,
//                which wait in nghttp2 until the connection is up
//   ready_       up; takes new streams while it has capacity
//   draining_    no new streams (member GOAWAY, retirement); closes after its
//                last stream
// A closed session leaves every list and is freed from its last close
// callback. Connections open on demand; in the checker's pool the member's
// health checks open one every interval while there is none, so a member's
// state is known before the first stream and a dead member is not
// reconnected more often than it is checked.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "upstream/connection_pool.h"
#include "upstream/upstream_session.h"

namespace sidemux::upstream {

class Pool final : public ConnectionPool {
 public:
  Pool(core::LoopContext& context, Member& member) : ConnectionPool(context, member) {}

  // A session with room for one more stream: a ready one, else a connecting
  // one, else a new connection. nullptr once the pool is shut down.
  UpstreamSession* session_for_new_stream();
  void shutdown() override;
  // Each connection closes after its last stream.
  void drain() override;
  // Close every connection opened before uv_now() time `since` that read
  // nothing since: the member stopped answering, and streams on them would
  // hang.
  void close_silent(uint64_t since, std::string_view why);
  bool empty() const override { return connecting_.empty() && ready_.empty() && draining_.empty() && closed_.empty(); }
  const std::string& last_failure() const { return last_failure_; }

  // From sessions.
  void on_state_change(UpstreamSession& s, UpstreamSession::State old);
  void on_connect_failed(UpstreamSession& s, const std::string& reason);
  void on_closed(UpstreamSession& s);

 private:
  using List = std::vector<std::unique_ptr<UpstreamSession>>;
  List& list_for(UpstreamSession::State state);
  UpstreamSession* open();

  List connecting_;
  List ready_;
  List draining_;
  List closed_;  // closing handles; freed in on_closed
  std::string last_failure_ = "not connected yet";
};

}  // namespace sidemux::upstream
