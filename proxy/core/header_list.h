// Header fields as they cross the proxy, and their nghttp2 form.
#pragma once

#include <nghttp2/nghttp2.h>

#include <memory_resource>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sidemux::core {

// Names and values are strings on the list's memory resource: a stream's
// lists and every field in them come from the loop's stream memory
// (LoopContext::stream_memory()), so a field longer than the inline 15 bytes costs no
// malloc either; default-constructed lists use the heap. Owned copies
// rather than nghttp2_rcbuf references to what was received: the proxy
// also builds lists itself (local answers, statuses, a rewritten
// grpc-timeout, :authority from `host`), which a reference has nothing to
// point at, and one kind of field keeps every user simple. The copy is of
// a few dozen bytes, into a block a freed field left.
struct HeaderField {
  using allocator_type = std::pmr::polymorphic_allocator<char>;

  HeaderField(std::string_view n, std::string_view v, const allocator_type& a = {}) : name(n, a), value(v, a) {}
  HeaderField(const HeaderField& f, const allocator_type& a = {}) : name(f.name, a), value(f.value, a) {}
  HeaderField(HeaderField&& f) noexcept = default;
  HeaderField(HeaderField&& f, const allocator_type& a) : name(std::move(f.name), a), value(std::move(f.value), a) {}
  HeaderField& operator=(const HeaderField&) = default;
  HeaderField& operator=(HeaderField&&) = default;

  std::pmr::string name;
  std::pmr::string value;
};
// Polymorphic so that a stream's lists can come from the stream memory; the
// fields take the list's resource (uses-allocator construction).
using HeaderList = std::pmr::vector<HeaderField>;

// Connection-specific fields (RFC 9113 8.2.2) never cross the proxy; `te`
// may only say "trailers" in HTTP/2, which gRPC needs, so it passes.
bool is_hop_by_hop(std::string_view name);

// nghttp2 copies names and values at submit time, so the views are only
// needed for the duration of the submit call. The array is the thread's
// scratch: valid until the next to_nv() on this thread.
std::span<const nghttp2_nv> to_nv(const HeaderList& fields);

std::string_view find_header(const HeaderList& fields, std::string_view name);

// A numeric field value such as :status or grpc-status; false when it is
// not a whole number (or does not fit).
bool parse_int(std::string_view value, int& out);

}  // namespace sidemux::core
