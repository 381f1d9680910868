#include "upstream/balancer.h"

#include "upstream/member.h"

namespace sidemux::upstream {

Balancer::Balancer(conf::Balance policy, uint32_t seed) : policy_(policy), rng_(seed) {}

size_t Balancer::pick(std::span<const std::shared_ptr<Member>> members, const TriedMembers& tried) {
  // Walk the candidates in place rather than collect them: this runs per
  // stream and allocates nothing.
  auto candidate = [&](size_t i) { return !tried.contains(members[i].get()) && members[i]->eligible(); };
  size_t n = 0;
  for (size_t i = 0; i < members.size(); ++i) n += candidate(i);
  if (n == 0) return kNone;
  auto nth = [&](size_t k) {
    for (size_t i = 0; i < members.size(); ++i)
      if (candidate(i) && k-- == 0) return i;
    return kNone;
  };
  if (policy_ == conf::Balance::round_robin) return nth(next_++ % n);
  if (n == 1) return nth(0);
  // Power of two choices: two distinct random candidates, the less loaded wins.
  size_t a = rng_() % n;
  size_t b = rng_() % (n - 1);
  if (b >= a) ++b;
  size_t x = nth(a);
  size_t y = nth(b);
  return members[y]->active_streams() < members[x]->active_streams() ? y : x;
}

}  // namespace sidemux::upstream
