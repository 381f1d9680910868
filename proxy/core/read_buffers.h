// The read buffers every connection of one loop shares. Reads are handled to
// completion inside the read callback, so one buffer per loop is enough.
#pragma once

#include <uv.h>

#include <cstddef>
#include <memory>

namespace sidemux::core {

class ReadBuffers {
 public:
  // The buffer every socket read of this loop goes into.
  uv_buf_t read_buffer() { return uv_buf_init(read_buf_.get(), kReadBufferSize); }
  // Decrypted bytes of one read, handed on before the next read: a TLS
  // record's worth at a time.
  uv_buf_t tls_buffer() { return uv_buf_init(tls_buf_.get(), kTlsBufferSize); }

 private:
  static constexpr size_t kReadBufferSize = 64 * 1024;
  static constexpr size_t kTlsBufferSize = 16 * 1024;

  std::unique_ptr<char[]> read_buf_ = std::make_unique<char[]>(kReadBufferSize);
  std::unique_ptr<char[]> tls_buf_ = std::make_unique<char[]>(kTlsBufferSize);
};

}  // namespace sidemux::core
