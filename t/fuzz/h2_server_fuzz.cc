// A downstream HTTP/2 connection as the proxy runs it: a real Worker (its
// loop run here), a ClientConnection over loopback TCP classifying and
// installing Http2Session, local answers and ProxiedStreams to an in-process
// HTTP/2 member (TestMember, nghttp2, answering gRPC OK) on the same loop.
// The client side writes the fuzz bytes in pieces; the loop runs until
// nothing moves after each piece; the proxy is torn down (drain, every
// handle closed) per input.
// Input: byte 0 seeds the split; byte 1 bit 0 set: the rest is sent raw,
// clear: a client preface and an empty SETTINGS go first (so most inputs
// reach the frame layer); byte 1 bit 1: small limits (2 streams, 256-byte
// header lists); the rest is the client's bytes.
#include <string>

#include "parsers/classify.h"
#include "t/fuzz/fuzz_loop.h"
#include "t/fuzz/fuzz_proxy.h"
#include "t/fuzz/fuzz_support.h"

using namespace sidemux;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  fuzz::Splitter split(data[0]);
  const bool raw = data[1] & 1;
  const bool small = data[1] & 2;
  std::string bytes;
  if (!raw) {
    bytes = parsers::kHttp2Preface;
    bytes.append("\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9);  // SETTINGS, no entries
  }
  bytes.append(fuzz::as_chars(data + 2, size - 2));

  unit::TestProxy proxy("", small ? "max_concurrent_streams: 2, max_header_list_size: 256" : "");
  unit::TestEndpoint& client = fuzz::loopback_client(proxy);
  auto progress = [&] {
    return client.owner.read.size() + uint64_t(proxy.member.requests) + proxy.member.request_bytes +
           uint64_t(client.owner.errors);
  };
  for (size_t pos = 0; pos < bytes.size() && !client.transport.closing();) {
    size_t n = split.next(bytes.size() - pos);
    client.transport.write(std::string_view(bytes).substr(pos, n));
    pos += n;
    fuzz::settle(proxy.worker.loop(), progress);
    // Answers are read (the proxy's writes never back up) but not kept.
    client.owner.read.clear();
  }
  for (auto& c : proxy.member.connections) fuzz::close_with_reset(&c->tcp);
  return 0;
}
