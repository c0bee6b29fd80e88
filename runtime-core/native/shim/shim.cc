// conductor-shim: starts one container through the OCI runtime, owns its stdout/stderr (CRI log
// with rotation), waits for it and records how it ended in CTRDIR/status.json. The contract is
// runtime-core/README.md, section "conductor-shim".
//
// Process shape: the process the facade spawns (the "caller side") forks; the child calls setsid
// and forks the real shim, then exits. So the shim is in its own session, re-parented away from
// the caller, and survives the controller. It reports success or failure back to the caller side
// over a pipe, and the caller side prints that one JSON line and exits.
#include "shim/shim.h"

#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <initializer_list>
#include <utility>

#include "common/container_id.h"

namespace shim {
namespace {

// After the container exits, something outside its PID namespace (or in the host's) may still
// hold the pipes; read what it writes for this long, then stop waiting for EOF.
constexpr int kDrainMs = 2000;

struct Args {
  const char* id = nullptr;
  const char* bundle = nullptr;
  const char* dir = nullptr;
  const char* runtime = nullptr;
  const char* runtime_root = nullptr;
  uint64_t log_max_size = 10 << 20;
  int log_max_files = 3;
  // --start-gate: between create and start, wait for the caller to say go (see Shim::gate).
  bool start_gate = false;
};

bool valid_id(const char* id) { return conductor::valid_container_id(id); }

bool parse_uint(const char* s, uint64_t max, uint64_t& out) {
  if (!*s) return false;
  char* end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end || s[0] == '-' || v > max) return false;
  out = v;
  return true;
}

// The shim chdirs to "/", so relative paths from the caller are made absolute first.
const char* absolute(const char* path, char (&buf)[PATH_MAX]) {
  if (path[0] == '/') return path;
  char cwd[PATH_MAX];
  if (!getcwd(cwd, sizeof cwd)) return nullptr;
  if (snprintf(buf, sizeof buf, "%s/%s", cwd, path) >= static_cast<int>(sizeof buf)) return nullptr;
  return buf;
}

void parse_args(int argc, char** argv, Args& a) {
  static char abs_bundle[PATH_MAX], abs_dir[PATH_MAX], abs_runtime[PATH_MAX], abs_root[PATH_MAX];
  for (int i = 1; i < argc; i++) {
    const char* flag = argv[i];
    if (!strcmp(flag, "--start-gate")) {
      a.start_gate = true;
      continue;
    }
    const char* value = nullptr;
    const char* eq = strchr(flag, '=');
    char name[32];
    if (eq && flag[0] == '-') {
      snprintf(name, sizeof name, "%.*s", static_cast<int>(eq - flag), flag);
      value = eq + 1;
    } else {
      snprintf(name, sizeof name, "%s", flag);
      if (i + 1 >= argc) fail("flag %s needs a value", flag);
      value = argv[++i];
    }
    uint64_t n;
    if (!strcmp(name, "--id"))
      a.id = value;
    else if (!strcmp(name, "--bundle"))
      a.bundle = value;
    else if (!strcmp(name, "--dir"))
      a.dir = value;
    else if (!strcmp(name, "--runtime"))
      a.runtime = value;
    else if (!strcmp(name, "--runtime-root"))
      a.runtime_root = value;
    else if (!strcmp(name, "--log-max-size")) {
      if (!parse_uint(value, UINT64_MAX, n)) fail("--log-max-size: not a size: %s", value);
      a.log_max_size = n;
    } else if (!strcmp(name, "--log-max-files")) {
      if (!parse_uint(value, 1000, n)) fail("--log-max-files: not 0..1000: %s", value);
      a.log_max_files = static_cast<int>(n);
    } else {
      fail("unknown flag %s", flag);
    }
  }
  if (!a.id || !a.bundle || !a.dir || !a.runtime || !a.runtime_root)
    fail(
        "usage: conductor-shim --id ID --bundle DIR --dir CTRDIR --runtime PATH "
        "--runtime-root DIR [--log-max-size BYTES] [--log-max-files N] [--start-gate]");
  if (!valid_id(a.id)) fail("invalid container id `%s`", a.id);
  a.bundle = absolute(a.bundle, abs_bundle);
  a.dir = absolute(a.dir, abs_dir);
  a.runtime_root = absolute(a.runtime_root, abs_root);
  // A bare name is looked up in PATH by execvp; only a relative path with a slash needs fixing.
  if (strchr(a.runtime, '/')) a.runtime = absolute(a.runtime, abs_runtime);
  if (!a.bundle || !a.dir || !a.runtime || !a.runtime_root) fail_errno("getcwd");
  struct stat st;
  if (stat(a.dir, &st) != 0) fail_errno("stat `%s`", a.dir);
  if (!S_ISDIR(st.st_mode)) fail("--dir `%s`: not a directory", a.dir);
}

// The one status line (README: "conductor-shim"); the report fd is closed after it.
void report(UniqueFd& fd, const char* line) {
  write_all(fd.get(), line, strlen(line));
  fd.reset();
}

void report_failure(UniqueFd& fd, const std::exception& e) {
  // At most 1023 bytes of message, as always: the line fits the caller side's buffer.
  const char* msg = e.what();
  char esc[2048];
  json_escape(esc, sizeof esc, msg, strnlen(msg, 1023));
  char line[sizeof esc + 32];
  snprintf(line, sizeof line, "{\"ok\":false,\"error\":\"%s\"}\n", esc);
  report(fd, line);
}

// Whatever is left in a pipe whose writers are gone (or would block): its last non-empty line.
void pipe_tail(int fd, char* out, size_t cap) {
  char buf[4096];
  size_t len = 0;
  for (;;) {
    ssize_t r = read(fd, buf + len, sizeof buf - len);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    len += static_cast<size_t>(r);
    if (len == sizeof buf) {  // keep the newer half
      memmove(buf, buf + sizeof buf / 2, sizeof buf / 2);
      len = sizeof buf / 2;
    }
  }
  while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' ' || buf[len - 1] == '\r')) len--;
  size_t start = len;
  while (start > 0 && buf[start - 1] != '\n') start--;
  snprintf(out, cap, "%.*s", static_cast<int>(len - start), buf + start);
}

