// kill: a signal to the container's init (or, with --all, to every process in its cgroup),
// through a pidfd checked against the recorded start time, so a recycled pid is never hit.
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cgroups/cgroups.h"
#include "common/error.h"
#include "common/fd.h"
#include "runtime/container.h"
#include "runtime/spec.h"

namespace conductor {

void container_kill(const GlobalOptions& g, const std::string& id, int sig, bool all) {
  StateStore store(g.root);
  ContainerState s = store.load(id);
  if (all) {
    for (pid_t p : Cgroup(CgroupLayout::detect(), s.cgroups_path).pids()) ::kill(p, sig);
    return;
  }
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, s.pid, 0)));
  if (!pidfd || store.status(s) == "stopped")
    throw Error("container `" + id + "` is not running", ESRCH);
  if (::syscall(SYS_pidfd_send_signal, pidfd.get(), sig, nullptr, 0) < 0)
    throw_errno("kill container `" + id + "` with " + signal_name(sig));
}

}  // namespace conductor
