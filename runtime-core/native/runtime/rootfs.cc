#include "runtime/rootfs.h"

#include <fcntl.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <sstream>

#include "common/error.h"
#include "common/fd.h"
#include "common/fs.h"

namespace conductor {

namespace {

std::string fd_path(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

int openat2_in_root(int rootfd, const std::string& rel, int flags) {
  open_how how{};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  return static_cast<int>(::syscall(SYS_openat2, rootfd, rel.c_str(), &how, sizeof how));
}

std::vector<std::string> components(const std::string& path) {
  std::vector<std::string> out;
  std::istringstream in(path);
  std::string part;
  while (std::getline(in, part, '/')) {
    if (part.empty() || part == ".") continue;
    out.push_back(part);
  }
  return out;
}

// Opens (O_PATH) `path` inside the root, creating missing directories on the way and the last
// component as a directory or, for `as_file`, an empty file (a bind target for a file). A
// dangling symlink on the way is followed inside the root and its target created, as runc's
// securejoin does: the mount lands inside the rootfs, never on the host.
UniqueFd ensure_in_root(int rootfd, const std::string& path, bool as_file, int depth = 0) {
  if (depth > 40) throw Error("path `" + path + "`: too many levels of symbolic links", ELOOP);
  auto parts = components(path);
  std::string rel = ".";
  for (size_t i = 0; i < parts.size(); ++i) {
    if (parts[i] == "..") throw Error("path `" + path + "` must not contain `..`");
    std::string next = rel + "/" + parts[i];
    bool last = i + 1 == parts.size();
    UniqueFd fd(openat2_in_root(rootfd, next, O_PATH));
    if (!fd && errno == ENOENT) {
      UniqueFd parent(openat2_in_root(rootfd, rel, O_PATH | O_DIRECTORY));
      if (!parent) throw_errno("open `" + rel.substr(1) + "` in the rootfs");
      char link[4096];
      ssize_t n = ::readlinkat(parent.get(), parts[i].c_str(), link, sizeof link - 1);
      if (n > 0) {
        link[n] = 0;
        std::string target = link[0] == '/' ? std::string(link) : rel.substr(1) + "/" + link;
        for (size_t j = i + 1; j < parts.size(); ++j) target += "/" + parts[j];
        return ensure_in_root(rootfd, target, as_file, depth + 1);
      }
      if (last && as_file) {
        UniqueFd f(::openat(parent.get(), parts[i].c_str(),
                            O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644));
        if (!f && errno != EEXIST) throw_errno("create `" + path + "` in the rootfs");
      } else if (::mkdirat(parent.get(), parts[i].c_str(), 0755) < 0 && errno != EEXIST) {
        throw_errno("mkdir `" + next.substr(1) + "` in the rootfs");
      }
      fd.reset(openat2_in_root(rootfd, next, O_PATH));
    }
    if (!fd) throw_errno("open `" + next.substr(1) + "` in the rootfs");
    if (last) return fd;
    rel = next;
  }
  return UniqueFd(::dup(rootfd));
}

void do_mount(const std::string& src, const std::string& target, const char* type,
              unsigned long flags, const std::string& data, const std::string& shown) {
  if (::mount(src.empty() ? nullptr : src.c_str(), target.c_str(), type, flags,
              data.empty() ? nullptr : data.c_str()) < 0) {
    throw_errno(std::string("mount ") + (type ? type : "") + " `" + src + "` on `" + shown + "`" +
                (data.empty() ? "" : " (" + data + ")"));
  }
}

unsigned long existing_flags(const std::string& path) {
  struct statvfs sv;
  if (::statvfs(path.c_str(), &sv) < 0) return 0;
  unsigned long f = 0;
  if (sv.f_flag & ST_NOSUID) f |= MS_NOSUID;
  if (sv.f_flag & ST_NODEV) f |= MS_NODEV;
  if (sv.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
  return f;
}

}  // namespace

void write_id_maps(pid_t pid, const std::vector<IdMapping>& uids,
                   const std::vector<IdMapping>& gids, const std::string& field_prefix) {
  auto lines = [](const std::vector<IdMapping>& maps) {
    std::string out;
    for (const auto& x : maps)
      out += std::to_string(x.container_id) + " " + std::to_string(x.host_id) + " " +
             std::to_string(x.size) + "\n";
    return out;
  };
  std::string proc = "/proc/" + std::to_string(pid);
  try {
    write_file(proc + "/uid_map", lines(uids));
  } catch (const Error& e) {
    throw e.wrap(field_prefix + "uidMappings");
  }
  try {
    write_file(proc + "/gid_map", lines(gids));
  } catch (const Error& e) {
    throw e.wrap(field_prefix + "gidMappings");
  }
}

namespace {

std::string bind_source(const Mount& m, const std::string& bundle) {
  return m.source[0] == '/' ? m.source : bundle + "/" + m.source;
}

// A user namespace with `m`'s maps, held by a child that waits on a pipe: its ns fd outlives
// the child, which is killed and reaped before this returns.
UniqueFd idmap_userns(const Mount& m) {
  int sync[2];
  if (::pipe2(sync, O_CLOEXEC) < 0) throw_errno("pipe");
  UniqueFd rd(sync[0]), wr(sync[1]);
  pid_t child = static_cast<pid_t>(
      ::syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, nullptr, nullptr, nullptr, nullptr));
  if (child < 0) throw_errno("clone a user namespace for the idmap");
  if (child == 0) {
    wr.reset();
    char b;
    ssize_t ignored = ::read(rd.get(), &b, 1);  // until the parent is done with us
    (void)ignored;
    ::_exit(0);
  }
  rd.reset();
  bool reaped = false;
  auto reap = [&] {
    if (reaped) return;
    reaped = true;
    wr.reset();
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
  };
  try {
    write_id_maps(child, m.uid_mappings, m.gid_mappings, "");
    std::string proc = "/proc/" + std::to_string(child);
    UniqueFd ns(::open((proc + "/ns/user").c_str(), O_RDONLY | O_CLOEXEC));
    if (!ns) throw_errno("open " + proc + "/ns/user");
    reap();
    return ns;
  } catch (...) {
    reap();
    throw;
  }
}

void bind_mount(const Mount& m, const std::string& bundle, int rootfd, int idmapped) {
  std::string src = bind_source(m, bundle);
  struct stat st;
  if (::stat(src.c_str(), &st) < 0) throw_errno("bind mount source `" + src + "`");
  UniqueFd target = ensure_in_root(rootfd, m.destination, !S_ISDIR(st.st_mode));
  std::string t = fd_path(target.get());
  if (idmapped >= 0) {
    // Onto the target fd itself: through its /proc/self/fd path move_mount says EINVAL.
    if (::syscall(SYS_move_mount, idmapped, "", target.get(), "",
                  MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
      throw_errno("move the idmapped mount `" + src + "` to `" + m.destination + "`");
  } else {
    do_mount(src, t, nullptr, MS_BIND | (m.recursive ? MS_REC : 0), "", m.destination);
  }
  unsigned long want = m.flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME |
                                  MS_NODIRATIME | MS_RELATIME | MS_STRICTATIME);
  // A bind mount takes its flags only on a remount; keep the flags the source mount already
  // had (nosuid, nodev, noexec) unless the spec clears them explicitly.
  unsigned long keep = existing_flags(src) & ~m.clear_flags;
  if (want || keep) {
    // Re-open: the mount now covers the target, so the old O_PATH fd is beneath it.
    UniqueFd mounted = ensure_in_root(rootfd, m.destination, !S_ISDIR(st.st_mode));
    do_mount("", fd_path(mounted.get()), nullptr, MS_REMOUNT | MS_BIND | want | keep, "",
             m.destination);
    if (m.recursive && (want & MS_RDONLY)) {
      // rbind + ro: make every submount read-only too (mount_setattr, Linux 5.12).
      mount_attr attr{};
      attr.attr_set = MOUNT_ATTR_RDONLY;
      if (::syscall(SYS_mount_setattr, mounted.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr,
                    sizeof attr) < 0)
        throw_errno("make `" + m.destination + "` read-only recursively");
    }
  }
  if (m.propagation) {
    UniqueFd mounted = ensure_in_root(rootfd, m.destination, !S_ISDIR(st.st_mode));
    do_mount("", fd_path(mounted.get()), nullptr, m.propagation, "", m.destination);
  }
}

// A "cgroup" mount: the container's own cgroup directories, read-only, at the destination.
// v2: the cgroup2 filesystem (inside a new cgroup namespace it shows the container's subtree).
// v1/hybrid: a tmpfs with one bind of the container's directory per hierarchy, as runc does.
void cgroup_mount(const Mount& m, const Spec& spec, const CgroupLayout& layout, int rootfd) {
  UniqueFd target = ensure_in_root(rootfd, m.destination, false);
  unsigned long ro = m.flags & MS_RDONLY;
  unsigned long base = MS_NOSUID | MS_NODEV | MS_NOEXEC;
  if (layout.mode == CgroupMode::V2) {
    if (spec.has_new_ns(CLONE_NEWCGROUP)) {
      do_mount("cgroup2", fd_path(target.get()), "cgroup2", base | ro, "", m.destination);
    } else {
      do_mount(layout.unified + spec.cgroups_path, fd_path(target.get()), nullptr, MS_BIND, "",
               m.destination);
      UniqueFd again = ensure_in_root(rootfd, m.destination, false);
      do_mount("", fd_path(again.get()), nullptr, MS_REMOUNT | MS_BIND | base | ro, "",
               m.destination);
    }
    return;
  }
  do_mount("tmpfs", fd_path(target.get()), "tmpfs", base, "mode=755", m.destination);
  std::set<std::string> done;
  std::vector<std::pair<std::string, std::string>> hierarchies;  // name under dest, host dir
  for (const auto& [ctrl, mount] : layout.v1) {
    if (!done.insert(mount).second) continue;
    hierarchies.emplace_back(mount.substr(mount.rfind('/') + 1), mount + spec.cgroups_path);
  }
  if (!layout.unified.empty())
    hierarchies.emplace_back(layout.unified.substr(layout.unified.rfind('/') + 1),
                             layout.unified + spec.cgroups_path);
  for (const auto& [name, host] : hierarchies) {
    std::string dest = m.destination + "/" + name;
    UniqueFd t = ensure_in_root(rootfd, dest, false);
    do_mount(host, fd_path(t.get()), nullptr, MS_BIND, "", dest);
    UniqueFd again = ensure_in_root(rootfd, dest, false);
    do_mount("", fd_path(again.get()), nullptr, MS_REMOUNT | MS_BIND | base | ro, "", dest);
  }
  // Co-mounted controllers are reachable under each name (cpu → cpu,cpuacct), as on the host.
  for (const auto& [ctrl, mount] : layout.v1) {
    std::string name = mount.substr(mount.rfind('/') + 1);
    if (name == ctrl) continue;
    UniqueFd dir = ensure_in_root(rootfd, m.destination, false);
    ::symlinkat(name.c_str(), dir.get(), ctrl.c_str());
  }
  if (ro) {
    UniqueFd again = ensure_in_root(rootfd, m.destination, false);
    do_mount("", fd_path(again.get()), nullptr, MS_REMOUNT | base | MS_RDONLY, "", m.destination);
  }
}

struct DefaultDev {
  const char* name;
  int major, minor;
};
const DefaultDev kDefaultDevices[] = {{"null", 1, 3},   {"zero", 1, 5},    {"full", 1, 7},
                                      {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};

void make_device(int rootfd, const DeviceNode& d, bool in_user_namespace) {
  auto parts = components(d.path);
  std::string parent_path = "/";
  for (size_t i = 0; i + 1 < parts.size(); ++i) parent_path += parts[i] + "/";
  UniqueFd parent = ensure_in_root(rootfd, parent_path, false);
  const std::string& name = parts.back();
  mode_t type = d.type == 'b' ? S_IFBLK : d.type == 'p' ? S_IFIFO : S_IFCHR;
  ::unlinkat(parent.get(), name.c_str(), 0);
  // O_PATH directory fds do not work with mknodat on every kernel: use a real directory fd.
  UniqueFd dir(::openat(parent.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) throw_errno("open `" + parent_path + "`");
  if (::mknodat(dir.get(), name.c_str(), type | (d.file_mode & 07777),
                makedev(static_cast<unsigned>(d.major), static_cast<unsigned>(d.minor))) < 0) {
    // In a user namespace mknod is never allowed: bind the host's node instead, as runc does.
    if (errno != EPERM || !in_user_namespace) throw_errno("mknod `" + d.path + "`");
    UniqueFd f(::openat(dir.get(), name.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644));
    if (!f) throw_errno("create the bind target `" + d.path + "`");
    f.reset();
    UniqueFd target(::openat(dir.get(), name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!target) throw_errno("open `" + d.path + "`");
    do_mount(d.path, fd_path(target.get()), nullptr, MS_BIND, "", d.path);
    return;
  }
  if (::fchownat(dir.get(), name.c_str(), d.uid, d.gid, AT_SYMLINK_NOFOLLOW) < 0)
    throw_errno("chown `" + d.path + "`");
  if (::fchmodat(dir.get(), name.c_str(), d.file_mode & 07777, 0) < 0)
    throw_errno("chmod `" + d.path + "`");
}

void setup_dev(const Spec& spec, int rootfd) {
  bool userns = spec.ns(CLONE_NEWUSER) != nullptr;
  bool dev_mounted = false;
  for (const auto& m : spec.mounts) dev_mounted = dev_mounted || m.destination == "/dev";
  std::set<std::string> explicit_paths;
  for (const auto& d : spec.devices) explicit_paths.insert(d.path);
  if (dev_mounted) {
    for (const auto& dd : kDefaultDevices) {
      std::string path = std::string("/dev/") + dd.name;
      if (explicit_paths.count(path)) continue;
      make_device(rootfd, DeviceNode{path, 'c', dd.major, dd.minor, 0666, 0, 0}, userns);
    }
    UniqueFd dev = ensure_in_root(rootfd, "/dev", false);
    const std::pair<const char*, const char*> links[] = {
        {"/proc/self/fd", "fd"},       {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
        {"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"},         {"/proc/kcore", "core"}};
    for (const auto& [target, name] : links) {
      if (::symlinkat(target, dev.get(), name) < 0 && errno != EEXIST)
        throw_errno(std::string("symlink /dev/") + name);
    }
  }
  for (const auto& d : spec.devices) make_device(rootfd, d, userns);
}

void become_userns_root() {
  if (::setresgid(0, 0, 0) < 0) throw_errno("setgid 0 in the user namespace (is gid 0 mapped?)");
  if (::setresuid(0, 0, 0) < 0) throw_errno("setuid 0 in the user namespace (is uid 0 mapped?)");
}

// `rootfd` is the rootfs bind mount (O_PATH will do for fchdir): no path walk, so it works
// where the bundle's directories are closed to the container's root (a user namespace).
void pivot_into(int rootfd, const std::string& rootfs) {
  UniqueFd oldroot(::open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC));
  if (!oldroot) throw_errno("open /");
  if (::fchdir(rootfd) < 0) throw_errno("chdir `" + rootfs + "`");
  // pivot_root(".", "."): the old root is stacked under the new one and detached right away,
  // so no directory for it is needed inside the rootfs.
  if (::syscall(SYS_pivot_root, ".", ".") < 0) throw_errno("pivot_root `" + rootfs + "`");
  if (::fchdir(oldroot.get()) < 0) throw_errno("fchdir old root");
  if (::mount(nullptr, ".", nullptr, MS_SLAVE | MS_REC, nullptr) < 0)
    throw_errno("make the old root a slave");
  if (::umount2(".", MNT_DETACH) < 0) throw_errno("unmount the old root");
  if (::chdir("/") < 0) throw_errno("chdir /");
}

}  // namespace

void send_idmapped_trees(const Spec& spec, pid_t init, Channel& channel) {
  // The user namespaces that carry the maps are made here, where /proc names the helper.
  std::vector<size_t> which;
  std::vector<UniqueFd> usernses;
  for (size_t i = 0; i < spec.mounts.size(); ++i) {
    if (!spec.mounts[i].idmap) continue;
    try {
      usernses.push_back(idmap_userns(spec.mounts[i]));
    } catch (const Error& e) {
      throw e.wrap("mounts[" + std::to_string(i) + "] (" + spec.mounts[i].destination + ")");
    }
    which.push_back(i);
  }
  if (which.empty()) return;
  UniqueFd mntns(
      ::open(("/proc/" + std::to_string(init) + "/ns/mnt").c_str(), O_RDONLY | O_CLOEXEC));
  if (!mntns) throw_errno("open the container's mount namespace");
  int report[2];
  if (::pipe2(report, O_CLOEXEC) < 0) throw_errno("pipe");
  UniqueFd rd(report[0]), wr(report[1]);
  pid_t helper = ::fork();
  if (helper < 0) throw_errno("fork the idmap helper");
  if (helper == 0) {
    rd.reset();
    try {
      if (::setns(mntns.get(), CLONE_NEWNS) < 0)
        throw_errno("join the container's mount namespace");
      std::vector<UniqueFd> trees;
      std::vector<int> fds;
      for (size_t k = 0; k < which.size(); ++k) {
        const Mount& m = spec.mounts[which[k]];
        std::string where = "mounts[" + std::to_string(which[k]) + "] (" + m.destination + ")";
        std::string src = bind_source(m, spec.bundle);
        UniqueFd tree(static_cast<int>(
            ::syscall(SYS_open_tree, AT_FDCWD, src.c_str(),
                      OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (m.recursive ? AT_RECURSIVE : 0))));
        if (!tree) throw_errno(where + ": open_tree `" + src + "`");
        mount_attr attr{};
        attr.attr_set = MOUNT_ATTR_IDMAP;
        attr.userns_fd = static_cast<uint64_t>(usernses[k].get());
        if (::syscall(SYS_mount_setattr, tree.get(), "",
                      AT_EMPTY_PATH | (m.idmap_recursive ? AT_RECURSIVE : 0), &attr,
                      sizeof attr) < 0)
          throw_errno(where + ": idmap `" + src +
                      "` (does its filesystem support idmapped mounts?)");
        fds.push_back(tree.get());
        trees.push_back(std::move(tree));
      }
      channel.send_fds(Msg::kIdmapped, fds);
      ::_exit(0);
    } catch (const std::exception& e) {
      std::string msg = e.what();
      ssize_t ignored = ::write(wr.get(), msg.data(), msg.size());
      (void)ignored;
      ::_exit(1);
    }
  }
  wr.reset();
  std::string why;
  char buf[1024];
  for (ssize_t n; (n = ::read(rd.get(), buf, sizeof buf)) > 0;)
    why.append(buf, static_cast<size_t>(n));
  int status = 0;
  while (::waitpid(helper, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw Error(why.empty() ? "the idmap helper failed" : why);
}

void setup_rootfs(const Spec& spec, const CgroupLayout& layout,
                  const std::function<void()>& before_pivot,
                  const std::map<size_t, UniqueFd>& idmapped) {
  // While the container's mounts are made, nothing they do may reach the runtime's namespace:
  // / is a slave (or private, when the spec asks), whatever rootfsPropagation says. Shared or
  // unbindable is applied to the container's / after pivot_root, as runc does: set here, a
  // shared parent makes pivot_root fail with EINVAL and an unbindable one the rootfs bind.
  unsigned long asked = spec.rootfs_propagation & ~static_cast<unsigned long>(MS_REC);
  unsigned long prop =
      asked == MS_PRIVATE || asked == MS_SLAVE ? spec.rootfs_propagation : (MS_SLAVE | MS_REC);
  if (::mount(nullptr, "/", nullptr, prop, nullptr) < 0) throw_errno("set propagation of /");
  // pivot_root needs the new root to be a mount point.
  do_mount(spec.root_path, spec.root_path, nullptr, MS_BIND | MS_REC, "", spec.root_path);
  UniqueFd rootfd(::open(spec.root_path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!rootfd) throw_errno("open rootfs `" + spec.root_path + "`");
  // In a new user namespace the init is still the host's root (unmapped there): it could
  // reach the rootfs through the bundle's directories, but what it creates would have no owner
  // (EOVERFLOW). From here it is the namespace's root, as runc makes it, and works through
  // rootfd.
  if (spec.has_new_ns(CLONE_NEWUSER)) become_userns_root();
  for (size_t i = 0; i < spec.mounts.size(); ++i) {
    const Mount& m = spec.mounts[i];
    try {
      if (m.bind) {
        auto idm = idmapped.find(i);
        bind_mount(m, spec.bundle, rootfd.get(), idm == idmapped.end() ? -1 : idm->second.get());
      } else if (m.type == "cgroup" || m.type == "cgroup2") {
        cgroup_mount(m, spec, layout, rootfd.get());
      } else {
        UniqueFd target = ensure_in_root(rootfd.get(), m.destination, false);
        do_mount(m.source.empty() ? m.type : m.source, fd_path(target.get()), m.type.c_str(),
                 m.flags, m.data, m.destination);
        if (m.propagation) {
          UniqueFd again = ensure_in_root(rootfd.get(), m.destination, false);
          do_mount("", fd_path(again.get()), nullptr, m.propagation, "", m.destination);
        }
      }
    } catch (const Error& e) {
      throw e.wrap("mounts[" + std::to_string(i) + "] (" + m.destination + ")");
    }
  }
  mode_t old = ::umask(0);
  try {
    setup_dev(spec, rootfd.get());
  } catch (...) {
    ::umask(old);
    throw;
  }
  ::umask(old);
  before_pivot();
  pivot_into(rootfd.get(), spec.root_path);
  if (spec.rootfs_propagation &&
      ::mount(nullptr, "/", nullptr, spec.rootfs_propagation, nullptr) < 0)
    throw_errno("linux.rootfsPropagation: set the propagation of the container's /");
}

void finish_rootfs(const Spec& spec) {
  for (const auto& [key, value] : spec.sysctl) {
    std::string path = key;
    for (char& c : path) c = c == '.' ? '/' : c;
    try {
      write_file("/proc/sys/" + path, value);
    } catch (const Error& e) {
      throw e.wrap("linux.sysctl." + key);
    }
  }
  for (const auto& p : spec.masked_paths) {
    UniqueFd fd(::open(p.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) {
      if (errno == ENOENT) continue;
      throw_errno("linux.maskedPaths: open `" + p + "`");
    }
    struct stat st;
    if (::fstat(fd.get(), &st) < 0) throw_errno("linux.maskedPaths: stat `" + p + "`");
    if (S_ISDIR(st.st_mode)) {
      do_mount("tmpfs", fd_path(fd.get()), "tmpfs", MS_RDONLY, "size=0", p);
    } else {
      do_mount("/dev/null", fd_path(fd.get()), nullptr, MS_BIND, "", p);
    }
  }
  for (const auto& p : spec.readonly_paths) {
    UniqueFd fd(::open(p.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) {
      if (errno == ENOENT) continue;
      throw_errno("linux.readonlyPaths: open `" + p + "`");
    }
    do_mount(fd_path(fd.get()), fd_path(fd.get()), nullptr, MS_BIND | MS_REC, "", p);
    UniqueFd again(::open(p.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!again) throw_errno("linux.readonlyPaths: reopen `" + p + "`");
    do_mount("", fd_path(again.get()), nullptr,
             MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "", p);
  }
  if (spec.root_readonly) {
    if (::mount(nullptr, "/", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) < 0)
      throw_errno("root.readonly: remount / read-only");
  }
}

}  // namespace conductor
