// What the downstream (server) and upstream (client) nghttp2 sessions share:
// session options, and moving nghttp2's output into a Transport.
#pragma once

#include <nghttp2/nghttp2.h>

#include <memory>

namespace sidemux {

class Transport;

struct H2CallbacksDeleter {
  void operator()(nghttp2_session_callbacks* c) const { nghttp2_session_callbacks_del(c); }
};
using H2Callbacks = std::unique_ptr<nghttp2_session_callbacks, H2CallbacksDeleter>;
H2Callbacks make_h2_callbacks();

struct H2OptionDeleter {
  void operator()(nghttp2_option* o) const { nghttp2_option_del(o); }
};
using H2Options = std::unique_ptr<nghttp2_option, H2OptionDeleter>;
// Windows reopen only when the other side took the bytes (consume()), closed
// streams are not kept, and the abuse bounds hold for clients and members.
H2Options make_h2_options();

// Serializes pending frames into the transport until its buffer is full or
// nothing is left. Returns 0, or the fatal nghttp2 error.
int send_h2_output(nghttp2_session* session, Transport& transport);

}  // namespace sidemux
