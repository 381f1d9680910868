// LogRing and Logger: a line is queued whole or dropped and counted; the
// writer thread writes lines whole and in order; many logging threads never
// interleave; everything queued is written by the time the Logger is gone.
#include "proxy/core/log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <charconv>
#include <cmath>
#include <future>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "proxy/core/log_ring.h"
#include "proxy/core/metric_names.h"

namespace sidemux::core {
namespace {

std::string drain(LogRing& ring) {
  std::string out;
  iovec iov[2];
  int n = ring.wait_readable(iov);
  for (int i = 0; i < n; ++i) out.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
  ring.consume(out.size());
  return out;
}

TEST(LogRing, FullRefusesTheWholeLineAndWrapsAfterConsume) {
  LogRing ring(16);
  EXPECT_TRUE(ring.push("0123456789\n"));  // 11 of 16
  EXPECT_FALSE(ring.push("abcdef\n"));      // 7 > 5 free: nothing of it is queued
  EXPECT_TRUE(ring.push("abcd\n"));         // exactly full
  EXPECT_FALSE(ring.push("x"));
  EXPECT_EQ(drain(ring), "0123456789\nabcd\n");
  // The next line wraps around the end of the storage and comes out whole.
  EXPECT_TRUE(ring.push("0123456789\n"));
  EXPECT_EQ(drain(ring), "0123456789\n");
  EXPECT_TRUE(ring.push("wrapped-line\n"));
  EXPECT_EQ(drain(ring), "wrapped-line\n");
  EXPECT_FALSE(ring.push(std::string(17, 'x')));  // larger than the ring: never fits
}

TEST(LogRing, CloseEndsTheReaderOnceEmptyAndRefusesMore) {
  LogRing ring(64);
  EXPECT_TRUE(ring.push("last\n"));
  ring.close();
  EXPECT_FALSE(ring.push("late\n"));
  EXPECT_EQ(drain(ring), "last\n");
  iovec iov[2];
  EXPECT_EQ(ring.wait_readable(iov), 0);
}

TEST(LogRing, WaitDrainedGivesUpOnAStalledReader) {
  LogRing ring(64);
  EXPECT_TRUE(ring.wait_drained(std::chrono::milliseconds(1)));  // nothing queued
  ASSERT_TRUE(ring.push("stuck\n"));
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(ring.wait_drained(std::chrono::milliseconds(50)));
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(50));
}

TEST(LogRing, TheReaderGathersABurstUntilTheRingIsHalfFull) {
  LogRing ring(100, std::chrono::hours(1));
  auto reader = std::async(std::launch::async, [&] { return drain(ring); });
  // The reader is asleep on the empty ring when the burst starts.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(ring.push("line\n"));
  // The reader woke for the first line; it waits for the rest of the burst.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  for (int i = 1; i < 10; ++i) ASSERT_TRUE(ring.push("line\n"));  // 50 of 100 bytes: half
  ASSERT_EQ(reader.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(reader.get().size(), 50u);
}

TEST(LogRing, WaitDrainedDoesNotWaitOutTheLinger) {
  LogRing ring(100, std::chrono::hours(1));
  auto reader = std::async(std::launch::async, [&] { return drain(ring); });
  ASSERT_TRUE(ring.push("one line\n"));
  EXPECT_TRUE(ring.wait_drained(std::chrono::seconds(10)));
  EXPECT_EQ(reader.get(), "one line\n");
}

// A pipe whose read end a thread drains into a string until EOF.
class PipeReader {
 public:
  PipeReader() {
    int fds[2];
    if (pipe(fds) != 0) ADD_FAILURE() << "pipe";
    read_fd_ = fds[0];
    write_fd_ = fds[1];
  }
  ~PipeReader() {
    close_write();
    if (thread_.joinable()) thread_.join();
    ::close(read_fd_);
  }
  int write_fd() const { return write_fd_; }
  void start() {
    thread_ = std::thread([this] {
      char buf[65536];
      ssize_t n;
      while ((n = ::read(read_fd_, buf, sizeof buf)) > 0) text_.append(buf, static_cast<size_t>(n));
    });
  }
  void close_write() {
    if (write_fd_ >= 0) ::close(write_fd_);
    write_fd_ = -1;
  }
  // Everything written, once the writer side is closed.
  const std::string& finish() {
    close_write();
    if (!thread_.joinable()) start();
    thread_.join();
    return text_;
  }

 private:
  int read_fd_ = -1;
  int write_fd_ = -1;
  std::thread thread_;
  std::string text_;
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

TEST(Logger, ABlockedReaderCostsDroppedLinesNotAWaitAndTheRestComeOutWhole) {
  PipeReader pipe;
  constexpr int kLines = 5000;
  uint64_t dropped = 0;
  {
    // Nobody reads yet: the pipe fills, then the 4 KiB ring, then lines drop.
    Logger log(pipe.write_fd(), 4096);
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kLines; ++i) log.info("line", {{"i", i}, {"pad", std::string_view("0123456789abcdef")}});
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));  // it did not wait
    dropped = log.lines_dropped();
    EXPECT_GT(dropped, 0u);
    EXPECT_EQ(log.metrics().counter_value(metrics::kLogLinesDropped), dropped);
    pipe.start();  // the reader comes back; ~Logger flushes what was queued
  }
  std::vector<std::string> lines = lines_of(pipe.finish());
  EXPECT_EQ(lines.size() + dropped, static_cast<size_t>(kLines));
  EXPECT_FALSE(lines.empty());  // dropping everything would balance the sum too
  std::regex shape(R"(\{"ts":"[0-9T:.-]+Z","level":"info","msg":"line","i":(\d+),"pad":"0123456789abcdef"\})");
  int last = -1;
  for (const auto& l : lines) {
    std::smatch m;
    ASSERT_TRUE(std::regex_match(l, m, shape)) << l;
    int i = std::stoi(m[1]);
    EXPECT_GT(i, last);  // in order, none twice
    last = i;
  }
}

