#include "upstream/health_board.h"

namespace sidemux::upstream {

std::shared_ptr<SharedHealth> HealthBoard::state_for(const conf::Member& member) {
  std::lock_guard lock(mu_);
  auto& slot = states_[{member.name, member.address.to_string()}];
  if (auto existing = slot.lock()) return existing;
  auto fresh = std::make_shared<SharedHealth>();
  slot = fresh;
  // Entries of members gone from every loop are dropped here, at the rate
  // members are made, so the map stays as small as the member lists.
  std::erase_if(states_, [](const auto& entry) { return entry.second.expired(); });
  return fresh;
}

}  // namespace sidemux::upstream
