// FileWatch on a bare uv loop against a temporary directory: the changes a
// reload.watch must see (rewrite, rename-into-place, Kubernetes' ..data swap,
// a file in another directory), the ones it must not (a sibling file), the
// debounce, and that it frees itself however it is dropped.
#include "proxy/core/file_watch.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace sidemux::core {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

constexpr milliseconds kShort{100};    // debounce for the detection tests
constexpr milliseconds kWait{10000};   // bound on any wait for a callback (loaded machine)

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

// Writes a sibling and renames it over `path`, as editors and installers do.
void replace_file(const fs::path& path, const std::string& text) {
  fs::path tmp = path;
  tmp += ".tmp";
  write_file(tmp, text);
  fs::rename(tmp, path);
}

class FileWatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    uv_timer_init(&loop_, &guard_);
    guard_.data = this;
    char tmpl[] = "/tmp/sidemux-file-watch-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }

  void TearDown() override {
    watch_.reset();
    uv_close(reinterpret_cast<uv_handle_t*>(&guard_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);  // returns only once every handle is closed
    EXPECT_EQ(uv_loop_close(&loop_), 0);
    fs::remove_all(dir_);
  }

  void watch(std::vector<std::string> paths, milliseconds debounce = kShort) {
    std::string error;
    watch_ = FileWatch::start(&loop_, std::move(paths), [this] { ++calls_; }, error, debounce);
    ASSERT_TRUE(watch_) << error;
    ASSERT_TRUE(run_until([this] { return watch_->has_baseline(); }, kWait));
  }

  // Runs the loop until done() or `limit` passed; returns done().
  template <class Done>
  bool run_until(Done done, milliseconds limit) {
    expired_ = false;
    uv_timer_start(&guard_, [](uv_timer_t* t) { static_cast<FileWatchTest*>(t->data)->expired_ = true; },
                   static_cast<uint64_t>(limit.count()), 0);
    while (!done() && !expired_) uv_run(&loop_, UV_RUN_ONCE);
    uv_timer_stop(&guard_);
    return done();
  }

  bool calls_reach(int n) {
    return run_until([&] { return calls_ >= n; }, kWait);
  }

  // For asserting that nothing more comes: the loop runs this long.
  void run_for(milliseconds span) {
    run_until([] { return false; }, span);
  }

  uv_loop_t loop_;
  uv_timer_t guard_;
  bool expired_ = false;
  fs::path dir_;
  FileWatch::Ptr watch_;
  int calls_ = 0;
};

TEST_F(FileWatchTest, PlainRewrite) {
  fs::path config = dir_ / "sidemux.yaml";
  write_file(config, "one\n");
  watch({config.string()});
  write_file(config, "two, longer\n");
  EXPECT_TRUE(calls_reach(1));
}

TEST_F(FileWatchTest, RenameIntoPlace) {
  fs::path config = dir_ / "sidemux.yaml";
  write_file(config, "one\n");
  watch({config.string()});
  replace_file(config, "one\n");  // same bytes, new inode: still a change
  EXPECT_TRUE(calls_reach(1));
}

// The kubelet's projected volume: config.yaml -> ..data/config.yaml,
// ..data -> ..<timestamp>; an update writes a new timestamped directory,
// renames a new ..data link over the old one and removes the old directory.
TEST_F(FileWatchTest, ConfigMapDataSymlinkSwap) {
  auto make_version = [&](const std::string& stamp, const std::string& text) {
    fs::create_directory(dir_ / stamp);
    write_file(dir_ / stamp / "config.yaml", text);
  };
  auto swap_to = [&](const std::string& stamp, const std::string& old_stamp) {
    fs::create_symlink(stamp, dir_ / "..data_tmp");
    fs::rename(dir_ / "..data_tmp", dir_ / "..data");
    fs::remove_all(dir_ / old_stamp);
  };
  make_version("..2026_01", "one\n");
  fs::create_symlink("..2026_01", dir_ / "..data");
  fs::create_symlink("..data/config.yaml", dir_ / "config.yaml");
  watch({(dir_ / "config.yaml").string()});

  make_version("..2026_02", "two\n");
  swap_to("..2026_02", "..2026_01");
  ASSERT_TRUE(calls_reach(1));
  // The watch follows the new target: a second update is seen too.
  make_version("..2026_03", "three\n");
  swap_to("..2026_03", "..2026_02");
  EXPECT_TRUE(calls_reach(2));
}

