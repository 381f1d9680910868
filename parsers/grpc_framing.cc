#include "parsers/grpc_framing.h"

#include <algorithm>

namespace sidemux::parsers::grpc {

size_t MessageFraming::step(const uint8_t* data, size_t len) {
  size_t used = 0;
  if (!in_payload_) {
    while (prefix_len_ < prefix_.size() && used < len) prefix_[prefix_len_++] = data[used++];
    if (prefix_len_ < prefix_.size()) return used;
    payload_left_ = (uint64_t{prefix_[1]} << 24) | (uint64_t{prefix_[2]} << 16) | (uint64_t{prefix_[3]} << 8) |
                    uint64_t{prefix_[4]};
    prefix_len_ = 0;
    in_payload_ = true;
  }
  size_t take = static_cast<size_t>(std::min<uint64_t>(payload_left_, len - used));
  payload_left_ -= take;
  if (payload_left_ == 0) in_payload_ = false;
  return used + take;
}

void MessageFraming::advance(const uint8_t* data, size_t len) {
  while (len > 0) {
    size_t n = step(data, len);
    data += n;
    len -= n;
  }
}

std::optional<size_t> MessageFraming::rest_of_message(const uint8_t* ahead, size_t len) const {
  if (at_boundary()) return 0;
  MessageFraming probe = *this;
  size_t n = probe.step(ahead, len);
  if (!probe.at_boundary()) return std::nullopt;
  return n;
}

}  // namespace sidemux::parsers::grpc
