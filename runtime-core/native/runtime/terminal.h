// Terminals for `exec --tty`: a pty allocated inside the container (its devpts instance), the
// process on the slave as its controlling terminal, and the runtime relaying between its own
// stdio and the master — what `docker exec -it` does through containerd, here in one process.
#pragma once

#include <sys/types.h>

#include "common/fd.h"

namespace conductor {

struct Pty {
  UniqueFd master, slave;
};

// Opens /dev/ptmx as the caller currently sees it (call after joining the container's mount
// namespace) and the matching slave through TIOCGPTPEER, never by path.
Pty open_pty_in_container();
// In the child: new session, the slave as controlling terminal and as stdin/stdout/stderr.
void become_terminal_child(int slave);
// In the runtime: relays stdin → master and master → stdout until `child` exits; the user's
// terminal is put in raw mode (and restored), window size changes are passed on. Returns the
// child's exit status as a shell reports it.
int relay_terminal(int master, pid_t child);

}  // namespace conductor