TEST_F(FileWatchTest, TenQuickChangesAreOneCallback) {
  fs::path config = dir_ / "sidemux.yaml";
  write_file(config, "0\n");
  watch({config.string()}, FileWatch::kDebounce);
  uint64_t t0 = uv_hrtime();
  for (int i = 1; i <= 10; ++i) {
    if (i % 2)
      write_file(config, std::string(static_cast<size_t>(i), 'x'));
    else
      replace_file(config, std::string(static_cast<size_t>(i), 'y'));
  }
  ASSERT_TRUE(calls_reach(1));
  EXPECT_GE((uv_hrtime() - t0) / 1000000, static_cast<uint64_t>(FileWatch::kDebounce.count()));
  run_for(FileWatch::kDebounce + milliseconds(500));
  EXPECT_EQ(calls_, 1);
}

TEST_F(FileWatchTest, CertificateInAnotherDirectory) {
  fs::create_directory(dir_ / "conf");
  fs::create_directory(dir_ / "certs");
  write_file(dir_ / "conf" / "sidemux.yaml", "config\n");
  write_file(dir_ / "certs" / "server.crt", "cert one\n");
  watch({(dir_ / "conf" / "sidemux.yaml").string(), (dir_ / "certs" / "server.crt").string()});
  replace_file(dir_ / "certs" / "server.crt", "cert two\n");
  EXPECT_TRUE(calls_reach(1));
}

TEST_F(FileWatchTest, SiblingFileIsNoChange) {
  fs::path config = dir_ / "sidemux.yaml";
  write_file(config, "one\n");
  watch({config.string()});
  write_file(dir_ / ".sidemux.yaml.swp", "editor state\n");
  run_for(kShort * 5);
  EXPECT_EQ(calls_, 0);
  write_file(config, "two, longer\n");  // the watch is still alive
  EXPECT_TRUE(calls_reach(1));
}

TEST_F(FileWatchTest, MissingFileThatAppearsIsAChange) {
  fs::path cert = dir_ / "server.crt";
  watch({cert.string()});
  replace_file(cert, "cert\n");
  EXPECT_TRUE(calls_reach(1));
}

TEST_F(FileWatchTest, MissingDirectoryIsAnError) {
  std::string error;
  auto w = FileWatch::start(&loop_, {(dir_ / "nope" / "sidemux.yaml").string()}, [] {}, error);
  EXPECT_FALSE(w);
  EXPECT_NE(error.find("nope"), std::string::npos) << error;
}

// The server drops (and replaces) its watch from the callback after a reload.
TEST_F(FileWatchTest, CallbackMayDropTheWatch) {
  fs::path config = dir_ / "sidemux.yaml";
  write_file(config, "one\n");
  std::string error;
  watch_ = FileWatch::start(&loop_, {config.string()}, [this] { ++calls_; watch_.reset(); }, error, kShort);
  ASSERT_TRUE(watch_) << error;
  ASSERT_TRUE(run_until([this] { return watch_->has_baseline(); }, kWait));
  write_file(config, "two, longer\n");
  EXPECT_TRUE(calls_reach(1));
  EXPECT_FALSE(watch_);
}

// Dropped while its first scan is still on the thread pool: it frees itself
// once the requests are back (TearDown's uv_loop_close and LSan check that).
TEST_F(FileWatchTest, DroppedWhileScanning) {
  fs::path config = dir_ / "sidemux.yaml";
  write_file(config, "one\n");
  std::string error;
  watch_ = FileWatch::start(&loop_, {config.string(), (dir_ / "other").string()}, [this] { ++calls_; }, error);
  ASSERT_TRUE(watch_) << error;
  watch_.reset();
  uv_run(&loop_, UV_RUN_NOWAIT);
  EXPECT_EQ(calls_, 0);
}

}  // namespace
}  // namespace sidemux::core
