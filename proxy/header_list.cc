#include "proxy/header_list.h"

#include <array>

namespace sidemux {

bool is_hop_by_hop(std::string_view name) {
  static constexpr std::array<std::string_view, 6> kHopByHop = {
      "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host"};
  for (auto h : kHopByHop)
    if (h == name) return true;
  return false;
}

std::vector<nghttp2_nv> to_nv(const HeaderList& fields) {
  std::vector<nghttp2_nv> nva;
  nva.reserve(fields.size());
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

}  // namespace sidemux
