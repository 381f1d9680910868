#include "proxy/http1_forward_head.h"

#include <array>
#include <charconv>
#include <strings.h>

namespace sidemux {

namespace {

constexpr std::array<std::string_view, 7> kHopByHop = {
    "connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "proxy-connection",
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

// Connection lists field names separated by commas.
bool listed_in(std::string_view connection, std::string_view lower_name) {
  while (!connection.empty()) {
    size_t comma = connection.find(',');
    if (iequals(trim(connection.substr(0, comma)), lower_name)) return true;
    if (comma == std::string_view::npos) break;
    connection.remove_prefix(comma + 1);
  }
  return false;
}

void append_field(std::string& out, std::string_view name, std::string_view value) {
  out += name;
  out += ": ";
  out += value;
  out += "\r\n";
}

// Fields that pass, minus the hop-by-hop ones and `skip` (handled by the caller).
void append_end_to_end(const parsers::Http1Headers& headers, std::string& out, std::string_view skip) {
  std::string_view connection = headers.get("connection");
  for (size_t i = 0; i < headers.size(); ++i) {
    std::string_view name = headers.name(i);
    if (name == skip || is_http1_hop_by_hop(name, connection)) continue;
    append_field(out, name, headers.value(i));
  }
}

}  // namespace

bool is_http1_hop_by_hop(std::string_view lower_name, std::string_view connection) {
  for (std::string_view h : kHopByHop)
    if (lower_name == h) return true;
  // Proxy-Authorization, Proxy-Authenticate and the rest belong to the proxy hop.
  if (lower_name.starts_with("proxy-")) return true;
  return listed_in(connection, lower_name);
}

bool is_websocket_upgrade(const parsers::Http1Request& req) {
  return req.upgrade && iequals(trim(req.header("upgrade")), "websocket");
}

void build_forward_request_head(const parsers::Http1Request& req, std::string_view client_ip, std::string& out) {
  out.clear();
  out += req.method;
  out += ' ';
  out += req.target;
  out += " HTTP/1.1\r\n";
  // Several X-Forwarded-For fields are one list (RFC 9110 section 5.3); the
  // client's address goes at its end.
  std::string_view xff = "x-forwarded-for";
  append_end_to_end(req.headers, out, xff);
  out += "x-forwarded-for: ";
  for (size_t i = 0; i < req.headers.size(); ++i) {
    if (req.headers.name(i) != xff) continue;
    out += req.headers.value(i);
    out += ", ";
  }
  out += client_ip;
  out += "\r\n";
  if (req.chunked) out += "transfer-encoding: chunked\r\n";
  if (is_websocket_upgrade(req)) out += "connection: Upgrade\r\nupgrade: websocket\r\n";
  // An HTTP/1.0 request without a length has no body; with HTTP/1.1 towards
  // the member it must say so, or a POST would wait for one.
  if (!req.chunked && req.content_length == 0 && req.header("content-length").empty() &&
      (req.method == "POST" || req.method == "PUT" || req.method == "PATCH"))
    out += "content-length: 0\r\n";
  out += "\r\n";
}

ClientFraming client_framing(const parsers::Http1Response& resp, const parsers::Http1Request& req) {
  using F = parsers::Http1BodyFraming;
  if (resp.framing != F::chunked && resp.framing != F::until_close) return ClientFraming::as_member;
  bool http11 = req.version_major == 1 && req.version_minor >= 1;
  return http11 ? ClientFraming::chunked : ClientFraming::until_close;
}

void build_client_response_head(const parsers::Http1Response& resp, ClientFraming framing, bool close,
                                std::string& out) {
  out.clear();
  out += "HTTP/1.1 ";
  out += std::to_string(resp.status);
  out += ' ';
  out += resp.reason;
  out += "\r\n";
  // A re-chunked body has no Content-Length of its own.
  append_end_to_end(resp.headers, out, framing == ClientFraming::as_member ? std::string_view() : "content-length");
  if (framing == ClientFraming::chunked) out += "transfer-encoding: chunked\r\n";
  if (resp.upgrade) {
    out += "connection: Upgrade\r\n";
    append_field(out, "upgrade", resp.headers.get("upgrade"));
  } else if (close || framing == ClientFraming::until_close) {
    out += "connection: close\r\n";
  }
  out += "\r\n";
}

void append_chunk_header(size_t len, std::string& out) {
  std::array<char, 20> hex;
  auto r = std::to_chars(hex.data(), hex.data() + hex.size(), len, 16);
  out.append(hex.data(), r.ptr);
  out += "\r\n";
}

}  // namespace sidemux
