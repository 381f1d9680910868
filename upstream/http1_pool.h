// The HTTP/1.1 keep-alive connections of one worker to one member, next to
// its HTTP/2 Pool. A forwarded request takes an idle connection (the most
// recently used, whose member side is least likely to have timed it out)
// or opens one; a connection whose response ended with keep-alive comes
// back idle and closes after limits.idle_timeout unused.
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "upstream/http1_connection.h"

namespace sidemux::core {
class LoopContext;
}

namespace sidemux::upstream {

class Member;

class Http1Pool {
 public:
  Http1Pool(core::LoopContext& context, Member& member);
  ~Http1Pool();
  Http1Pool(const Http1Pool&) = delete;
  Http1Pool& operator=(const Http1Pool&) = delete;

  // A connection for a new request, nullptr once shut down or when the
  // connect failed at once. The caller starts the exchange on it.
  Http1Connection* acquire();
  // No new requests; idle connections close, busy ones after their response.
  void drain();
  void shutdown();  // close everything
  bool empty() const { return connections_.empty(); }

  // From connections.
  void on_idle(Http1Connection& c);
  void on_busy(Http1Connection& c);
  void on_closed(Http1Connection& c);  // last handle closed: free it

 private:
  core::LoopContext& context_;
  Member& member_;
  std::vector<std::unique_ptr<Http1Connection>> connections_;  // every state
  std::vector<Http1Connection*> idle_;
  bool shut_down_ = false;
};

}  // namespace sidemux::upstream
