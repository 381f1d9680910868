// The HTTP/1.1 keep-alive connections of one worker to one member, next to
// its HTTP/2 Pool. A forwarded request takes an idle connection (the most
// recently used, whose member side is least likely to have timed it out)
// or opens one; a connection whose response ended with keep-alive comes
// back idle and closes after limits.idle_timeout unused.
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "upstream/connection_pool.h"
#include "upstream/http1_connection.h"

namespace sidemux::upstream {

class Http1Pool final : public ConnectionPool {
 public:
  Http1Pool(core::LoopContext& context, Member& member) : ConnectionPool(context, member) {}

  // A connection for a new request, nullptr once shut down or when the
  // connect failed at once. The caller starts the exchange on it.
  Http1Connection* acquire();
  // Idle connections close at once, busy ones after their response.
  void drain() override;
  void shutdown() override;
  bool empty() const override { return connections_.empty(); }

  // From connections.
  void on_idle(Http1Connection& c);
  void on_busy(Http1Connection& c);
  void on_closed(Http1Connection& c);  // last handle closed: free it

 private:
  std::vector<std::unique_ptr<Http1Connection>> connections_;  // every state
  std::vector<Http1Connection*> idle_;
};

}  // namespace sidemux::upstream
