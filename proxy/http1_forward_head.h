// The heads of a forwarded HTTP/1 request and of its response, rewritten
// for the next hop (RFC 9110 section 7.6.1, RFC 9112): hop-by-hop fields
// dropped (Connection and every field it names, Keep-Alive, Proxy-*, TE,
// Trailer, Transfer-Encoding, Upgrade), the body re-framed by sidemux,
// X-Forwarded-For extended with the client's address. Everything else,
// Host and Authorization included, passes unchanged and in order.
#pragma once

#include <string>
#include <string_view>

#include "parsers/http1.h"
#include "parsers/http1_response.h"

namespace sidemux {

// True for a field that belongs to one connection and is never forwarded.
// `connection` is the message's Connection header (the fields it lists are
// hop-by-hop too).
bool is_http1_hop_by_hop(std::string_view lower_name, std::string_view connection);

// The request head towards the member (always HTTP/1.1): the body chunked
// when the client's was, else with the client's Content-Length; a websocket
// upgrade keeps `Connection: Upgrade` and `Upgrade: websocket`.
void build_forward_request_head(const parsers::Http1Request& req, std::string_view client_ip, std::string& out);

// A websocket upgrade request (the only upgrade that is tunnelled).
bool is_websocket_upgrade(const parsers::Http1Request& req);

// How the response body goes to the client.
enum class ClientFraming { as_member, chunked, until_close };
ClientFraming client_framing(const parsers::Http1Response& resp, const parsers::Http1Request& req);

// The response head towards the client. `close`: the client connection
// ends after this response (Connection: close).
void build_client_response_head(const parsers::Http1Response& resp, ClientFraming framing, bool close,
                                std::string& out);

// One chunk of chunked transfer coding around `len` bytes: the size line
// (appended to `out` before the data) and the CRLF after it.
void append_chunk_header(size_t len, std::string& out);
inline constexpr std::string_view kChunkEnd = "\r\n";
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";

}  // namespace sidemux
