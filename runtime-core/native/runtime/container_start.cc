// start: releases a created container's init (waiting on exec.fifo) to execve.
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fd.h"
#include "runtime/container.h"
#include "runtime/hooks.h"

namespace conductor {

void container_start(const GlobalOptions& g, const std::string& id) {
  StateStore store(g.root);
  ContainerState s = store.load(id);
  std::string status = store.status(s);
  if (status != "created") throw Error("container `" + id + "` cannot be started: it is " + status);
  UniqueFd fifo(::open(store.fifo(id).c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
  if (!fifo) {
    if (errno == ENXIO) throw Error("container `" + id + "`: its init is not waiting to start");
    throw_errno("open `" + store.fifo(id) + "`");
  }
  if (::write(fifo.get(), "0", 1) != 1) throw_errno("write `" + store.fifo(id) + "`");
  ::unlink(store.fifo(id).c_str());
  // The init holds the FIFO's read end until its execve (close-on-exec) or its exit: the
  // writer sees POLLERR once no reader is left. Then the process runs (or is gone).
  pollfd p{fifo.get(), 0, 0};
  while (::poll(&p, 1, -1) < 0 && errno == EINTR) {
  }
  run_poststart(g, s);
}

void run_poststart(const GlobalOptions& g, const ContainerState& s) {
  for (const auto& w : run_hooks_warning(
           s.poststart, "poststart", hook_state(s.id, "running", s.pid, s.bundle, s.annotations)))
    log_message(g, "warning", w);
}

}  // namespace conductor
