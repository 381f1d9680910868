// Versions of sidemux and the libraries it runs with (read at run time where
// the library can tell, so a container's actual libraries are reported).
#pragma once

#include <string>

namespace sidemux {

std::string version_json();   // the /version body
std::string version_text();   // `sidemux --version`

}  // namespace sidemux
