// HTTP/1.1 on a client connection: llhttp-parsed requests answered by the
// local handlers, in order, with keep-alive and pipelining. When the write
// buffer fills, parsing pauses and the unparsed bytes wait here (reads are
// stopped meanwhile, so they are at most one read's worth).
#pragma once

#include <string>

#include "parsers/http1.h"
#include "proxy/session.h"

namespace sidemux {

class ClientConnection;
struct LocalResponse;

class Http1Session : public Session {
 public:
  explicit Http1Session(ClientConnection& conn);

  void on_read(const char* data, size_t len) override;
  void produce() override;
  bool idle() const override { return !parser_.mid_message() && !paused_; }
  uint64_t request_deadline() const override { return request_deadline_; }
  void shutdown(bool final) override;

 private:
  static bool on_request_cb(void* user, const parsers::Http1Request& req);
  bool on_request(const parsers::Http1Request& req);
  void parse(const char* data, size_t len);
  void write_response(int status, const LocalResponse* resp, bool head, bool close);
  void fail(int status, const char* reason);

  ClientConnection& conn_;
  parsers::Http1Parser parser_;
  std::string stash_;   // unparsed input while paused
  std::string head_;    // response head, reused across requests
  bool paused_ = false;
  uint64_t request_deadline_ = 0;
  bool closing_ = false;
  bool draining_ = false;
};

}  // namespace sidemux
