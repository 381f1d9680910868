// Command line: run, --check, --version, probe URL (SPEC "Command line").
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "conf/config.h"
#include "proxy/core/log.h"
#include "proxy/probe.h"
#include "proxy/server.h"
#include "proxy/version.h"

namespace {

constexpr const char* kDefaultConfig = "/etc/sidemux/sidemux.yaml";

int usage(FILE* out, int code) {
  std::fprintf(out,
               "usage: sidemux [-c FILE | --config FILE]   run (default FILE: %s)\n"
               "       sidemux --check -c FILE             validate the config and exit\n"
               "       sidemux --version                   print versions\n"
               "       sidemux probe URL                   GET an http:// URL; exit 0 iff 200\n",
               kDefaultConfig);
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config = kDefaultConfig;
  bool check = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "-c" || arg == "--config") {
      if (++i == argc) return usage(stderr, 2);
      config = argv[i];
    } else if (arg.starts_with("--config=")) {
      config = std::string(arg.substr(std::strlen("--config=")));
    } else if (arg == "--check") {
      check = true;
    } else if (arg == "--version") {
      std::fputs(sidemux::version_text().c_str(), stdout);
      return 0;
    } else if (arg == "probe" && i + 2 == argc) {
      return sidemux::probe(argv[i + 1]);
    } else if (arg == "-h" || arg == "--help") {
      return usage(stdout, 0);
    } else {
      std::fprintf(stderr, "sidemux: unknown argument: %s\n", argv[i]);
      return usage(stderr, 2);
    }
  }

  if (check) {
    auto loaded = sidemux::conf::load_file(config);
    if (!loaded) {
      std::fprintf(stderr, "%s\n", loaded.error.c_str());
      return 2;
    }
    std::puts("config ok");
    return 0;
  }

  // A client that disconnects mid-write must not kill the process.
  std::signal(SIGPIPE, SIG_IGN);
  sidemux::core::Logger log;
  sidemux::Server server(config, log);
  return server.run();
}