TEST(Logger, LinesFromManyThreadsNeverInterleave) {
  PipeReader pipe;
  pipe.start();
  constexpr int kThreads = 4, kLines = 3000;
  uint64_t dropped = 0;
  {
    Logger log(pipe.write_fd(), 16 << 10);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&log, t] {
        // Lines of different lengths, so a split line would not parse.
        std::string pad(static_cast<size_t>(10 + 40 * t), static_cast<char>('a' + t));
        for (int i = 0; i < kLines; ++i) log.warn("thread line", {{"thread", t}, {"i", i}, {"pad", pad}});
      });
    }
    for (auto& th : threads) th.join();
    dropped = log.lines_dropped();
  }
  std::vector<std::string> lines = lines_of(pipe.finish());
  EXPECT_EQ(lines.size() + dropped, static_cast<size_t>(kThreads * kLines));
  EXPECT_FALSE(lines.empty());
  std::regex shape(R"re(\{"ts":"[^"]+","level":"warn","msg":"thread line","thread":(\d),"i":(\d+),"pad":"([a-z]+)"\})re");
  std::map<int, int> last;
  for (const auto& l : lines) {
    std::smatch m;
    ASSERT_TRUE(std::regex_match(l, m, shape)) << l;
    int t = std::stoi(m[1]), i = std::stoi(m[2]);
    EXPECT_EQ(m[3].str(), std::string(static_cast<size_t>(10 + 40 * t), static_cast<char>('a' + t)));
    auto it = last.find(t);
    if (it != last.end()) {
      EXPECT_GT(i, it->second);
    }
    last[t] = i;
  }
}

TEST(Logger, EscapesJsonAndWritesEveryLineBeforeItIsDestroyed) {
  PipeReader pipe;
  pipe.start();
  {
    Logger log(pipe.write_fd());
    log.error("a \"quoted\"\n\tmsg\x01", {{"path", std::string_view("/a\\b")}, {"ok", true}, {"ms", 1.5}});
    log.debug("below the level");
  }
  std::vector<std::string> lines = lines_of(pipe.finish());
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find(R"("level":"error","msg":"a \"quoted\"\n\tmsg\u0001","path":"/a\\b","ok":true,"ms":1.5})"),
            std::string::npos)
      << lines[0];
  // Formatting again after the first Logger is gone reuses the thread's buffer.
  PipeReader again;
  again.start();
  { Logger(again.write_fd()).info("second"); }
  std::string text = again.finish();
  EXPECT_NE(text.find(R"("msg":"second")"), std::string::npos) << text;
}

TEST(Logger, DoublesPrintInTheirShortestRoundTripForm) {
  std::vector<double> values = {0, 1, 2.5, 0.001, 0.1 + 0.2, 1e-7, 123456.789, 999999999.999, 1e9, 1e15, 7.25e-3};
  for (int i = 0; i < 3000; ++i) values.push_back(std::round((i * 7919 % 100000) * 1.37) / 1e3);  // like duration_ms
  PipeReader pipe;
  pipe.start();
  {
    Logger log(pipe.write_fd(), 1 << 20);
    for (double v : values) log.info("d", {{"v", v}});
    EXPECT_EQ(log.lines_dropped(), 0u);
  }
  std::vector<std::string> lines = lines_of(pipe.finish());
  ASSERT_EQ(lines.size(), values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    char buf[32];
    std::string want(buf, std::to_chars(buf, buf + sizeof buf, values[i]).ptr);
    EXPECT_NE(lines[i].find("\"v\":" + want + "}"), std::string::npos) << lines[i] << " want " << want;
  }
}

TEST(Logger, EscapedFieldsAreValidJson) {
  std::string out;
  append_json_escaped(out, "plain \"q\" back\\slash\nnl\x1f end");
  EXPECT_EQ(out, R"(plain \"q\" back\\slash\nnl\u001f end)");
}

TEST(Logger, NegativeFdDiscardsWithoutAThread) {
  Logger log(-1);
  log.error("nowhere");
  log.flush();
  EXPECT_EQ(log.lines_dropped(), 0u);
}

}  // namespace
}  // namespace sidemux::core
