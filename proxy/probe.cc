#include "proxy/probe.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "conf/config.h"

namespace sidemux {

namespace {

constexpr int kTimeoutMs = 5000;

int fail(const std::string& why) {
  std::fprintf(stderr, "probe: %s\n", why.c_str());
  return 1;
}

bool wait_for(int fd, short events, std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  if (left.count() <= 0) return false;
  pollfd p{fd, events, 0};
  return ::poll(&p, 1, static_cast<int>(left.count())) == 1;
}

int connect_to(const conf::HostPort& hp, std::chrono::steady_clock::time_point deadline, std::string& error) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string port = std::to_string(hp.port);
  if (int rc = ::getaddrinfo(hp.host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    error = hp.host + ": " + gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  for (addrinfo* ai = res; ai && fd < 0; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    int err = 0;
    socklen_t len = sizeof err;
    if (rc != 0 && errno == EINPROGRESS && wait_for(fd, POLLOUT, deadline))
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    else if (rc != 0)
      err = errno == EINPROGRESS ? ETIMEDOUT : errno;
    if (err != 0) {
      error = "connect " + hp.to_string() + ": " + std::strerror(err);
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(res);
  return fd;
}

}  // namespace

int probe(const std::string& url) {
  constexpr std::string_view kScheme = "http://";
  if (!url.starts_with(kScheme)) return fail("only http:// URLs are supported: " + url);
  std::string rest = url.substr(kScheme.size());
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  std::string path = slash == std::string::npos ? "/" : rest.substr(slash);
  conf::HostPort hp;
  if (!conf::parse_host_port(authority, hp)) {
    if (!conf::parse_host_port(authority + ":80", hp)) return fail("bad host in URL: " + url);
  }

  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kTimeoutMs);
  std::string error;
  int fd = connect_to(hp, deadline, error);
  if (fd < 0) return fail(error);

  std::string request = "GET " + path + " HTTP/1.1\r\nHost: " + authority + "\r\nConnection: close\r\n\r\n";
  size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EAGAIN && wait_for(fd, POLLOUT, deadline)) continue;
    if (n <= 0) {
      ::close(fd);
      return fail("send failed");
    }
    sent += static_cast<size_t>(n);
  }
  // Only the status line matters.
  std::string head;
  char buf[512];
  while (head.find("\r\n") == std::string::npos && head.size() < 4096) {
    if (!wait_for(fd, POLLIN, deadline)) break;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    head.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  size_t eol = head.find("\r\n");
  if (eol == std::string::npos) return fail("no answer from " + hp.to_string());
  std::string status_line = head.substr(0, eol);
  bool ok = status_line.starts_with("HTTP/1.") && status_line.size() >= 12 && status_line.compare(9, 3, "200") == 0;
  if (!ok) return fail(status_line);
  return 0;
}

}  // namespace sidemux
