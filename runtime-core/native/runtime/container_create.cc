// create: everything up to the container's execve. The runtime (parent) prepares the cgroup,
// the seccomp program and the state; the container's init (child, cloned into its new
// namespaces) joins the cgroup, builds its filesystem view, pivots into it and waits to be
// started. Every step's failure unwinds what was made: no process, cgroup, mount namespace or
// state directory is left behind by a failed create.
//
// Joining the cgroup without a grace period. Moving a process into a cgroup by pid
// (cgroup.procs) write-locks the kernel's cgroup_threadgroup_rwsem, and the first writer after a
// quiet spell waits for an RCU grace period: 5 to 15 ms here, the largest single cost of a
// create. Two ways in skip that lock: clone3(CLONE_INTO_CGROUP) (the cgroup2 hierarchy: the
// child is born inside), and a thread moving itself by writing "0" to a v1 hierarchy's `tasks`.
// So the cgroup is built, limits and all, before the clone; the init is cloned into the cgroup2
// one and moves itself into the v1 ones first thing, before any other step. When clone3 fails
// (a kernel without it or CLONE_INTO_CGROUP, a cgroup2 directory it refuses), the plain clone
// and the parent's cgroup.procs writes do the job, and report the kernel's reason if they fail.
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "cgroups/cgroups.h"
#include "common/error.h"
#include "common/fd.h"
#include "common/fs.h"
#include "runtime/container.h"
#include "runtime/hooks.h"
#include "runtime/rootfs.h"
#include "runtime/security.h"
#include "runtime/spec.h"

extern char** environ;

