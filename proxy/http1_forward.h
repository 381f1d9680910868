// One HTTP/1 request forwarded to a member (cluster.http1_forward), from
// the end of its head to the end of its response. Owned by the client's
// Http1Session, which parses the next request only once this one is
// finished: pipelined requests are served one after the other, as HAProxy
// and nginx do, so answers leave in request order whichever side produced
// them and nothing of a later request is buffered beyond one read.
//
// Backpressure, both ways, without buffering a body: request bytes go to
// the member connection only while its write buffer has room (else the
// session stops parsing and reading the client); response bytes go to the
// client transport and, once its buffer is full, the member's reads stop
// until it drained. After a member's 101 to a websocket upgrade the two
// sockets are joined the same way.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "conf/config.h"
#include "parsers/http1.h"
#include "proxy/core/byte_queue.h"
#include "proxy/http1_forward_head.h"
#include "upstream/cluster.h"
#include "upstream/http1_connection.h"
#include "upstream/member.h"

namespace sidemux {

class ClientConnection;
class Http1Session;

// Whether cluster.http1_forward sends this request target to a member.
bool forwarded_path(const conf::Config& config, std::string_view target);

class ForwardedRequest final : public upstream::Http1Exchange, public upstream::MemberWatcher {
 public:
  ForwardedRequest(Http1Session& session, ClientConnection& conn, const parsers::Http1Request& req);
  ~ForwardedRequest();
  ForwardedRequest(const ForwardedRequest&) = delete;
  ForwardedRequest& operator=(const ForwardedRequest&) = delete;

  void start();
  // Request body bytes (framing removed). Returns whether more may come now.
  bool on_request_body(const char* data, size_t len);
  void on_request_end();
  // Client bytes after the member's 101.
  void on_tunnel_data(const char* data, size_t len);
  // The client transport has room again.
  void on_client_writable();

  // The session may send request bytes: the member connection has room.
  bool wants_input() const { return !request_ended_ && pending_body_.empty() && up_ && up_->writable(); }
  bool wants_tunnel_input() const { return up_ && up_->writable(); }
  bool tunnel() const { return tunnel_; }
  // The answer is complete (or failed): the session reaps this, then closes
  // the client connection if `close_client()`, else parses the next request.
  bool finished() const { return finished_; }
  bool request_complete() const { return request_ended_; }
  bool close_client() const { return close_client_; }

  // upstream::Http1Exchange
  void on_upstream_writable() override;
  void on_upstream_informational(const parsers::Http1Response& head) override;
  void on_upstream_head(const parsers::Http1Response& head) override;
  void on_upstream_body(std::span<const char> bytes) override;
  void on_upstream_end() override;
  void on_upstream_tunnel(const char* data, size_t len) override;
  void on_upstream_close(Close kind, std::string_view reason) override;
  // upstream::MemberWatcher: the member was marked down for a reason its
  // open requests share (etcd: no leader); the client connection closes.
  void on_member_lost(std::string_view reason) override;

 private:
  void attempt(std::string_view last_failure);
  void flush_request();
  // The member connection let go of this request (or it of the connection).
  void release_upstream();
  void respond_error(int status, std::string_view message);
  void finish(bool close_client);
  // The access line and sidemux_upstream_http_requests_total, once.
  void account();

  Http1Session& session_;
  ClientConnection& conn_;
  std::shared_ptr<const conf::Config> config_;  // the generation this request started in
  parsers::Http1Request request_;               // the head (its body bytes are not kept)
  std::string request_head_;                    // as sent to the member, kept for a retry
  core::ByteQueue pending_body_;                // framed request bytes the member connection had no room for
  bool head_sent_ = false;
  bool request_ended_ = false;
  bool request_end_sent_ = false;

  std::shared_ptr<upstream::Member> member_;
  upstream::Http1Connection* up_ = nullptr;
  upstream::Attempts attempts_;  // members tried and left to try (etcd: writes to the leader)

  ClientFraming framing_ = ClientFraming::as_member;
  std::string response_head_;
  bool response_started_ = false;  // a byte of the answer went to the client
  bool close_after_ = false;       // the client connection ends after this answer
  bool tunnel_ = false;
  bool finished_ = false;
  bool close_client_ = false;

  int status_ = 0;
  std::string error_start_;  // kind etcd: the start of an error's body (on_upstream_end())
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  uint64_t bytes_in_ = 0;
  uint64_t bytes_out_ = 0;
};

}  // namespace sidemux
