// container.log in the CRI format the kubelet writes (and `kubectl logs` reads):
//   2026-11-28T12:00:00.123456789Z stdout F a complete line
//   2026-11-28T12:00:00.123456789Z stderr P a part of a longer line
// rotated by size into container.log.1 … .N (.1 newest).
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "shim/shim.h"

namespace shim {

static int open_log(const char* path, int extra_flags) {
  return ::open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | extra_flags, 0640);
}

void CriLog::open(const char* path, uint64_t max_size, int max_files) {
  snprintf(path_, sizeof path_, "%s", path);
  max_size_ = max_size;
  max_files_ = max_files;
  fd_.reset(open_log(path_, 0));
  if (!fd_) fail_errno("open `%s`", path_);
  struct stat st;
  size_ = fstat(fd_.get(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

void CriLog::rotate() {
  fd_.reset();
  char from[PATH_MAX + 16], to[PATH_MAX + 16];
  // .N-1 → .N first, so the rename onto .N is what drops the oldest file.
  for (int i = max_files_; i >= 1; i--) {
    if (i == 1)
      snprintf(from, sizeof from, "%s", path_);
    else
      snprintf(from, sizeof from, "%s.%d", path_, i - 1);
    snprintf(to, sizeof to, "%s.%d", path_, i);
    rename(from, to);  // ENOENT: that generation does not exist yet
  }
  fd_.reset(open_log(path_, O_TRUNC));
  size_ = 0;
}

void CriLog::write(const char* stream, bool partial, const char* data, size_t n) {
  // "<time> <stream> <tag> ", put together by hand: no stdio on the per-record path.
  char head[kTimeLen + 16];
  format_time(head, now());
  size_t hn = strlen(head);
  head[hn++] = ' ';
  size_t sn = strlen(stream);
  memcpy(head + hn, stream, sn);
  hn += sn;
  head[hn++] = ' ';
  head[hn++] = partial ? 'P' : 'F';
  head[hn++] = ' ';
  uint64_t total = hn + n + 1;
  if (max_size_ > 0 && size_ > 0 && size_ + total > max_size_) rotate();
  if (!fd_) {
    fd_.reset(open_log(path_, 0));  // a failed rotation: try again on every record
    if (!fd_) return;
  }
  iovec iov[3] = {{head, hn}, {const_cast<char*>(data), n}, {const_cast<char*>("\n"), 1}};
  ssize_t w;
  do w = writev(fd_.get(), iov, 3);
  while (w < 0 && errno == EINTR);
  // On a full disk the record is lost (or cut): the container must not stall on its logs.
  if (w > 0) size_ += static_cast<uint64_t>(w);
}

bool OutputStream::pump(CriLog& log) {
  for (;;) {
    ssize_t r = read(fd.get(), buf + len, kLineMax - len);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return true;
      close_and_flush(log);  // EIO and the like: treat as the end of the stream
      return false;
    }
    if (r == 0) {
      close_and_flush(log);
      return false;
    }
    size_t scanned = len;
    len += static_cast<size_t>(r);
    size_t start = 0;
    for (size_t i = scanned; i < len; i++) {
      if (buf[i] != '\n') continue;
      log.write(name, false, buf + start, i - start);
      start = i + 1;
    }
    if (start == 0 && len == kLineMax) {
      log.write(name, true, buf, len);
      len = 0;
    } else if (start > 0) {
      memmove(buf, buf + start, len - start);
      len -= start;
    }
    // A short read means the pipe is empty for now; do not spin on EAGAIN.
    if (static_cast<size_t>(r) < kLineMax - scanned) return true;
  }
}

void OutputStream::close_and_flush(CriLog& log) {
  if (len > 0) log.write(name, true, buf, len);
  len = 0;
  fd.reset();
}

}  // namespace shim
