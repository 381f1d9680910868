// OpenSSL's error queue as text for the error messages sidemux gives.
#pragma once

#include <string>
#include <string_view>

namespace sidemux::core {

// The oldest error on this thread's OpenSSL error queue, which is then
// cleared; `if_none` when the queue was empty.
std::string take_openssl_error(std::string_view if_none);

}  // namespace sidemux::core
