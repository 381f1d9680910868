// HTTP/1.x response parsing with llhttp, for requests forwarded to a member.
// Incremental: heads are collected within limits, bodies are handed over as
// spans of the caller's input (never copied), so a body of any length
// streams through in bounded memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "parsers/http1_headers.h"
#include "parsers/http1_llhttp.h"

namespace sidemux::parsers {

// How the end of a response body is found (RFC 9112 section 6.3).
enum class Http1BodyFraming : uint8_t {
  none,            // HEAD, 1xx, 204, 304, Content-Length: 0, or a 101 upgrade
  content_length,  // exactly content_length bytes
  chunked,         // chunked transfer coding, then trailers
  until_close,     // the body ends when the member closes the connection
};

struct Http1Response {
  int status = 0;
  uint8_t version_major = 1;
  uint8_t version_minor = 1;
  std::string reason;  // the reason phrase, which HTTP/1 clients may show
  Http1Headers headers;
  Http1BodyFraming framing = Http1BodyFraming::none;
  uint64_t content_length = 0;  // when framing is content_length
  // The connection may carry another request after this response (version,
  // Connection header, framing): set when the response ends (on_end).
  bool keep_alive = false;
  // 101 Switching Protocols: after this head the connection is a tunnel.
  bool upgrade = false;

  bool informational() const { return status >= 100 && status < 200 && status != 101; }
  void clear();
};

class Http1ResponseParser : public Http1Llhttp {
 public:
  using Limits = Http1HeadLimits;  // per head, and again per trailer section

  class Handler {
   public:
    virtual ~Handler() = default;
    // An interim 1xx response (100 Continue, 103 Early Hints); the final
    // response to the same request follows.
    virtual void on_informational(const Http1Response& head) = 0;
    // The final head. For a 101 the next bytes are the tunnel's (see feed).
    virtual void on_head(const Http1Response& head) = 0;
    // Body bytes, chunk framing removed; a span of the input given to feed().
    virtual void on_body(std::span<const char> bytes) = 0;
    // The response is complete; trailers (chunked only) may be empty.
    // Return false to pause: feed() stops after this response.
    virtual bool on_end(const Http1Response& head, const Http1Headers& trailers) = 0;
  };

  Http1ResponseParser(const Limits& limits, Handler& handler);

  // The request that the next response answers was HEAD: its response has
  // no body whatever its headers announce. Set before feeding that
  // response's bytes (for pipelined requests: from on_end of the previous
  // one); a final response clears it.
  void expect_head_response(bool head) { head_request_ = head; }

  enum class Status {
    ok,        // all input used; feed more when it arrives
    paused,    // on_end returned false; feed the rest (from consumed) later
    upgraded,  // a 101 head ended at consumed; the bytes after it are the tunnel's
    error,     // not a valid response, or a head past the limits
  };
  struct Result {
    Status status;
    size_t consumed;  // bytes of the input used
    const char* reason;  // on error
  };
  Result feed(const char* data, size_t len);
  // The member closed the connection: completes an until-close body, and is
  // an error if a response was cut short.
  Result finish();

 private:
  Head on_message_begin() override;
  int on_headers_complete() override;
  int on_body(const char* at, size_t len) override;
  int on_message_complete() override;

  Result result(llhttp_errno_t err, const char* data, size_t len);

  Handler& handler_;
  Http1Response response_;
  Http1Headers trailers_;
  bool head_request_ = false;
};

}  // namespace sidemux::parsers
