#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "shim/shim.h"

namespace shim {

namespace {
// The message, cut to what the caller's status line has always carried.
void vformat(char (&msg)[1024], const char* fmt, va_list ap) {
  vsnprintf(msg, sizeof msg, fmt, ap);
}
}  // namespace

void fail(const char* fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vformat(msg, fmt, ap);
  va_end(ap);
  throw Error::preformatted(msg, 0);
}

void fail_errno(const char* fmt, ...) {
  int err = errno;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vformat(msg, fmt, ap);
  va_end(ap);
  size_t n = strlen(msg);
  const char* name = strerrorname_np(err);
  if (name)
    snprintf(msg + n, sizeof msg - n, ": %s", name);
  else
    snprintf(msg + n, sizeof msg - n, ": errno %d", err);
  throw Error::preformatted(msg, err);
}

bool write_all(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

void write_file_atomic(const char* path, const char* data, size_t n) {
  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= static_cast<int>(sizeof tmp))
    fail("path too long: %s", path);
  UniqueFd fd(::open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) fail_errno("open `%s`", tmp);
  try {
    if (!write_all(fd.get(), data, n)) fail_errno("write `%s`", tmp);
    fd.reset();
    if (rename(tmp, path) != 0) fail_errno("rename `%s`", tmp);
  } catch (const Error&) {
    unlink(tmp);
    throw;
  }
}

void json_escape(char* out, size_t cap, const char* s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    char esc[7];
    size_t k = 0;
    if (c == '"' || c == '\\') {
      esc[k++] = '\\';
      esc[k++] = static_cast<char>(c);
    } else if (c == '\n') {
      esc[k++] = '\\';
      esc[k++] = 'n';
    } else if (c == '\t') {
      esc[k++] = '\\';
      esc[k++] = 't';
    } else if (c < 0x20 || c == 0x7f) {
      memcpy(esc, "\\u00", 4);
      k = 4;
      esc[k++] = hex[c >> 4];
      esc[k++] = hex[c & 15];
    } else {
      esc[k++] = static_cast<char>(c);
    }
    if (o + k + 1 > cap) break;
    memcpy(out + o, esc, k);
    o += k;
  }
  if (cap > 0) out[o] = '\0';
}

timespec now() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts;
}

// Without gmtime_r/strftime (and so without the time zone machinery, which reads files and
// parses them): this runs for every log record, and the code it touches stays resident.
// Days to civil date after Howard Hinnant's days_from_civil inverse (public domain).
void format_time(char* out, const timespec& ts) {
  int64_t secs = ts.tv_sec;
  int64_t days = secs / 86400, sod = secs % 86400;
  if (sod < 0) sod += 86400, days--;
  int64_t z = days + 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  int64_t day = doy - (153 * mp + 2) / 5 + 1;
  int64_t month = mp < 10 ? mp + 3 : mp - 9;
  int64_t year = yoe + era * 400 + (month <= 2);
  char* p = out;
  auto put = [&p](int64_t v, int width) {
    for (int i = width - 1; i >= 0; i--, v /= 10) p[i] = static_cast<char>('0' + v % 10);
    p += width;
  };
  auto sep = [&p](char c) { *p++ = c; };
  put(year, 4), sep('-'), put(month, 2), sep('-'), put(day, 2), sep('T');
  put(sod / 3600, 2), sep(':'), put(sod / 60 % 60, 2), sep(':'), put(sod % 60, 2), sep('.');
  put(ts.tv_nsec, 9), sep('Z'), sep('\0');
}

bool for_each_line(int fd, LineFn fn, void* ctx) {
  char buf[4096];
  size_t len = 0;
  bool skipping = false;  // inside a line that was already delivered cut short
  for (;;) {
    ssize_t r = read(fd, buf + len, sizeof buf - len);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return false;
    if (r == 0) {
      if (len > 0 && !skipping) fn(ctx, buf, len);
      return true;
    }
    len += static_cast<size_t>(r);
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
      if (buf[i] != '\n') continue;
      if (!skipping) fn(ctx, buf + start, i - start);
      skipping = false;
      start = i + 1;
    }
    if (start == 0 && len == sizeof buf) {
      if (!skipping) fn(ctx, buf, len);
      skipping = true;
      len = 0;
    } else {
      memmove(buf, buf + start, len - start);
      len -= start;
    }
  }
}

void signal_name(int sig, char (&out)[16]) {
  const char* abbrev = sigabbrev_np(sig);
  if (abbrev)
    snprintf(out, sizeof out, "SIG%s", abbrev);
  else
    snprintf(out, sizeof out, "SIG%d", sig);
}

}  // namespace shim
