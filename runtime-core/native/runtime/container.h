// The verbs of the OCI runtime command line; one file each (container_<verb>.cc).
#pragma once

#include <string>
#include <vector>

#include "runtime/channel.h"
#include "runtime/state.h"

namespace conductor {

struct GlobalOptions {
  std::string root = "/run/conductor-runtime";
  std::string log;                  // --log FILE: where the runtime's own errors go
  std::string log_format = "text";  // text | json
};

// The runtime's own messages: to stderr, and with --log to that file too (text or json lines,
// as runc writes them). `level` is "error" or "warning".
void log_message(const GlobalOptions& g, const std::string& level, const std::string& msg);

struct CreateOptions {
  std::string id, bundle = ".", pid_file;
  // `run`: the init waits on the channel for START instead of exec.fifo.
  bool for_run = false;
};

struct Created {
  ContainerState state;
  Channel channel;  // parent side; for_run only
};

Created container_create(const GlobalOptions& g, const CreateOptions& o);
void container_start(const GlobalOptions& g, const std::string& id);
// poststart hooks (start and run): failures are logged as warnings.
void run_poststart(const GlobalOptions& g, const ContainerState& s);
int container_run(const GlobalOptions& g, const CreateOptions& o, bool detach);
void container_state(const GlobalOptions& g, const std::string& id);
void container_kill(const GlobalOptions& g, const std::string& id, int sig, bool all);
void container_delete(const GlobalOptions& g, const std::string& id, bool force);

struct ExecOptions {
  std::string id, process_file, cwd, user, pid_file;
  std::vector<std::string> env, args;
  bool detach = false;
  bool tty = false;  // a pty inside the container, relayed by the runtime
};
int container_exec(const GlobalOptions& g, const ExecOptions& o);
void container_list(const GlobalOptions& g, const std::string& format);
// The runtime-spec's features document (features.md): what this runtime and host support.
void container_features();

// Shared by run and exec: waits for `pid`, forwarding the usual termination signals to it,
// and returns its exit status the way a shell reports it (128+N for signal N).
int wait_forwarding_signals(pid_t pid);
void forward_signals_to(pid_t pid);
// Removes what a stopped (or force-killed) container left: its cgroup and state directory.
void cleanup_container(const GlobalOptions& g, const ContainerState& s);

}  // namespace conductor
