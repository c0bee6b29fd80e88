// run: create + start in one process. In the foreground the runtime stays the container's
// parent, forwards signals, returns its exit status and deletes it; with --detach it returns
// once the container runs.
#include <signal.h>
#include <sys/wait.h>

#include "cgroups/cgroups.h"
#include "common/error.h"
#include "runtime/container.h"
#include "runtime/hooks.h"

namespace conductor {

namespace {
volatile sig_atomic_t g_forward_pid = 0;
void forward(int sig) {
  if (g_forward_pid > 0) ::kill(g_forward_pid, sig);
}
}  // namespace

void forward_signals_to(pid_t pid) {
  g_forward_pid = pid;
  struct sigaction sa {};
  sa.sa_handler = forward;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH})
    ::sigaction(sig, &sa, nullptr);
}

int wait_forwarding_signals(pid_t pid) {
  forward_signals_to(pid);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw_errno("waitpid " + std::to_string(pid));
  }
  g_forward_pid = 0;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

void cleanup_container(const GlobalOptions& g, const ContainerState& s) {
  Cgroup(CgroupLayout::detect(), s.cgroups_path).destroy();
  StateStore(g.root).remove(s.id);
  // poststop: once the container is gone; a failure is a warning and the others still run.
  for (const auto& w : run_hooks_warning(
           s.poststop, "poststop", hook_state(s.id, "stopped", s.pid, s.bundle, s.annotations)))
    log_message(g, "warning", w);
}

int container_run(const GlobalOptions& g, const CreateOptions& o, bool detach) {
  CreateOptions opts = o;
  opts.for_run = true;
  Created c = container_create(g, opts);
  // Forward from before the start: a signal that arrives while the process execs must reach it
  // (or be ignored by it, as a PID 1 without a handler does), never kill the runtime.
  if (!detach) forward_signals_to(c.state.pid);
  try {
    c.channel.send(Msg::kStart);
    c.channel.expect_closed();
    run_poststart(g, c.state);
  } catch (const std::exception&) {
    ::kill(c.state.pid, SIGKILL);
    ::waitpid(c.state.pid, nullptr, 0);
    cleanup_container(g, c.state);
    throw;
  }
  if (detach) return 0;
  int code = wait_forwarding_signals(c.state.pid);
  cleanup_container(g, c.state);
  return code;
}

}  // namespace conductor
