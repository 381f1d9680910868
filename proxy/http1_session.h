// HTTP/1.1 on a client connection: llhttp-parsed requests answered by the
// local handlers or forwarded to a member (cluster.http1_forward,
// http1_forward.h), in order, with keep-alive and pipelining. Requests are
// served one at a time: parsing pauses after a forwarded request until its
// answer is complete, and whenever the write buffer fills or the member
// connection has no room for request body bytes; the unparsed bytes wait
// here (reads are stopped meanwhile, so they are at most one read's worth).
#pragma once

#include <memory>
#include <string>

#include "parsers/http1.h"
#include "proxy/http1_forward.h"
#include "proxy/session.h"

namespace sidemux {

class ClientConnection;
struct LocalResponse;

class Http1Session : public Session {
 public:
  explicit Http1Session(ClientConnection& conn);

  void on_read(const char* data, size_t len) override;
  void produce() override;
  bool idle() const override { return !parser_.mid_message() && !paused_ && !forward_; }
  // A forwarded request's head is complete and its body may stream for
  // hours; but a body that stops coming while the member could take more
  // gets idle_timeout between pieces (nginx's client_body_timeout).
  uint64_t request_deadline() const override;
  void shutdown(bool final) override;

  // From the forwarded request: its state moved (its body may flow again,
  // or its answer is complete), so the session looks at it on this turn;
  // an answer of sidemux's own (503, 502) in the local format.
  void wake();
  void write_local_response(const LocalResponse& resp, bool head, bool close);

 private:
  static bool on_request_cb(void* user, const parsers::Http1Request& req);
  static bool on_head_cb(void* user, const parsers::Http1Request& req);
  static bool on_body_cb(void* user, const char* data, size_t len);
  bool on_request(const parsers::Http1Request& req);
  bool on_head(const parsers::Http1Request& req);
  void parse(const char* data, size_t len);
  // The forwarded request's state decides whether parsing goes on.
  bool produce_forward();
  void close_after_flush();
  // Pipelined bytes held while a request is being answered.
  size_t stash_limit() const;
  bool reading_wanted() const;
  void write_response(int status, const LocalResponse* resp, bool head, bool close);
  void fail(int status, const char* reason);

  ClientConnection& conn_;
  parsers::Http1Parser parser_;
  std::string stash_;   // unparsed input while paused
  std::string head_;    // response head, reused across requests
  std::unique_ptr<ForwardedRequest> forward_;  // the request being forwarded, if any
  bool paused_ = false;
  bool upgrading_ = false;  // stash_ holds tunnel bytes, sent once the member's 101 arrived
  uint64_t request_deadline_ = 0;
  uint64_t body_progress_ = 0;  // uv_now() when forwarded body bytes last came or were wanted again
  bool closing_ = false;
  bool draining_ = false;
};

}  // namespace sidemux
