// nsInodes(pid): the namespaces a process is in, as /proc/PID/ns/* links ("pid:[4026531836]").
// Two processes share a namespace exactly when the links match — how tests prove that exec
// joined every namespace of a container.
//
// netnsCreate(path) / netnsRemove(path): a persistent network namespace bound at a path, as
// `ip netns add|del` makes one (iproute2's netns_add: the directory a shared mount point so the
// bind propagates to other mount namespaces, an empty file, a bind mount of a new namespace on
// it) without spawning ip (about 8 ms a container here). The new namespace is made by a thread
// of its own that unshares and then exits, so no thread of Node's pool is ever left in it.
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <thread>

#include "addon/addon.h"
#include "common/fd.h"

namespace conductor::addon {

namespace {

const char* const kKinds[] = {"pid", "uts", "ipc", "mnt", "net", "cgroup"};

std::string read_link(const std::string& path) {
  char buf[PATH_MAX];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
  if (n < 0) throw_errno("readlink `" + path + "`");
  return std::string(buf, static_cast<size_t>(n));
}

std::string parent_of(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Absolute, no empty, "." or ".." component: the path is created and mounted on as root.
void check_netns_path(const std::string& fn, const std::string& path) {
  bool ok = path.size() > 1 && path[0] == '/' && path.find('\0') == std::string::npos;
  for (size_t i = 1; ok && i <= path.size();) {
    size_t end = path.find('/', i);
    if (end == std::string::npos) end = path.size();
    std::string part = path.substr(i, end - i);
    ok = !part.empty() && part != "." && part != "..";
    i = end + 1;
  }
  if (!ok) throw Error(fn + ": `" + path + "` is not an absolute path of plain names", EINVAL);
}

// The directory as a shared mount point (a bind of itself the first time), as iproute2 does.
void shared_mount_point(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) < 0 && errno != EEXIST) throw_errno("mkdir `" + dir + "`");
  bool bound = false;
  while (::mount("", dir.c_str(), "none", MS_SHARED | MS_REC, nullptr) < 0) {
    if (errno != EINVAL || bound) throw_errno("mount --make-rshared `" + dir + "`");
    if (::mount(dir.c_str(), dir.c_str(), "none", MS_BIND | MS_REC, nullptr) < 0)
      throw_errno("mount --rbind `" + dir + "` on itself");
    bound = true;
  }
}

void netns_create(const std::string& path) {
  check_netns_path("netnsCreate", path);
  shared_mount_point(parent_of(path));
  {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0));
    if (!fd) throw_errno("create `" + path + "`");
  }
  int err = 0;
  const char* what = "";
  std::thread maker([&]() {
    if (::unshare(CLONE_NEWNET) < 0) {
      err = errno;
      what = "unshare(CLONE_NEWNET)";
    } else if (::mount("/proc/thread-self/ns/net", path.c_str(), "none", MS_BIND, nullptr) < 0) {
      err = errno;
      what = "bind mount of the new namespace";
    }
  });  // The thread ends here, and its namespace lives on only through the bind mount.
  maker.join();
  if (err != 0) {
    ::unlink(path.c_str());
    throw Error(std::string("netnsCreate `") + path + "`: " + what, err);
  }
}

void netns_remove(const std::string& path) {
  check_netns_path("netnsRemove", path);
  if (::umount2(path.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL &&
      errno != ENOENT)
    throw_errno("umount2 `" + path + "`");
  if (::unlink(path.c_str()) < 0 && errno != ENOENT) throw_errno("unlink `" + path + "`");
}

// NAME(path) → a promise settled when Fn(path) has run on Node's thread pool.
template <void (*Fn)(const std::string&)>
Napi::Function path_function(Napi::Env env, const char* name) {
  return Napi::Function::New(env, [name](const Napi::CallbackInfo& info) {
    std::string path = string_arg(info[0], std::string(name) + ": path");
    return PromiseWorker<Done>::start(
        info.Env(), name,
        [path]() {
          Fn(path);
          return Done{};
        },
        [](Napi::Env e, const Done&) { return e.Undefined(); });
  });
}

}  // namespace

void register_namespaces(Napi::Env env, Napi::Object exports) {
  exports.Set("nsInodes", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
                pid_t pid = pid_arg(info, 0, "nsInodes");
                return guarded(info.Env(), [&]() -> Napi::Value {
                  Napi::Object o = Napi::Object::New(info.Env());
                  for (const char* kind : kKinds) {
                    std::string link =
                        read_link("/proc/" + std::to_string(pid) + "/ns/" + std::string(kind));
                    o.Set(kind, Napi::String::New(info.Env(), link));
                  }
                  return o;
                });
              }));

  exports.Set("netnsCreate", path_function<netns_create>(env, "netnsCreate"));
  exports.Set("netnsRemove", path_function<netns_remove>(env, "netnsRemove"));
}

}  // namespace conductor::addon
