#include "proxy/core/file_watch.h"

#include <filesystem>
#include <set>

namespace sidemux::core {

namespace {
std::string parent_dir(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? "." : dir;
}

bool same_time(const uv_timespec_t& a, const uv_timespec_t& b) { return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec; }
}  // namespace

bool FileWatch::Fingerprint::operator==(const Fingerprint& o) const {
  return err == o.err && resolved == o.resolved && dev == o.dev && ino == o.ino && size == o.size &&
         same_time(mtime, o.mtime) && same_time(ctime, o.ctime);
}

FileWatch::FileWatch(uv_loop_t* loop, std::vector<std::string> paths, std::function<void()> on_change,
                     std::chrono::milliseconds debounce)
    : loop_(loop),
      paths_(std::move(paths)),
      on_change_(std::move(on_change)),
      debounce_ms_(static_cast<uint64_t>(debounce.count())) {
  for (const auto& p : paths_) {
    auto e = std::make_unique<Entry>();
    e->owner = this;
    e->path = p;
    e->req.data = e.get();
    entries_.push_back(std::move(e));
  }
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
}

FileWatch::Ptr FileWatch::start(uv_loop_t* loop, std::vector<std::string> paths, std::function<void()> on_change,
                                std::string& error, std::chrono::milliseconds debounce) {
  Ptr w(new FileWatch(loop, std::move(paths), std::move(on_change), debounce));
  if (!w->watch_dirs(&error)) return nullptr;  // the Ptr closes what was opened
  w->scan();
  return w;
}

bool FileWatch::watch_dirs(std::string* error) {
  std::set<std::string> wanted;
  for (const auto& e : entries_) {
    wanted.insert(parent_dir(e->path));
    if (e->seen.err == 0 && !e->seen.resolved.empty()) wanted.insert(parent_dir(e->seen.resolved));
  }
  for (auto it = dirs_.begin(); it != dirs_.end();) {
    if (wanted.count(it->first)) {
      ++it;
      continue;
    }
    close_dir(it->second);
    it = dirs_.erase(it);
  }
  for (const auto& dir : wanted) {
    if (dirs_.count(dir)) continue;
    auto* d = new DirWatch{this, {}};
    uv_fs_event_init(loop_, &d->handle);
    d->handle.data = d;
    ++open_dirs_;
    int rc = uv_fs_event_start(
        &d->handle,
        [](uv_fs_event_t* h, const char*, int, int) { static_cast<DirWatch*>(h->data)->owner->on_event(); },
        dir.c_str(), 0);
    if (rc == 0) {
      dirs_.emplace(dir, d);
      continue;
    }
    close_dir(d);
    // After a scan, a directory that just went away (the kubelet removes the
    // old timestamped one) is tried again at the next scan; at start, every
    // path's directory must be there.
    if (error) {
      *error = "cannot watch " + dir + ": " + uv_strerror(rc);
      return false;
    }
  }
  return true;
}

void FileWatch::close() {
  if (closing_) return;
  closing_ = true;
  on_change_ = nullptr;
  for (auto& entry : dirs_) close_dir(entry.second);
  dirs_.clear();
  if (pending_ == 0) close_timer();
}

void FileWatch::close_dir(DirWatch* d) {
  uv_close(reinterpret_cast<uv_handle_t*>(&d->handle), [](uv_handle_t* h) {
    auto* dw = static_cast<DirWatch*>(h->data);
    FileWatch* self = dw->owner;
    delete dw;
    --self->open_dirs_;
    self->maybe_free();
  });
}

// The timer closes last, once no request still points at this object: its
// close callback (or a directory's, if one is still closing) frees it.
void FileWatch::close_timer() {
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), [](uv_handle_t* h) {
    auto* self = static_cast<FileWatch*>(h->data);
    self->timer_closed_ = true;
    self->maybe_free();
  });
}

void FileWatch::maybe_free() {
  if (closing_ && timer_closed_ && open_dirs_ == 0) delete this;
}

void FileWatch::on_event() {
  if (closing_) return;
  if (scanning_) {
    dirty_ = true;
    return;
  }
  if (uv_is_active(reinterpret_cast<uv_handle_t*>(&timer_))) return;
  uv_timer_start(&timer_, [](uv_timer_t* t) { static_cast<FileWatch*>(t->data)->scan(); }, debounce_ms_, 0);
}

void FileWatch::scan() {
  scanning_ = true;
  dirty_ = false;
  pending_ = entries_.size();
  if (pending_ == 0) return finish_scan();
  for (auto& e : entries_) {
    e->now = {};
    int rc = uv_fs_realpath(loop_, &e->req, e->path.c_str(), [](uv_fs_t* r) {
      auto* entry = static_cast<Entry*>(r->data);
      entry->owner->on_realpath(*entry);
    });
    if (rc != 0) {
      e->now.err = rc;
      done(*e);
    }
  }
}

void FileWatch::on_realpath(Entry& e) {
  if (e.req.result < 0) {
    e.now.err = static_cast<int>(e.req.result);
    uv_fs_req_cleanup(&e.req);
    return done(e);
  }
  e.now.resolved = static_cast<const char*>(e.req.ptr);
  uv_fs_req_cleanup(&e.req);
  if (closing_) return done(e);
  int rc = uv_fs_stat(loop_, &e.req, e.now.resolved.c_str(), [](uv_fs_t* r) {
    auto* entry = static_cast<Entry*>(r->data);
    entry->owner->on_stat(*entry);
  });
  if (rc != 0) {
    e.now.err = rc;
    done(e);
  }
}

void FileWatch::on_stat(Entry& e) {
  if (e.req.result < 0) {
    e.now.err = static_cast<int>(e.req.result);
  } else {
    const uv_stat_t& st = e.req.statbuf;
    e.now.dev = st.st_dev;
    e.now.ino = st.st_ino;
    e.now.size = st.st_size;
    e.now.mtime = st.st_mtim;
    e.now.ctime = st.st_ctim;
  }
  uv_fs_req_cleanup(&e.req);
  done(e);
}

void FileWatch::done(Entry&) {
  if (--pending_ > 0) return;
  if (closing_) return close_timer();
  finish_scan();
}

void FileWatch::finish_scan() {
  scanning_ = false;
  bool changed = false;
  for (auto& e : entries_) {
    if (!(e->seen == e->now)) changed = true;
    e->seen = std::move(e->now);
  }
  bool report = changed && !baseline_;
  baseline_ = false;
  watch_dirs(nullptr);
  // Last: the callback may drop this watch (close() only starts closing).
  if (dirty_) on_event();
  if (report && on_change_) on_change_();
}

}  // namespace sidemux::core
