#include "proxy/core/header_list.h"

#include <charconv>

namespace sidemux::core {

bool is_hop_by_hop(std::string_view name) {
  // Runs for every header of every stream: dispatch on the first letter.
  if (name.empty()) return false;
  switch (name[0]) {
    case 'c': return name == "connection";
    case 'k': return name == "keep-alive";
    case 'p': return name == "proxy-connection";
    case 't': return name == "transfer-encoding";
    case 'u': return name == "upgrade";
    case 'h': return name == "host";
    default: return false;
  }
}

std::span<const nghttp2_nv> to_nv(const HeaderList& fields) {
  // One per thread, reused: its capacity settles at the largest header
  // block, so a submit allocates nothing here.
  static thread_local std::vector<nghttp2_nv> nva;
  nva.clear();
  for (const auto& f : fields) {
    nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(f.name.data())),
                   reinterpret_cast<uint8_t*>(const_cast<char*>(f.value.data())), f.name.size(), f.value.size(),
                   NGHTTP2_NV_FLAG_NONE});
  }
  return nva;
}

std::string_view find_header(const HeaderList& fields, std::string_view name) {
  for (const auto& f : fields)
    if (f.name == name) return f.value;
  return {};
}

bool parse_int(std::string_view value, int& out) {
  return std::from_chars(value.data(), value.data() + value.size(), out).ec == std::errc();
}

}  // namespace sidemux::core
