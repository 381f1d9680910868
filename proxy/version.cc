#include "proxy/version.h"

#include <llhttp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>
#include <uv.h>

#include "build_info.h"

namespace sidemux {

namespace {

struct Versions {
  std::string libuv = uv_version_string();
  std::string nghttp2 = nghttp2_version(0)->version_str;
  std::string llhttp = std::to_string(LLHTTP_VERSION_MAJOR) + "." + std::to_string(LLHTTP_VERSION_MINOR) +
                       "." + std::to_string(LLHTTP_VERSION_PATCH);
  std::string openssl = OpenSSL_version(OPENSSL_VERSION_STRING);
};

}  // namespace

std::string version_json() {
  Versions v;
  return "{\"sidemux\":\"" SIDEMUX_VERSION "\",\"libuv\":\"" + v.libuv + "\",\"nghttp2\":\"" + v.nghttp2 +
         "\",\"llhttp\":\"" + v.llhttp + "\",\"openssl\":\"" + v.openssl + "\"}";
}

std::string version_text() {
  Versions v;
  return "sidemux " SIDEMUX_VERSION "\nlibuv " + v.libuv + "\nnghttp2 " + v.nghttp2 + "\nllhttp " + v.llhttp +
         "\nopenssl " + v.openssl + "\n";
}

}  // namespace sidemux
