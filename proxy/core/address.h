// Socket addresses: a configured HostPort as a sockaddr, and a sockaddr as
// text or a port. Both sides use these (listeners bind, member connections
// connect, peers are logged).
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>

#include "conf/config.h"

namespace sidemux::core {

// The address when `address.host` is an IP literal of its family (IPv6 when
// address.ipv6); false for a name, which needs resolving.
bool to_sockaddr(const conf::HostPort& address, sockaddr_storage& out);
// The length of the address's own sockaddr type, for bind() and connect().
socklen_t sockaddr_length(const sockaddr_storage& ss);
// True for an IPv4 or IPv6 literal.
bool is_ip_literal(const std::string& host);

uint16_t port_of(const sockaddr* sa);
// "1.2.3.4:5" or "[::1]:5"; "[?]:0" for another family.
std::string format_peer(const sockaddr* sa);

}  // namespace sidemux::core
