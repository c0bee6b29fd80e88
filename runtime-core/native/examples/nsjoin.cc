// nsjoin — the seed's first lesson: a process can join another process's namespaces.
//
//   nsjoin demo [HOSTNAME]       first process in new PID+UTS namespaces, second joins it
//   nsjoin join PID -- CMD...    run CMD in PID's PID and UTS namespaces
//
// `demo` prints one line per process, e.g.
//   host hostname=vm pid=4200
//   first hostname=nsjoin-demo pid=1 host_pid=4201
//   second hostname=nsjoin-demo pid=2 host_pid=4203 first_pid=1
// The first sees itself as PID 1 and the hostname it set; the second, having joined with
// setns(pidfd, CLONE_NEWPID | CLONE_NEWUTS), sees the same hostname and is numbered in the
// same PID namespace. Both exist in the host's PID namespace too, under other numbers.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

namespace {

[[noreturn]] void die(const std::string& step) {
  const char* name = strerrorname_np(errno);
  std::fprintf(stderr, "nsjoin: %s: %s (%s)\n", step.c_str(), name ? name : "?",
               std::strerror(errno));
  std::exit(1);
}

// glibc 2.36 has no pidfd_open wrapper everywhere: call it directly.
int pidfd_open(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

std::string hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) < 0) die("gethostname");
  return buf;
}

// "NSpid:\t4201\t1" in /proc/PID/status lists the process's PID in each PID namespace it
// belongs to, from the host's (first) to its own (last). /proc here is the host's, so it
// answers for any process the host can see.
// (Inside the namespace, getpid() is not a host PID: ask for "self", which /proc resolves.)
std::string nspid(const std::string& pid, bool innermost) {
  std::ifstream f("/proc/" + pid + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("NSpid:", 0) != 0) continue;
    size_t b = innermost ? line.find_last_of(" \t") + 1 : line.find_first_not_of(" \t", 6);
    return line.substr(b, line.find_first_of(" \t", b) - b);
  }
  return "?";
}

// Waits for `pid` and turns its end into an exit code, 128+N for signal N (as shells do).
int wait_exit(pid_t pid) {
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) die("waitpid " + std::to_string(pid));
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Joins `target`'s PID and UTS namespaces. One pidfd names all of a process's namespaces, so
// one setns call joins both at once (Linux 5.8+), atomically: no window where only one applies.
void join(pid_t target) {
  int pidfd = pidfd_open(target);
  if (pidfd < 0) die("pidfd_open " + std::to_string(target));
  if (setns(pidfd, CLONE_NEWPID | CLONE_NEWUTS) < 0)
    die("setns(pidfd of " + std::to_string(target) + ", CLONE_NEWPID|CLONE_NEWUTS)");
  close(pidfd);
  // The UTS namespace applies to us at once. The PID namespace does not: a process never
  // changes its PID, so only children forked from now on are born inside it.
}

struct FirstArgs {
  const char* hostname;
  int ready_fd;
};

// The first process, started by clone(CLONE_NEWPID | CLONE_NEWUTS): PID 1 of its namespace.
int first_main(void* arg) {
  auto* a = static_cast<FirstArgs*>(arg);
  // If nsjoin dies, so does this: a demo must not leave a sleeper behind.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (sethostname(a->hostname, std::strlen(a->hostname)) < 0) die("sethostname");
  std::printf("first hostname=%s pid=%d host_pid=%s\n", hostname().c_str(), getpid(),
              nspid("self", false).c_str());
  std::fflush(stdout);
  if (write(a->ready_fd, "r", 1) != 1) die("write ready");
  close(a->ready_fd);
  for (;;) pause();  // keeps the namespaces alive until the demo kills us
}

int demo(const char* name) {
  std::printf("host hostname=%s pid=%d\n", hostname().c_str(), getpid());
  std::fflush(stdout);  // the clone copies our stdio buffers: empty them first

  int ready[2];
  if (pipe2(ready, O_CLOEXEC) < 0) die("pipe2");
  static char stack[64 * 1024];  // clone runs first_main on its own stack (no CLONE_VM: a copy)
  FirstArgs args{name, ready[1]};
  pid_t first =
      clone(first_main, stack + sizeof stack, CLONE_NEWPID | CLONE_NEWUTS | SIGCHLD, &args);
  if (first < 0) die("clone(CLONE_NEWPID|CLONE_NEWUTS)");
  close(ready[1]);
  char c;
  if (read(ready[0], &c, 1) != 1) {  // EOF: the first died before it was ready
    errno = ECHILD;
    die("first process did not start");
  }
  close(ready[0]);

  pid_t second = fork();
  if (second < 0) die("fork");
  if (second == 0) {
    join(first);
    pid_t inside = fork();  // born in the first's PID namespace
    if (inside < 0) die("fork after setns");
    if (inside == 0) {
      std::printf("second hostname=%s pid=%d host_pid=%s first_pid=%s\n", hostname().c_str(),
                  getpid(), nspid("self", false).c_str(),
                  nspid(std::to_string(first), true).c_str());
      std::fflush(stdout);
      std::_Exit(0);
    }
    std::_Exit(wait_exit(inside));
  }
  int rc = wait_exit(second);

  // PID 1 dying tears down its namespace (the kernel kills every process left in it).
  kill(first, SIGKILL);
  wait_exit(first);
  return rc;
}

int join_exec(pid_t target, char** argv) {
  join(target);
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    execvp(argv[0], argv);
    die(std::string("exec ") + argv[0]);
  }
  return wait_exit(child);
}

int usage() {
  std::fprintf(stderr, "usage: nsjoin demo [HOSTNAME]\n       nsjoin join PID -- CMD [ARG...]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "demo" && argc <= 3) return demo(argc == 3 ? argv[2] : "nsjoin-demo");
  if (mode == "join" && argc >= 5 && std::string(argv[3]) == "--") {
    char* end;
    long pid = std::strtol(argv[2], &end, 10);
    if (*end != '\0' || pid <= 0) return usage();
    return join_exec(static_cast<pid_t>(pid), argv + 4);
  }
  return usage();
}
