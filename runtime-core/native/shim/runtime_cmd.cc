// Running the OCI runtime's commands (create, start, delete) as the shim's children.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shim/shim.h"

namespace shim {

pid_t spawn(const char* const argv[], int in, int out, int err) {
  // The child reports a failed execvp's errno here; a successful exec closes it (O_CLOEXEC).
  int ep[2];
  if (pipe2(ep, O_CLOEXEC) != 0) fail_errno("pipe2");
  UniqueFd ep_read(ep[0]), ep_write(ep[1]);
  pid_t pid = fork();
  if (pid < 0) fail_errno("fork `%s`", argv[0]);
  if (pid == 0) {
    // The shim blocks SIGCHLD/SIGTERM/... for its signalfd; a blocked mask survives exec, and
    // the runtime (and the container it starts) must see signals normally.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) {
      int x = errno;
      write_all(ep_write.get(), &x, sizeof x);
      _exit(127);
    }
    execvp(argv[0], const_cast<char* const*>(argv));
    int x = errno;
    write_all(ep_write.get(), &x, sizeof x);
    _exit(127);
  }
  ep_write.reset();
  int child_errno = 0;
  ssize_t r;
  do r = read(ep_read.get(), &child_errno, sizeof child_errno);
  while (r < 0 && errno == EINTR);
  ep_read.reset();
  if (r == static_cast<ssize_t>(sizeof child_errno)) {
    wait_for(pid);
    errno = child_errno;
    fail_errno("execvp `%s`", argv[0]);
  }
  return pid;
}

int wait_for(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return status;
}

namespace {

struct ErrorScan {
  char* out;
  size_t cap;
  bool found;
};

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes the JSON string body starting at s (just after the opening quote) into out, stopping at
// the closing quote or the end of a cut line. \u escapes become UTF-8 (surrogates as U+FFFD).
void json_unescape(const char* s, const char* end, char* out, size_t cap) {
  size_t o = 0;
  auto put = [&](unsigned char c) {
    if (o + 1 < cap) out[o++] = static_cast<char>(c);
  };
  while (s < end && *s != '"') {
    char c = *s++;
    if (c != '\\') {
      put(static_cast<unsigned char>(c));
      continue;
    }
    if (s >= end) break;
    char x = *s++;
    switch (x) {
      case 'n':
        put('\n');
        break;
      case 't':
        put('\t');
        break;
      case 'r':
        put('\r');
        break;
      case 'b':
        put('\b');
        break;
      case 'f':
        put('\f');
        break;
      case 'u': {
        if (end - s < 4) return void(out[o] = '\0');
        unsigned cp = 0;
        for (int i = 0; i < 4; i++) {
          int h = hexval(s[i]);
          if (h < 0) return void(out[o] = '\0');
          cp = cp << 4 | static_cast<unsigned>(h);
        }
        s += 4;
        if (cp >= 0xd800 && cp < 0xe000) cp = 0xfffd;
        if (cp < 0x80) {
          put(static_cast<unsigned char>(cp));
        } else if (cp < 0x800) {
          put(static_cast<unsigned char>(0xc0 | cp >> 6));
          put(static_cast<unsigned char>(0x80 | (cp & 0x3f)));
        } else {
          put(static_cast<unsigned char>(0xe0 | cp >> 12));
          put(static_cast<unsigned char>(0x80 | (cp >> 6 & 0x3f)));
          put(static_cast<unsigned char>(0x80 | (cp & 0x3f)));
        }
        break;
      }
      default:
        put(static_cast<unsigned char>(x));
        break;  // \" \\ \/
    }
  }
  if (cap > 0) out[o] = '\0';
}

const char* find(const char* s, size_t n, const char* needle) {
  return static_cast<const char*>(memmem(s, n, needle, strlen(needle)));
}

void scan_line(void* ctx, const char* line, size_t n) {
  auto* scan = static_cast<ErrorScan*>(ctx);
  if (!find(line, n, "\"level\":\"error\"") && !find(line, n, "\"level\":\"fatal\"")) return;
  const char* msg = find(line, n, "\"msg\":\"");
  if (!msg) return;
  msg += strlen("\"msg\":\"");
  if (msg >= line + n || *msg == '"') return;
  json_unescape(msg, line + n, scan->out, scan->cap);
  scan->found = true;
}

}  // namespace

bool last_runtime_error(const char* log_path, off_t offset, char* out, size_t cap) {
  UniqueFd fd(::open(log_path, O_RDONLY | O_CLOEXEC));
  if (!fd) return false;
  ErrorScan scan{out, cap, false};
  if (lseek(fd.get(), offset, SEEK_SET) == offset) for_each_line(fd.get(), scan_line, &scan);
  return scan.found;
}

}  // namespace shim
