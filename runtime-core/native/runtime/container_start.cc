// start: releases a created container's init (waiting on exec.fifo) to execve.
#include <fcntl.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fd.h"
#include "runtime/container.h"

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
}

}  // namespace conductor
