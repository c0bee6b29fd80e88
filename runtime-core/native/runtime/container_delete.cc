// delete: removes a stopped container (cgroup, state). A created one is killed first, as runc
// does; a running one only with --force (SIGKILL to everything in its cgroup).
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cgroups/cgroups.h"
#include "common/error.h"
#include "common/fd.h"
#include "runtime/container.h"

namespace conductor {

void container_delete(const GlobalOptions& g, const std::string& id, bool force) {
  StateStore store(g.root);
  ContainerState s = store.load(id);
  std::string status = store.status(s);
  if (status == "running" && !force)
    throw Error("container `" + id + "` is running: stop it first, or delete --force");
  if (status != "stopped") {
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, s.pid, 0)));
    if (pidfd && store.status(s) != "stopped") {
      ::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
      pollfd p{pidfd.get(), POLLIN, 0};
      ::poll(&p, 1, 10000);
    }
  }
  cleanup_container(g, s);
}

}  // namespace conductor
