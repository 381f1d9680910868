#include "upstream/member_dial.h"

#include "proxy/core/address.h"

namespace sidemux::upstream {

MemberDial::MemberDial(core::LoopContext& context, core::Transport& transport, const conf::HostPort& address,
                       Owner& owner, std::string_view alpn)
    : context_(context), transport_(transport), address_(address), owner_(owner), alpn_(alpn) {
  connect_req_.data = this;
  resolve_req_.data = this;
}

bool MemberDial::start() {
  sockaddr_storage ss;
  if (core::to_sockaddr(address_, ss)) {
    connect(reinterpret_cast<sockaddr*>(&ss));
    return false;
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  std::string port = std::to_string(address_.port);
  int rc = uv_getaddrinfo(
      context_.loop(), &resolve_req_,
      [](uv_getaddrinfo_t* req, int status, addrinfo* res) {
        auto* d = static_cast<MemberDial*>(req->data);
        d->resolving_ = false;
        if (d->owner_.dial_wanted()) {
          if (status == 0) {
            d->connect(res->ai_addr);
          } else {
            d->owner_.on_dial_failed(std::string("resolve ") + d->address_.host + ": " + uv_strerror(status));
          }
        }
        uv_freeaddrinfo(res);
        d->owner_.on_dial_request_done();
      },
      address_.host.c_str(), port.c_str(), &hints);
  if (rc != 0) {
    owner_.on_dial_failed(std::string("resolve: ") + uv_strerror(rc));
    return false;
  }
  resolving_ = true;
  return true;
}

void MemberDial::cancel() {
  if (resolving_) uv_cancel(reinterpret_cast<uv_req_t*>(&resolve_req_));
}

void MemberDial::connect(const sockaddr* addr) {
  int rc = uv_tcp_connect(&connect_req_, transport_.tcp(), addr, [](uv_connect_t* req, int status) {
    static_cast<MemberDial*>(req->data)->on_connected(status);
  });
  if (rc != 0) owner_.on_dial_failed(std::string("connect: ") + uv_strerror(rc));
}

void MemberDial::on_connected(int status) {
  if (!owner_.dial_wanted()) return;  // closed meanwhile (timed out)
  if (status != 0) {
    owner_.on_dial_failed(std::string("connect: ") + uv_strerror(status));
    return;
  }
  uv_tcp_nodelay(transport_.tcp(), 1);
  transport_.resume_reading();
  if (SSL_CTX* ctx = context_.tls()->upstream()) {
    const auto& tls = *context_.config()->cluster.tls;
    const std::string& name = tls.server_name.empty() ? address_.host : tls.server_name;
    transport_.start_tls(core::TlsEndpoint::client(ctx, name, core::is_ip_literal(name), alpn_));
    return;
  }
  owner_.on_dial_plain();
}

}  // namespace sidemux::upstream
