// Watches a set of files for changes a reload should pick up (reload.watch:
// the config file and the certificate, key and CA files it names).
//
// Each file's DIRECTORY is watched (uv_fs_event), not the file: an editor's
// rename-into-place and Kubernetes' `..data` symlink swap replace the file
// (or a link on the way to it), and a watch on the old inode would never
// fire again. The directory of what each path resolves to is watched too, so
// a link into another directory is followed; that set is recomputed after
// every scan.
//
// An event only says something in a directory moved; whether a watched file
// changed is decided by comparing what each path resolves to (realpath) and
// its stat (device, inode, size, mtime, ctime) with the previous scan, so a
// sibling file (an editor's swap file, the kubelet's next timestamped
// directory before the swap) reloads nothing. A same-size rewrite within one
// kernel timestamp tick of the previous scan is not seen; replacing the file
// (new inode), as editors and Kubernetes do, always is.
//
// Debounce: the first event arms a timer; the scan runs `debounce` later, so
// a burst of changes is one scan and one callback, and callbacks are at least
// `debounce` apart. Scans use uv_fs_realpath / uv_fs_stat (libuv's thread
// pool): the watch may live on any loop, and a slow file system (NFS, FUSE)
// never stalls it.
//
// Ownership: start() returns a Ptr; dropping it calls close(), after which
// the callback never runs; the object frees itself from the last close
// callback, once the file system requests in flight are back. The loop must
// run until then.
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace sidemux::core {

class FileWatch {
 public:
  struct Closer {
    void operator()(FileWatch* w) const { w->close(); }
  };
  using Ptr = std::unique_ptr<FileWatch, Closer>;
  static constexpr std::chrono::milliseconds kDebounce{1000};

  // Takes the files' current state as the baseline (asynchronously) and calls
  // on_change after a later change. Null, with `error` set, if a directory of
  // `paths` cannot be watched.
  static Ptr start(uv_loop_t* loop, std::vector<std::string> paths, std::function<void()> on_change,
                   std::string& error, std::chrono::milliseconds debounce = kDebounce);

  const std::vector<std::string>& paths() const { return paths_; }
  // The first scan is back: changes from now on are reported.
  bool has_baseline() const { return !baseline_; }

 private:
  // What a path resolved to at the last scan; err is the failing uv error
  // (a file missing mid-swap is a state like any other).
  struct Fingerprint {
    int err = 0;
    std::string resolved;
    uint64_t dev = 0, ino = 0, size = 0;
    uv_timespec_t mtime{}, ctime{};
    bool operator==(const Fingerprint& o) const;
  };
  struct Entry {
    FileWatch* owner;
    std::string path;
    uv_fs_t req;  // realpath, then stat; one scan at a time
    Fingerprint seen, now;
  };
  struct DirWatch {
    FileWatch* owner;
    uv_fs_event_t handle;
  };

  FileWatch(uv_loop_t* loop, std::vector<std::string> paths, std::function<void()> on_change,
            std::chrono::milliseconds debounce);
  ~FileWatch() = default;
  void close();

  bool watch_dirs(std::string* error);  // adds and removes DirWatches to match the paths
  void on_event();
  void scan();
  void on_realpath(Entry& e);
  void on_stat(Entry& e);
  void done(Entry& e);
  void finish_scan();
  void close_dir(DirWatch* d);
  void close_timer();
  void maybe_free();

  uv_loop_t* loop_;
  std::vector<std::string> paths_;
  std::function<void()> on_change_;
  uint64_t debounce_ms_;
  std::vector<std::unique_ptr<Entry>> entries_;  // stable addresses: their reqs are in flight
  std::map<std::string, DirWatch*> dirs_;        // by directory; freed from their close callbacks
  uv_timer_t timer_;
  size_t pending_ = 0;    // fs requests in flight
  size_t open_dirs_ = 0;  // DirWatch handles not yet closed
  bool baseline_ = true;  // the first scan sets the baseline and reports nothing
  bool scanning_ = false;
  bool dirty_ = false;  // an event came during a scan: scan again
  bool closing_ = false;
  bool timer_closed_ = false;
};

}  // namespace sidemux::core
