// conductor-shim: one small process per container (see runtime-core/README.md, "conductor-shim").
// It keeps to the native core's model for failures (conductor::Error, UniqueFd) but nothing else
// of common/ (no iostreams, no heap on the steady path): it lives as long as its container and
// its resident memory is a benchmark figure. Errors are thrown only while it starts up and
// while it shuts down; the loop in between does not allocate or throw.
#pragma once

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "common/error.h"
#include "common/fd.h"

namespace shim {

using conductor::Error;
using conductor::UniqueFd;

// What failed, on what, and errno, e.g. "open `/x/status.json.tmp`: ENOENT" (the errno's name
// only: the text ends up in the caller's {"ok":false,"error":...}, and keeps the format the
// shim always had). Both throw conductor::Error; fail_errno's carries errno as its code().
[[noreturn]] void fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
[[noreturn]] void fail_errno(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// ---- util.cc
bool write_all(int fd, const void* data, size_t n);
// Writes `path` through `path.tmp` + rename, so readers see the old or the new file, never half.
void write_file_atomic(const char* path, const char* data, size_t n);
// JSON string body for s[0..n) into out (always NUL-terminated, truncated to fit).
void json_escape(char* out, size_t cap, const char* s, size_t n);
// RFC 3339 in UTC with nanoseconds: 2026-11-28T12:00:00.123456789Z (31 bytes with the NUL).
constexpr size_t kTimeLen = 40;
void format_time(char* out, const timespec& ts);  // out: kTimeLen bytes
timespec now();
// Calls fn(line, len) for each line of fd from its current offset; longer lines are cut to
// the buffer. Returns false on a read error (callers treat it as "nothing (more) there").
using LineFn = void (*)(void* ctx, const char* line, size_t len);
bool for_each_line(int fd, LineFn fn, void* ctx);
// "SIGKILL" for 9; "SIG42" when the C library has no name.
void signal_name(int sig, char (&out)[16]);

// ---- runtime_cmd.cc: running the OCI runtime (conductor-runtime, runc, crun).
// Starts argv[0] (PATH lookup if it has no slash) with the given stdio and every signal unblocked.
// An exec failure comes back through a close-on-exec pipe, so it is an error here, not a 127.
pid_t spawn(const char* const argv[], int in, int out, int err);
// Waits for pid (only that one: the shim reaps everything else in its loop). Returns the status.
int wait_for(pid_t pid);
// Last {"level":"error","msg":...} (or fatal) in the runtime's JSON log after byte `offset`,
// decoded into out. Returns false when there is none.
bool last_runtime_error(const char* log_path, off_t offset, char* out, size_t cap);

// ---- status.cc: CTRDIR/status.json and the OOM counter.
struct ContainerStatus {
  pid_t pid = 0;
  timespec started_at{};
  bool stopped = false;
  timespec finished_at{};
  int exit_code = 0;
  int signal = 0;  // 0: exited normally
  bool oom_killed = false;
};
void write_status(const char* dir, const ContainerStatus& s);

// Where the kernel counts OOM kills for pid's memory cgroup: memory.oom_control on v1,
// memory.events on v2 (both have an "oom_kill N" line). Empty when there is no memory cgroup.
struct OomCounter {
  char path[PATH_MAX] = "";
  bool find(pid_t pid);
  // -1 when unreadable (no counter, cgroup gone).
  long read() const;
};

// ---- cri_log.cc: container.log in the kubelet's CRI format, rotated by size.
class CriLog {
 public:
  void open(const char* path, uint64_t max_size, int max_files);
  // One record: "<time> <stream> F|P <data>\n". Write errors drop the record: the container
  // must not block on a full disk.
  void write(const char* stream, bool partial, const char* data, size_t n);

 private:
  void rotate();
  UniqueFd fd_;
  uint64_t size_ = 0;
  uint64_t max_size_ = 0;
  int max_files_ = 0;
  char path_[PATH_MAX] = "";
};

// One of the container's output pipes. Complete lines go out as F records; a line longer than
// the buffer, or the rest at EOF, as P.
struct OutputStream {
  static constexpr size_t kLineMax = 16 * 1024;
  const char* name = nullptr;  // "stdout" | "stderr"
  UniqueFd fd;
  size_t len = 0;
  char* buf = nullptr;  // kLineMax bytes
  // Reads what the pipe has. Returns false at EOF (the rest is flushed and fd closed).
  bool pump(CriLog& log);
  void close_and_flush(CriLog& log);
};

}  // namespace shim