[[noreturn]] void exit_failure(const char* what, int status) {
  if (WIFSIGNALED(status)) fail("%s: killed by signal %d", what, WTERMSIG(status));
  fail("%s: exit status %d", what, WEXITSTATUS(status));
}

// Why a runtime command failed: its own error from runtime.log, else its stderr, else its status.
[[noreturn]] void runtime_failure(const char* what, const char* log, off_t log_offset,
                                  int stderr_fd, int status) {
  char msg[1024];
  if (last_runtime_error(log, log_offset, msg, sizeof msg)) throw Error::preformatted(msg, 0);
  char tail[512] = "";
  if (stderr_fd >= 0) pipe_tail(stderr_fd, tail, sizeof tail);
  if (tail[0]) fail("%s: %s", what, tail);
  exit_failure(what, status);
}

off_t file_size(const char* path) {
  struct stat st;
  return stat(path, &st) == 0 ? st.st_size : 0;
}

pid_t read_pid_file(const char* path) {
  UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
  if (!fd) fail_errno("open `%s`", path);
  char buf[32];
  ssize_t r = read(fd.get(), buf, sizeof buf - 1);
  if (r <= 0) fail("read `%s`: empty", path);
  buf[r] = '\0';
  long v = strtol(buf, nullptr, 10);
  if (v <= 0) fail("`%s`: not a pid: %s", path, buf);
  return static_cast<pid_t>(v);
}

// In .bss: of these 32 KiB only the pages that output reaches become resident.
char g_line_buffers[2][OutputStream::kLineMax];

class Shim {
 public:
  // Runs everything after detaching. Returns the exit code. `gate`: the caller's stdin with
  // --start-gate.
  int run(const Args& a, UniqueFd report_fd, UniqueFd gate);

