#include "upstream/member_connection.h"

#include "proxy/core/loop_context.h"
#include "proxy/core/uv_time.h"
#include "upstream/member.h"

namespace sidemux::upstream {

namespace {

MemberConnection* self(void* p) { return static_cast<MemberConnection*>(p); }

}  // namespace

MemberConnection::MemberConnection(core::LoopContext& context, Member& member, std::string_view alpn)
    : context_(context),
      member_(member),
      transport_(context, *this, context.upstream_bytes_in(), context.upstream_bytes_out()),
      dial_(context, transport_, member.address(), *this, alpn) {
  uv_timer_init(context.loop(), &timer_);
  timer_.data = this;
}

MemberConnection::~MemberConnection() = default;

void MemberConnection::connect() {
  start_timer(core::ms(context_.config()->cluster.connect_timeout));
  if (dial_.start()) ++handles_open_;
}

void MemberConnection::start_timer(uint64_t timeout_ms) {
  uv_timer_start(&timer_, [](uv_timer_t* t) { self(t->data)->on_timer(); }, timeout_ms, 0);
}

void MemberConnection::close_handles() {
  transport_.close();
  if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&timer_)))
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), [](uv_handle_t* h) { self(h->data)->on_handle_closed(); });
}

std::string MemberConnection::transport_failure(int status) const {
  const core::TlsEndpoint* tls = transport_.tls();
  if (tls && !tls->error().empty()) return "tls: " + tls->error();
  return std::string("connection lost: ") + uv_strerror(status);
}

void MemberConnection::on_transport_closed() {
  // After close() the socket's close callback lands here and close() does
  // nothing; after close_after_flush() (an orderly end: errors and the
  // member's EOF come through on_transport_error first) it closes the rest.
  close("connection closed", false);
  on_handle_closed();
}

void MemberConnection::on_handle_closed() {
  if (--handles_open_ == 0) on_handles_closed();
}

}  // namespace sidemux::upstream
