// The config loader on arbitrary YAML: it must return either a config or
// exactly one line "fuzz.yaml:LINE:COL: KEY: problem", never throw, crash
// or hang. Input: the file's contents.
#include <string>

#include "conf/config.h"
#include "t/fuzz/fuzz_support.h"

namespace {

bool digits_then(std::string_view s, size_t& pos, char end) {
  size_t start = pos;
  while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') ++pos;
  // 1-based: a number that is not 0 and has no leading zero.
  if (pos == start || s[start] == '0' || pos == s.size() || s[pos] != end) return false;
  ++pos;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view yaml(reinterpret_cast<const char*>(data), size);
  sidemux::conf::LoadResult r = sidemux::conf::load_string(yaml, "fuzz.yaml");
  if (r.config) {
    FUZZ_CHECK(r.error.empty());
    FUZZ_CHECK(r.config->source == "fuzz.yaml");
    FUZZ_CHECK(!r.config->listeners.empty());
    FUZZ_CHECK(r.config->workers >= 1);
    return 0;
  }
  const std::string& e = r.error;
  FUZZ_CHECK(e.rfind("fuzz.yaml:", 0) == 0);
  size_t pos = sizeof "fuzz.yaml:" - 1;
  FUZZ_CHECK(digits_then(e, pos, ':'));
  FUZZ_CHECK(digits_then(e, pos, ':'));
  FUZZ_CHECK(e.compare(pos, 1, " ") == 0 && e.size() > pos + 1);
  FUZZ_CHECK(e.find('\n') == std::string::npos && e.find('\r') == std::string::npos);
  return 0;
}
