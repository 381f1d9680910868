// `sidemux probe URL`: a tiny blocking HTTP/1.1 GET for container health
// checks in images without curl. Runs in its own short-lived process, never
// on a worker loop.
#pragma once

#include <string>

namespace sidemux {

// Exit code: 0 iff the answer's status is 200; 1 otherwise (reason on stderr).
int probe(const std::string& url);

}  // namespace sidemux
