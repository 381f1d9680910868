#include "proxy/core/address.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <uv.h>

namespace sidemux::core {

bool to_sockaddr(const conf::HostPort& address, sockaddr_storage& out) {
  out = {};
  if (address.ipv6) return uv_ip6_addr(address.host.c_str(), address.port, reinterpret_cast<sockaddr_in6*>(&out)) == 0;
  return uv_ip4_addr(address.host.c_str(), address.port, reinterpret_cast<sockaddr_in*>(&out)) == 0;
}

socklen_t sockaddr_length(const sockaddr_storage& ss) {
  return ss.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
}

bool is_ip_literal(const std::string& host) {
  in6_addr ip;
  return inet_pton(AF_INET, host.c_str(), &ip) == 1 || inet_pton(AF_INET6, host.c_str(), &ip) == 1;
}

uint16_t port_of(const sockaddr* sa) {
  if (sa->sa_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(sa)->sin6_port);
  return ntohs(reinterpret_cast<const sockaddr_in*>(sa)->sin_port);
}

std::string format_peer(const sockaddr* sa) {
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (sa->sa_family == AF_INET) {
    auto* sin = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
    port = ntohs(sin->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  if (sa->sa_family == AF_INET6) {
    auto* sin6 = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host);
    port = ntohs(sin6->sin6_port);
  }
  return "[" + std::string(host) + "]:" + std::to_string(port);
}

}  // namespace sidemux::core
