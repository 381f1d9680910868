// Header fields as they cross the proxy, and their nghttp2 form.
#pragma once

#include <nghttp2/nghttp2.h>

#include <memory_resource>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sidemux::core {

struct HeaderField {
  std::string name;
  std::string value;
};
// Polymorphic so that a stream's lists can come from the loop's pool
// (LoopContext::stream_memory()); default-constructed ones use the heap.
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