 private:
  void setup();
  void start_container();
  void wait_at_gate();
  void delete_container();
  void loop();
  void reap();

  Args a_;
  UniqueFd gate_;
  char runtime_log_[PATH_MAX] = "";
  char pid_file_[PATH_MAX] = "";
  UniqueFd sfd_;
  UniqueFd out_w_, err_w_;  // write ends, handed to `create` and then closed
  OutputStream out_;
  OutputStream err_;
  CriLog log_;
  OomCounter oom_;
  long oom_before_ = -1;
  ContainerStatus status_;
};

void Shim::setup() {
  snprintf(runtime_log_, sizeof runtime_log_, "%s/runtime.log", a_.dir);
  snprintf(pid_file_, sizeof pid_file_, "%s/container.pid", a_.dir);
  // Orphans of the container (double-forked daemons, the runtime's helpers) are re-parented to
  // us rather than to init, so we reap them and see the container's own exit status.
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) fail_errno("prctl(PR_SET_CHILD_SUBREAPER)");
  // SIGCHLD drives the loop. The others would kill the shim (and orphan the container's log);
  // the shim stops only when its container does, so they are read and dropped.
  sigset_t mask;
  sigemptyset(&mask);
  for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE, SIGUSR1, SIGUSR2})
    sigaddset(&mask, sig);
  if (sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) fail_errno("sigprocmask");
  sfd_.reset(signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!sfd_) fail_errno("signalfd");
  for (OutputStream* s : {&out_, &err_}) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) fail_errno("pipe2");
    s->fd.reset(p[0]);
    (s == &out_ ? out_w_ : err_w_).reset(p[1]);
    // Only our read end is non-blocking: the container's write end keeps normal semantics.
    if (fcntl(p[0], F_SETFL, O_NONBLOCK) != 0) fail_errno("fcntl(O_NONBLOCK)");
  }
}

void Shim::start_container() {
  off_t log_offset = file_size(runtime_log_);
  const char* create[] = {a_.runtime,     "--root",  a_.runtime_root, "--log",    runtime_log_,
                          "--log-format", "json",    "create",        "--bundle", a_.bundle,
                          "--pid-file",   pid_file_, a_.id,           nullptr};
  // stdin is fd 0, already /dev/null. The container inherits create's stdio.
  pid_t pid;
  try {
    pid = spawn(create, 0, out_w_.get(), err_w_.get());
  } catch (const Error&) {
    out_w_.reset();
    err_w_.reset();
    throw;
  }
  out_w_.reset();
  err_w_.reset();
  int st = wait_for(pid);
  // The runtime also prints its error on stderr, which is the container's stderr pipe.
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    runtime_failure("create", runtime_log_, log_offset, err_.fd.get(), st);
  status_.pid = read_pid_file(pid_file_);
  // The container's init sits in its cgroup, waiting for `start`: find the counter now, while
  // the process is certainly there, and read the count before the container can run.
  if (oom_.find(status_.pid)) oom_before_ = oom_.read();
  char log_path[PATH_MAX + 16];
  snprintf(log_path, sizeof log_path, "%s/container.log", a_.dir);
  log_.open(log_path, a_.log_max_size, a_.log_max_files);
  if (gate_) wait_at_gate();

  // `start` and `delete` get no --log (as in the contract): their errors come on stderr.
  int sp[2];
  if (pipe2(sp, O_CLOEXEC) != 0) fail_errno("pipe2");
  UniqueFd start_err(sp[0]), start_err_w(sp[1]);
  const char* start[] = {a_.runtime, "--root", a_.runtime_root, "start", a_.id, nullptr};
  pid = spawn(start, 0, 0, start_err_w.get());
  start_err_w.reset();
  char tail[512];
  // To EOF first: nothing long-lived holds start's stderr.
  pipe_tail(start_err.get(), tail, sizeof tail);
  start_err.reset();
  st = wait_for(pid);
  status_.started_at = now();
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return;
  if (tail[0]) fail("start: %s", tail);
  exit_failure("start", st);
}