namespace conductor {

namespace {

// The device rules every container needs to use what setup_dev created (runc adds the same).
void add_default_device_rules(CgroupResources& res, const Spec& spec) {
  if (res.devices.empty()) return;
  auto allow = [&](char type, int64_t major, int64_t minor) {
    res.devices.push_back({true, type, major, minor, "rwm"});
  };
  allow('c', 1, 3);     // null
  allow('c', 1, 5);     // zero
  allow('c', 1, 7);     // full
  allow('c', 1, 8);     // random
  allow('c', 1, 9);     // urandom
  allow('c', 5, 0);     // tty
  allow('c', 5, 2);     // ptmx
  allow('c', 136, -1);  // pts/*
  for (const auto& d : spec.devices) {
    if (d.type == 'c' || d.type == 'b') allow(d.type, d.major, d.minor);
  }
}

// Joins the namespaces the spec names by path: a user namespace first (the others may belong
// to it), the mount namespace last (so the paths above still resolve in the runtime's).
void join_namespaces(const Spec& spec, bool include_pid) {
  std::vector<const NamespaceSpec*> order;
  if (const NamespaceSpec* u = spec.ns(CLONE_NEWUSER); u && !u->path.empty()) order.push_back(u);
  for (const auto& n : spec.namespaces)
    if (!n.path.empty() && n.flag != CLONE_NEWNS && n.flag != CLONE_NEWUSER &&
        (include_pid || n.flag != CLONE_NEWPID))
      order.push_back(&n);
  if (const NamespaceSpec* m = spec.ns(CLONE_NEWNS); m && !m->path.empty()) order.push_back(m);
  for (const auto* n : order) {
    UniqueFd fd(::open(n->path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throw_errno("linux.namespaces " + n->type + ": open `" + n->path + "`");
    if (::setns(fd.get(), n->flag) < 0)
      throw_errno("linux.namespaces " + n->type + ": setns `" + n->path + "`");
  }
}

struct InitArgs {
  const Spec* spec;
  const CgroupLayout* layout;
  const SeccompProgram* seccomp;
  Channel* channel;
  std::string id;
  std::string fifo;  // empty for `run`
  // v1 cgroup directories the init moves itself into (empty: the parent moved it).
  std::vector<std::string> join_v1;
};

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

// The kernel's struct clone_args up to `cgroup` (CLONE_ARGS_SIZE_VER2); glibc has no wrapper.
struct CloneArgs {
  uint64_t flags = 0, pidfd = 0, child_tid = 0, parent_tid = 0, exit_signal = 0, stack = 0,
           stack_size = 0, tls = 0, set_tid = 0, set_tid_size = 0, cgroup = 0;
};

// clone3 without a new stack (fork semantics) into `cgroup_fd` (when >= 0). -1 with errno.
pid_t clone_into_cgroup(unsigned long flags, int cgroup_fd) {
#ifdef SYS_clone3
  CloneArgs args;
  args.flags = flags & ~static_cast<unsigned long>(CSIGNAL);
  args.exit_signal = flags & CSIGNAL;
  if (cgroup_fd >= 0) {
    args.flags |= CLONE_INTO_CGROUP;
    args.cgroup = static_cast<uint64_t>(cgroup_fd);
  }
  return static_cast<pid_t>(::syscall(SYS_clone3, &args, sizeof args));
#else
  (void)flags;
  (void)cgroup_fd;
  errno = ENOSYS;
  return -1;
#endif
}

// The init's first step: this single-threaded process moves itself (as "0", the writing
// thread) into each v1 hierarchy, which takes no global lock.
void join_v1_cgroups(const std::vector<std::string>& dirs) {
  for (const auto& dir : dirs) {
    try {
      write_file(dir + "/tasks", "0");
    } catch (const Error& e) {
      throw e.wrap("join cgroup");
    }
  }
}

void wait_for_start(const InitArgs& a, int fifo_fd) {
  if (a.fifo.empty()) {
    a.channel->expect(Msg::kStart);
    return;
  }
  // A reader opened O_NONBLOCK before any writer sees no HUP: poll sleeps until `start` opens
  // the FIFO for writing and writes its byte.
  pollfd p{fifo_fd, POLLIN, 0};
  for (;;) {
    int n = ::poll(&p, 1, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("wait on exec.fifo");
    char b;
    ssize_t r = ::read(fifo_fd, &b, 1);
    if (r == 1) return;
    if (r < 0 && errno == EAGAIN) continue;
    if (r == 0) throw Error("exec.fifo closed without a start");
  }
}

// The init waits for GO — "you are in your cgroup" (on the fallback path the parent moves it
// in) — before anything that depends on it: a cgroup mount needs the cgroup's directories, and
// a new cgroup namespace must be rooted there.
// A new network namespace starts with `lo` down; processes expect 127.0.0.1 to work (probes,
// sidecar-style services), as Docker, podman and crun give them.
void bring_up_loopback() {
  UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock) throw_errno("socket for the loopback device");
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(sock.get(), SIOCGIFFLAGS, &ifr) < 0) throw_errno("SIOCGIFFLAGS lo");
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  if (::ioctl(sock.get(), SIOCSIFFLAGS, &ifr) < 0) throw_errno("bring up lo");
}

bool needs_cgroup_first(const Spec& spec) {
  for (const auto& m : spec.mounts)
    if (m.type == "cgroup" || m.type == "cgroup2") return true;
  return false;
}

bool has_idmapped_mounts(const Spec& spec) {
  for (const auto& m : spec.mounts)
    if (m.idmap) return true;
  return false;
}

// GO, and before it the idmapped trees when the spec has idmapped mounts (by mount index).
void receive_go(const InitArgs& a, std::map<size_t, UniqueFd>& idmapped) {
  if (has_idmapped_mounts(*a.spec)) {
    auto fds = a.channel->expect_fds(Msg::kIdmapped);
    size_t k = 0;
    for (size_t i = 0; i < a.spec->mounts.size(); ++i) {
      if (!a.spec->mounts[i].idmap) continue;
      if (k >= fds.size()) throw Error("IDMAPPED carried fewer trees than idmapped mounts");
      idmapped.emplace(i, std::move(fds[k++]));
    }
  }
  a.channel->expect(Msg::kGo);
}

void enter_cgroup(const InitArgs& a, bool go_received, std::map<size_t, UniqueFd>& idmapped) {
  if (!go_received) receive_go(a, idmapped);
  if (a.spec->has_new_ns(CLONE_NEWCGROUP) && ::unshare(CLONE_NEWCGROUP) < 0)
    throw_errno("unshare the cgroup namespace");
}

pid_t own_host_pid() {
  char buf[32];
  ssize_t n = ::readlink("/proc/self", buf, sizeof buf - 1);
  if (n <= 0) return ::getpid();
  buf[n] = 0;
  return static_cast<pid_t>(std::atoi(buf));
}

// Whether the container has a mount namespace of its own (new, or joined by path). Without
// one, load_spec has refused anything that would mount; the rootfs is only chroot'ed into.
bool has_mount_ns(const Spec& spec) { return spec.ns(CLONE_NEWNS) != nullptr; }

[[noreturn]] void init_main(const InitArgs& a) {
  const Spec& spec = *a.spec;
  bool started = false;
  try {
    // In a new user namespace the init can do nothing until the parent has written its id
    // maps (and, as it cannot write the host's cgroup files, joined it to its cgroup): GO.
    bool go_received = false;
    std::map<size_t, UniqueFd> idmapped;
    if (spec.has_new_ns(CLONE_NEWUSER)) {
      receive_go(a, idmapped);
      go_received = true;
    }
    // Before anything else, while the host's /sys/fs/cgroup is what the paths name.
    join_v1_cgroups(a.join_v1);
    // The hooks run in here are told the init's pid as the host sees it (the spec's state
    // pid): /proc is still the runtime's, whose /proc/self names it so.
    pid_t host_pid = own_host_pid();
    join_namespaces(spec, false);
    if (spec.has_new_ns(CLONE_NEWNET)) bring_up_loopback();
    if (spec.hostname && ::sethostname(spec.hostname->c_str(), spec.hostname->size()) < 0)
      throw_errno("sethostname `" + *spec.hostname + "`");
    UniqueFd fifo;
    if (!a.fifo.empty()) {
      fifo.reset(::open(a.fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
      if (!fifo) throw_errno("open `" + a.fifo + "`");
    }
    // The parent's GO is read first when HOOKS follows: the messages must come in order.
    bool parent_hooks = spec.hooks.run_by_runtime_at_create();
    bool cgroup_first = needs_cgroup_first(spec) || parent_hooks || has_idmapped_mounts(spec);
    if (cgroup_first) enter_cgroup(a, go_received, idmapped);
    // prestart and createRuntime run in the parent (the runtime's namespaces) while the init
    // waits, createContainer here (the container's): after the mounts, before pivot_root.
    auto before_pivot = [&] {
      if (parent_hooks) {
        a.channel->send(Msg::kHooks);
        a.channel->expect(Msg::kHooksDone);
      }
      run_hooks(spec.hooks.create_container, "createContainer",
                hook_state(a.id, "creating", host_pid, spec.bundle, spec.annotations));
    };
    if (has_mount_ns(spec)) {
      setup_rootfs(spec, *a.layout, before_pivot, idmapped);
      finish_rootfs(spec);
    } else {
      before_pivot();
      if (::chroot(spec.root_path.c_str()) < 0 || ::chdir("/") < 0)
        throw_errno("chroot `" + spec.root_path + "`");
      finish_rootfs(spec);  // sysctls only: the rest needs a mount namespace
    }
    if (!cgroup_first) enter_cgroup(a, go_received, idmapped);
    const Process& p = spec.process;
    mkdir_p(p.cwd, 0755);
    if (::chdir(p.cwd.c_str()) < 0) throw_errno("process.cwd: chdir `" + p.cwd + "`");
    std::string exe = find_executable(p);
    if (::setsid() < 0) throw_errno("setsid");
    // Everything that can fail is done before the init reports READY, so a failure is create's
    // (runc and crun do the same): only startContainer hooks and the execve itself are left
    // for start.
    apply_rlimits(p);
    if (p.capabilities) drop_bounding(*p.capabilities);
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it while we have it.
    if (!p.no_new_privileges) load_seccomp(*a.seccomp);
    set_user(p);
    if (p.capabilities) apply_capabilities(*p.capabilities);
    if (p.no_new_privileges && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
      throw_errno("prctl(PR_SET_NO_NEW_PRIVS)");
    if (p.umask) ::umask(*p.umask);
    // From here the container outlives the runtime that created it.
    ::prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
    a.channel->send(Msg::kReady);
    wait_for_start(a, fifo.get());
    started = true;
    // The FIFO stays open until the execve closes it (O_CLOEXEC): `start` waits for that, so its
    // poststart hooks run once the process is the container's, as the spec orders them.
    run_hooks(spec.hooks.start_container, "startContainer",
              hook_state(a.id, "created", host_pid, spec.bundle, spec.annotations));
    // With no_new_privs the filter goes last, so it need not allow what the steps above use.
    if (p.no_new_privileges) load_seccomp(*a.seccomp);
    std::vector<char*> argv, envp;
    for (const auto& s : p.args) argv.push_back(const_cast<char*>(s.c_str()));
    argv.push_back(nullptr);
    for (const auto& s : p.env) envp.push_back(const_cast<char*>(s.c_str()));
    envp.push_back(nullptr);
    ::execve(exe.c_str(), argv.data(), envp.data());
    throw_errno("exec `" + exe + "`");
  } catch (const std::exception& e) {
    if (started && a.fifo.size()) {
      // `create` has exited: the container's stderr is the only place left to say why.
      std::string msg = std::string("conductor-runtime: ") + e.what() + "\n";
      ssize_t ignored = ::write(2, msg.data(), msg.size());
      (void)ignored;
      ::_exit(127);
    }
    a.channel->send_error(e);
    ::_exit(1);
  }
}

}  // namespace

Created container_create(const GlobalOptions& g, const CreateOptions& o) {
  validate_id(o.id);
  Spec spec = load_spec(o.bundle, o.id);
  for (const auto& w : spec.warnings) log_message(g, "warning", w);
  CgroupLayout layout = CgroupLayout::detect();
  if (layout.mode == CgroupMode::V2) {
    // cgroup v2 has no file for these: ignored with a warning, as crun does.
    if (spec.resources.memory_swappiness) {
      log_message(g, "warning", "linux.resources.memory.swappiness ignored: not on cgroup v2");
      spec.resources.memory_swappiness.reset();
    }
    bool leaf = spec.resources.blkio_leaf_weight.has_value();
    for (auto& d : spec.resources.blkio_weight_devices) {
      leaf = leaf || d.leaf_weight;
      d.leaf_weight.reset();
    }
    if (leaf) {
      log_message(g, "warning", "linux.resources.blockIO leaf weights ignored: not on cgroup v2");
      spec.resources.blkio_leaf_weight.reset();
    }
    if (spec.resources.memory_disable_oom_killer) {
      log_message(g, "warning",
                  "linux.resources.memory.disableOOMKiller ignored: not on cgroup v2");
      spec.resources.memory_disable_oom_killer = false;
    }
  }
  Cgroup cgroup(layout, spec.cgroups_path);
  SeccompProgram seccomp;
  if (spec.seccomp) seccomp = compile_seccomp(*spec.seccomp, g.root + "/.seccomp-cache");

  StateStore store(g.root);
  store.create_dir(o.id);
  pid_t child = -1;
  bool cgroup_made = false;
  try {
    std::string fifo;
    if (!o.for_run) {
      fifo = store.fifo(o.id);
      if (::mkfifo(fifo.c_str(), 0600) < 0) throw_errno("mkfifo `" + fifo + "`");
    }
    Channel parent, child_side;
    Channel::pair(parent, child_side);
    // A joined pid namespace applies to children: enter it here, before the clone.
    if (const NamespaceSpec* pidns = spec.ns(CLONE_NEWPID); pidns && !pidns->path.empty()) {
      UniqueFd fd(::open(pidns->path.c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd || ::setns(fd.get(), CLONE_NEWPID) < 0)
        throw_errno("linux.namespaces pid: join `" + pidns->path + "`");
    }
    unsigned long flags = SIGCHLD;
    for (const auto& n : spec.namespaces)
      if (n.path.empty() && n.flag != CLONE_NEWCGROUP) flags |= static_cast<unsigned long>(n.flag);

    // The whole cgroup, limits included, exists before the init does (see the top of the file).
    CgroupResources res = spec.resources;
    add_default_device_rules(res, spec);
    cgroup.create(res, 0);  // on failure it removes what it made, and only that
    cgroup_made = true;
    UniqueFd cgroup2;
    if (!layout.unified.empty()) {
      std::string dir = layout.unified + spec.cgroups_path;
      cgroup2.reset(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
      if (!cgroup2) throw_errno("cgroup " + spec.cgroups_path + ": open `" + dir + "`");
    }
    InitArgs args{&spec, &layout, &seccomp, &child_side, o.id, fifo, {}};
    for (const auto& d : cgroup.dirs())
      if (layout.unified.empty() || d != layout.unified + spec.cgroups_path)
        args.join_v1.push_back(d);
    // Without a new stack both clones behave as fork, into new namespaces in one step.
    // A new user namespace's init cannot write the host's cgroup files: the parent moves it.
    bool userns = spec.has_new_ns(CLONE_NEWUSER);
    bool parent_joins = userns;
    if (userns) args.join_v1.clear();
    child = clone_into_cgroup(flags, cgroup2.get());
    if (child < 0) {
      parent_joins = true;
      args.join_v1.clear();
      child = static_cast<pid_t>(::syscall(SYS_clone, flags, nullptr, nullptr, nullptr, nullptr));
    }
    if (child < 0) throw_errno("clone the container's init");
    if (child == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
      parent.close();
      init_main(args);
    }
    child_side.close();
    cgroup2.reset();
    // The maps of the init's new user namespace, before it does anything that needs them.
    if (userns) write_id_maps(child, spec.uid_mappings, spec.gid_mappings, "linux.");
    if (parent_joins) cgroup.add_process(child);
    send_idmapped_trees(spec, child, parent);
    if (spec.process.oom_score_adj)
      write_file("/proc/" + std::to_string(child) + "/oom_score_adj",
                 std::to_string(*spec.process.oom_score_adj));
    try {
      parent.send(Msg::kGo);
    } catch (const Error&) {
      // The init failed while we built its cgroup: its ERROR is queued; report that instead.
      parent.expect(Msg::kReady);
      throw;
    }
    if (spec.hooks.run_by_runtime_at_create()) {
      // The init has made its mounts and waits before pivot_root. prestart is given status
      // `created`, as crun gives it (and the validation suite checks), createRuntime
      // `creating`, as the spec says.
      parent.expect(Msg::kHooks);
      run_hooks(spec.hooks.prestart, "prestart",
                hook_state(o.id, "created", child, spec.bundle, spec.annotations));
      run_hooks(spec.hooks.create_runtime, "createRuntime",
                hook_state(o.id, "creating", child, spec.bundle, spec.annotations));
      parent.send(Msg::kHooksDone);
    }
    parent.expect(Msg::kReady);

    Created out;
    ContainerState& s = out.state;
    s.id = o.id;
    s.bundle = spec.bundle;
    s.cgroups_path = spec.cgroups_path;
    s.created = now_rfc3339();
    s.pid = child;
    s.pid_start_time = process_start_time(child);
    for (const auto& n : spec.namespaces) s.namespaces.push_back(n.type);
    s.annotations = spec.annotations;
    s.poststart = spec.hooks.poststart;
    s.poststop = spec.hooks.poststop;
    store.save(s);
    if (!o.pid_file.empty()) write_file_atomic(o.pid_file, std::to_string(child), 0644);
    out.channel = std::move(parent);
    return out;
  } catch (const std::exception& e) {
    // Unwind in reverse; a cleanup failure is reported with, never instead of, the cause.
    std::string also;
    if (child > 0) {
      ::kill(child, SIGKILL);
      ::waitpid(child, nullptr, 0);
    }
    try {
      if (cgroup_made) cgroup.destroy();
    } catch (const Error& ce) {
      also += std::string("; cleanup: ") + ce.what();
    }
    try {
      store.remove(o.id);
    } catch (const Error& ce) {
      also += std::string("; cleanup: ") + ce.what();
    }
    // The spec's lifecycle after a failing create-time hook: destroy, then poststop — which can
    // undo what the hooks before the failure set up (networking, say). Warnings only.
    if (spec.hooks.run_at_create()) {
      for (const auto& w : run_hooks_warning(
               spec.hooks.poststop, "poststop",
               hook_state(o.id, "stopped", child > 0 ? child : 0, spec.bundle, spec.annotations)))
        log_message(g, "warning", w);
    }
    const auto* ce = dynamic_cast<const Error*>(&e);
    throw Error::preformatted(std::string(e.what()) + also, ce ? ce->code() : 0);
  }
}

}  // namespace conductor
