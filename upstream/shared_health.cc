#include "upstream/shared_health.h"

namespace sidemux::upstream {

const char* to_string(Health h) {
  switch (h) {
    case Health::unknown: return "unknown";
    case Health::healthy: return "healthy";
    case Health::unhealthy: return "unhealthy";
  }
  return "?";
}

}  // namespace sidemux::upstream