// --start-gate: the caller makes what the container needs before it runs (its network) while
// `create` sets the container up, and writes one byte "s" to our stdin when the container may
// start. End of file or anything else cancels: the created container is deleted and the
// failure reported, so a caller that died meanwhile leaves nothing running.
void Shim::wait_at_gate() {
  char c = 0;
  ssize_t r;
  do r = read(gate_.get(), &c, 1);
  while (r < 0 && errno == EINTR);
  if (r < 0) fail_errno("read the start gate");
  gate_.reset();
  if (r == 0 || c != 's') fail("start cancelled by the caller");
}

void Shim::delete_container() {
  const char* del[] = {a_.runtime, "--root", a_.runtime_root, "delete", "--force", a_.id, nullptr};
  try {
    wait_for(spawn(del, 0, 0, 0));
  } catch (const Error&) {
    // Nowhere to report it: the container is gone or going either way.
  }
}

void Shim::reap() {
  int st;
  pid_t p;
  while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
    if (p != status_.pid || status_.stopped) continue;
    status_.stopped = true;
    status_.finished_at = now();
    if (WIFSIGNALED(st)) {
      status_.signal = WTERMSIG(st);
      status_.exit_code = 128 + status_.signal;
    } else {
      status_.exit_code = WEXITSTATUS(st);
    }
  }
}

// Starting up (libc's init, running the runtime's create and start) faulted in most of this
// static binary; the loop needs a few pages of it. Dropping our mappings of its read-only
// segments (code, rodata: never written, a static executable has no text relocations) leaves
// the pages in the page cache, shared by every shim, and the loop faults back what it uses.
// Writable segments (with RELRO inside) are left alone: MADV_DONTNEED would reset them to the
// file's contents.
int drop_read_only_segments(dl_phdr_info* info, size_t, void*) {
  uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD || (ph.p_flags & PF_W)) continue;
    uintptr_t start = (info->dlpi_addr + ph.p_vaddr + page - 1) & ~(page - 1);
    uintptr_t end = (info->dlpi_addr + ph.p_vaddr + ph.p_memsz) & ~(page - 1);
    if (end > start) madvise(reinterpret_cast<void*>(start), end - start, MADV_DONTNEED);
  }
  return 1;  // the first object is the executable itself; stop there
}

int64_t monotonic_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

