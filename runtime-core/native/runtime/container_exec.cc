// exec: a new process inside a running container: the container's cgroup, every namespace it
// has (one setns through a pidfd, atomically), its capabilities, no_new_privs and seccomp
// filter from the bundle's config unless overridden.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>

#include "cgroups/cgroups.h"
#include "common/error.h"
#include "common/fd.h"
#include "common/fs.h"
#include "runtime/container.h"
#include "runtime/security.h"
#include "runtime/spec.h"
#include "runtime/terminal.h"

namespace conductor {

namespace {

const std::map<std::string, int> kNsFlags = {{"pid", CLONE_NEWPID},  {"network", CLONE_NEWNET},
                                             {"mount", CLONE_NEWNS}, {"ipc", CLONE_NEWIPC},
                                             {"uts", CLONE_NEWUTS},  {"cgroup", CLONE_NEWCGROUP}};

void apply_user_flag(Process& p, const std::string& user) {
  size_t colon = user.find(':');
  try {
    p.uid = static_cast<uid_t>(std::stoul(user.substr(0, colon)));
    p.gid = colon == std::string::npos ? 0 : static_cast<gid_t>(std::stoul(user.substr(colon + 1)));
  } catch (const std::exception&) {
    throw Error("--user `" + user + "`: must be UID[:GID] (numbers)");
  }
  p.additional_gids.clear();
}

void set_env(std::vector<std::string>& env, const std::string& kv) {
  if (kv.find('=') == std::string::npos || kv[0] == '=')
    throw Error("--env `" + kv + "`: must be NAME=VALUE");
  std::string name = kv.substr(0, kv.find('=') + 1);
  for (auto& e : env) {
    if (e.rfind(name, 0) == 0) {
      e = kv;
      return;
    }
  }
  env.push_back(kv);
}

}  // namespace

int container_exec(const GlobalOptions& g, const ExecOptions& o) {
  StateStore store(g.root);
  ContainerState s = store.load(o.id);
  Spec spec = load_spec(s.bundle, o.id);
  Process p = spec.process;
  if (!o.process_file.empty()) {
    p = parse_process(read_file(o.process_file), o.process_file);
  } else {
    if (o.args.empty()) throw Error("exec: name a command after the container id");
    p.args = o.args;
  }
  for (const auto& kv : o.env) set_env(p.env, kv);
  if (!o.cwd.empty()) p.cwd = o.cwd;
  if (!o.user.empty()) apply_user_flag(p, o.user);
  SeccompProgram seccomp;
  if (spec.seccomp) seccomp = compile_seccomp(*spec.seccomp, g.root + "/.seccomp-cache");

  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, s.pid, 0)));
  if (!pidfd || store.status(s) != "running")
    throw Error("container `" + o.id + "` is not running", ESRCH);
  UniqueFd pid_file;
  if (!o.pid_file.empty()) {
    pid_file.reset(::open(o.pid_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!pid_file) throw_errno("open --pid-file `" + o.pid_file + "`");
  }
  // Host paths first: after setns(mount) "/" is the container's root.
  Cgroup(CgroupLayout::detect(), s.cgroups_path).add_process(::getpid());
  int flags = 0;
  for (const auto& t : s.namespaces) {
    auto it = kNsFlags.find(t);
    if (it != kNsFlags.end()) flags |= it->second;
  }
  if (flags && ::setns(pidfd.get(), flags) < 0) throw_errno("setns into container `" + o.id + "`");

  Pty pty;
  if (o.tty) {
    if (o.detach) throw Error("exec: --tty and --detach cannot be combined");
    pty = open_pty_in_container();
  }
  Channel parent, child_side;
  Channel::pair(parent, child_side);
  pid_t child = ::fork();  // the pid namespace applies from this child on
  if (child < 0) throw_errno("fork");
  if (child == 0) {
    parent.close();
    try {
      if (o.tty) {
        pty.master.reset();
        become_terminal_child(pty.slave.release());
      }
      if (::chdir(p.cwd.c_str()) < 0) throw_errno("cwd: chdir `" + p.cwd + "`");
      std::string exe = find_executable(p);
      apply_rlimits(p);
      if (p.capabilities) drop_bounding(*p.capabilities);
      if (!p.no_new_privileges) load_seccomp(seccomp);
      set_user(p);
      if (p.capabilities) apply_capabilities(*p.capabilities);
      if (p.no_new_privileges && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        throw_errno("prctl(PR_SET_NO_NEW_PRIVS)");
      if (p.no_new_privileges) load_seccomp(seccomp);
      std::vector<char*> argv, envp;
      for (const auto& a : p.args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      for (const auto& e : p.env) envp.push_back(const_cast<char*>(e.c_str()));
      envp.push_back(nullptr);
      ::execve(exe.c_str(), argv.data(), envp.data());
      throw_errno("exec `" + exe + "`");
    } catch (const std::exception& e) {
      child_side.send_error(e);
      ::_exit(126);
    }
  }
  child_side.close();
  try {
    parent.expect_closed();
  } catch (const std::exception&) {
    ::waitpid(child, nullptr, 0);
    throw;
  }
  if (pid_file) {
    std::string pid = std::to_string(child);
    if (::write(pid_file.get(), pid.data(), pid.size()) < 0) throw_errno("write --pid-file");
  }
  if (o.detach) return 0;
  if (o.tty) {
    pty.slave.reset();
    return relay_terminal(pty.master.get(), child);
  }
  return wait_forwarding_signals(child);
}

}  // namespace conductor
