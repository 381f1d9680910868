// The HTTP/1 request path as a client connection runs it: a real Worker
// (its loop run here), a ClientConnection over loopback TCP classifying and
// installing Http1Session, the limits in force and the local handlers
// answering, answers read back. Bytes arrive in pieces; the loop runs until
// nothing moves after each piece; the proxy is torn down per input.
// Checks: when the bytes classify as HTTP/1, whatever the proxy writes is a
// sequence of HTTP/1.1 answers, so it starts with a status line.
// Input: byte 0 seeds the split; byte 1 picks the limit (bits 0-2:
// max_http1_request_bytes = 64 << n); the rest is the client's bytes.
#include <string>

#include "parsers/classify.h"
#include "t/fuzz/fuzz_loop.h"
#include "t/fuzz/fuzz_proxy.h"

using namespace sidemux;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  fuzz::Splitter split(data[0]);
  const uint32_t request_bytes = 64u << (data[1] & 7);
  const std::string_view bytes = fuzz::as_chars(data + 2, size - 2);

  unit::TestProxy proxy("", "max_http1_request_bytes: " + std::to_string(request_bytes));
  unit::TestEndpoint& client = fuzz::loopback_client(proxy);
  auto progress = [&] { return client.owner.read.size() + uint64_t(client.owner.errors); };
  std::string answers;
  for (size_t pos = 0; pos < bytes.size() && client.owner.errors == 0;) {
    size_t n = split.next(bytes.size() - pos);
    client.transport.write(bytes.substr(pos, n));
    pos += n;
    fuzz::settle(proxy.worker.loop(), progress);
    if (answers.size() < 16) answers.append(client.owner.read, 0, 16 - answers.size());
    client.owner.read.clear();
  }
  const bool http1 = parsers::classify(data + 2, size - 2) == parsers::Protocol::http1;
  if (http1 && !answers.empty()) FUZZ_CHECK(std::string_view(answers).substr(0, 9) == "HTTP/1.1 ");
  return 0;
}