void Shim::loop() {
  int64_t drain_deadline = 0;
  for (;;) {
    int timeout = -1;
    if (status_.stopped) {
      if (!out_.fd && !err_.fd) break;
      if (drain_deadline == 0) drain_deadline = monotonic_ms() + kDrainMs;
      int64_t left = drain_deadline - monotonic_ms();
      if (left <= 0) break;
      timeout = static_cast<int>(left);
    }
    pollfd fds[3] = {
        {sfd_.get(), POLLIN, 0}, {out_.fd.get(), POLLIN, 0}, {err_.fd.get(), POLLIN, 0}};
    if (poll(fds, 3, timeout) < 0 && errno != EINTR) break;
    if (fds[0].revents) {
      signalfd_siginfo si;
      while (read(sfd_.get(), &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
      }
      reap();
    }
    if (fds[1].revents) out_.pump(log_);
    if (fds[2].revents) err_.pump(log_);
  }
  out_.close_and_flush(log_);
  err_.close_and_flush(log_);
}

int Shim::run(const Args& a, UniqueFd report_fd, UniqueFd gate) {
  a_ = a;
  gate_ = std::move(gate);
  out_.name = "stdout";
  out_.buf = g_line_buffers[0];
  err_.name = "stderr";
  err_.buf = g_line_buffers[1];
  bool created = false;  // from create on, a failure deletes what it made
  try {
    setup();
    created = true;
    start_container();
    char path[PATH_MAX + 16], buf[64];
    snprintf(path, sizeof path, "%s/shim.pid", a_.dir);
    int n = snprintf(buf, sizeof buf, "%d\n", getpid());
    write_file_atomic(path, buf, static_cast<size_t>(n));
    write_status(a_.dir, status_);
  } catch (const Error& e) {
    // A failed create should leave nothing; make sure of it.
    if (created) delete_container();
    report_failure(report_fd, e);
    return 1;
  }
  char line[96];
  snprintf(line, sizeof line, "{\"ok\":true,\"pid\":%d,\"shimPid\":%d}\n", status_.pid, getpid());
  report(report_fd, line);

  dl_iterate_phdr(drop_read_only_segments, nullptr);
  loop();
  // The cgroup still exists until `delete`: read the counter before that.
  long oom_after = oom_.read();
  status_.oom_killed = oom_before_ >= 0 && oom_after > oom_before_;
  if (!status_.stopped) {  // the loop failed (poll error): record what we know
    status_.stopped = true;
    status_.finished_at = now();
    status_.exit_code = -1;
  }
  try {
    write_status(a_.dir, status_);
  } catch (const Error&) {
    // Nobody to tell any more: the facade sees the shim gone without a final status.
  }
  delete_container();
  reap();
  return 0;
}

Shim g_shim;

// The detached shim: its stdio must not keep the caller's pipes open (the caller waits for EOF).
[[noreturn]] void become_shim(const Args& a, UniqueFd report_fd) {
  UniqueFd gate;
  try {
    // The gate is the caller's stdin, kept (close-on-exec) before stdin becomes /dev/null.
    if (a.start_gate) {
      gate.reset(fcntl(0, F_DUPFD_CLOEXEC, 3));
      if (!gate) fail_errno("dup the start gate (stdin)");
    }
    UniqueFd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
    if (!null || dup2(null.get(), 0) < 0 || dup2(null.get(), 1) < 0 || dup2(null.get(), 2) < 0)
      fail_errno("open `/dev/null`");
    if (null.get() <= 2) null.release();  // it is one of our stdio descriptors now
    // Keep no mount of the caller's cwd busy for the container's lifetime.
    if (chdir("/") != 0) fail_errno("chdir `/`");
  } catch (const Error& e) {
    report_failure(report_fd, e);
    _exit(1);
  }
  _exit(g_shim.run(a, std::move(report_fd), std::move(gate)));
}

}  // namespace
}  // namespace shim

int main(int argc, char** argv) {
  using namespace shim;
  // Descriptors the caller leaked would stay open for the container's whole life.
  close_range(3, ~0U, 0);
  // Ignored signals survive exec: an ignored SIGCHLD would make the kernel reap the container
  // before we see its status, an ignored SIGPIPE would leak into the runtime and the container.
  for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  Args args;
  // The caller side: everything until the status line is printed.
  UniqueFd out(1);
  try {
    parse_args(argc, argv, args);
  } catch (const Error& e) {
    report_failure(out, e);
    return 1;
  }
  UniqueFd report_read, report_write;
  pid_t child;
  try {
    int rp[2];
    if (pipe2(rp, O_CLOEXEC) != 0) fail_errno("pipe2");
    report_read.reset(rp[0]);
    report_write.reset(rp[1]);
    child = fork();
    if (child < 0) fail_errno("fork");
  } catch (const Error& e) {
    report_failure(out, e);
    return 1;
  }
  if (child == 0) {
    report_read.reset();
    try {
      if (setsid() < 0) fail_errno("setsid");
      pid_t shim_pid = fork();
      if (shim_pid < 0) fail_errno("fork");
      if (shim_pid > 0) _exit(0);  // the shim is orphaned: re-parented to init or a subreaper
    } catch (const Error& e) {
      report_failure(report_write, e);
      _exit(1);
    }
    become_shim(args, std::move(report_write));
  }
  report_write.reset();
  wait_for(child);
  char line[4096];
  size_t len = 0;
  for (;;) {
    ssize_t r = read(report_read.get(), line + len, sizeof line - 1 - len);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    len += static_cast<size_t>(r);
  }
  if (len == 0) {
    report_failure(out, Error("shim exited before reporting"));
    return 1;
  }
  write_all(1, line, len);
  return strncmp(line, "{\"ok\":true", 10) == 0 ? 0 : 1;
}
