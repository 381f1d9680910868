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

size_t MessageFraming::finish_message(const uint8_t* data, size_t len) {
  size_t used = 0;
  while (!at_boundary() && used < len) used += step(data + used, len - used);
  return used;
}


}  // namespace sidemux::parsers::grpc
