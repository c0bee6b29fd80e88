// mountOverlay(opts) and unmount(target, opts): a container's rootfs is an overlay of its
// image layers (read-only lowers, first = top, as overlayfs's lowerdir) under its own upper.
//
// Options: none beyond lowerdir/upperdir/workdir. No nodev/nosuid: rootfs images carry device
// nodes and setuid binaries the container is entitled to; the runtime restricts what the
// container can do with them. index and xino stay at the kernel's defaults (off here, see
// /sys/module/overlay/parameters): index=on only helps hard links copied up across layers and
// NFS export, and it ties an upper to the lowers it was first mounted with (ESTALE) and to one
// mount at a time (EBUSY) — a controller restarted after a crash must be able to remount it.
#include <sys/mount.h>
#include <unistd.h>

#include <vector>

#include "addon/addon.h"
#include "common/fd.h"

namespace conductor::addon {

namespace {

struct OverlaySpec {
  std::vector<std::string> lower;
  std::string upper, work, target;
  bool readonly = false;
};

// ':' separates lowerdir entries and ',' separates options; '\' is overlayfs's escape. A path
// holding one would silently name other directories, so it is refused, naming the field.
void check_path(const std::string& field, const std::string& path) {
  auto fail = [&](const std::string& why) {
    throw Error("mountOverlay: " + field + " `" + path + "` " + why, EINVAL);
  };
  if (path.empty() || path[0] != '/') fail("is not an absolute path");
  for (char c : path) {
    if (c == ':' || c == ',' || c == '\\') fail(std::string("contains '") + c + "'");
    if (c == '\0') fail("contains a NUL byte");
  }
}

void validate(const OverlaySpec& s) {
  if (s.lower.empty()) throw Error("mountOverlay: lower must name at least one layer", EINVAL);
  for (size_t i = 0; i < s.lower.size(); i++)
    check_path("lower[" + std::to_string(i) + "]", s.lower[i]);
  check_path("upper", s.upper);
  check_path("work", s.work);
  check_path("target", s.target);
}

std::string join_lower(const std::vector<std::string>& lower) {
  std::string out;
  for (const auto& l : lower) out += (out.empty() ? "" : ":") + l;
  return out;
}

// The fs context explains failures ("e overlayfs: failed to resolve '/x': -2"): read them
// all so the error says more than EINVAL.
std::string context_log(int fsfd) {
  std::string log;
  char buf[1024];
  for (;;) {
    ssize_t n = ::read(fsfd, buf, sizeof buf);
    if (n <= 0) break;
    log += (log.empty() ? "" : "; ") + std::string(buf, static_cast<size_t>(n));
  }
  return log;
}

// The new mount API, for layer lists too long for mount(2)'s one page of options: lowerdir+
// (Linux 6.8+) adds one layer per call, top first.
void mount_with_fsconfig(const OverlaySpec& s) {
  UniqueFd fs(::fsopen("overlay", FSOPEN_CLOEXEC));
  if (!fs) throw_errno("fsopen(overlay)");
  auto fail = [&](const std::string& what, int err) {
    std::string log = context_log(fs.get());
    throw Error(what + (log.empty() ? "" : " [" + log + "]"), err);
  };
  for (size_t i = 0; i < s.lower.size(); i++) {
    if (::fsconfig(fs.get(), FSCONFIG_SET_STRING, "lowerdir+", s.lower[i].c_str(), 0) < 0) {
      int e = errno;
      if (e == EINVAL && i == 0)
        fail("fsconfig(lowerdir+): this kernel lacks lowerdir+ (Linux 6.8+), and " +
                 std::to_string(s.lower.size()) + " layers do not fit mount(2)'s options",
             e);
      fail("fsconfig(lowerdir+, `" + s.lower[i] + "`)", e);
    }
  }
  if (::fsconfig(fs.get(), FSCONFIG_SET_STRING, "upperdir", s.upper.c_str(), 0) < 0)
    fail("fsconfig(upperdir, `" + s.upper + "`)", errno);
  if (::fsconfig(fs.get(), FSCONFIG_SET_STRING, "workdir", s.work.c_str(), 0) < 0)
    fail("fsconfig(workdir, `" + s.work + "`)", errno);
  if (::fsconfig(fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) < 0)
    fail("fsconfig(CMD_CREATE) overlay for `" + s.target + "`", errno);
  UniqueFd mnt(::fsmount(fs.get(), FSMOUNT_CLOEXEC, s.readonly ? MOUNT_ATTR_RDONLY : 0));
  if (!mnt) fail("fsmount overlay for `" + s.target + "`", errno);
  if (::move_mount(mnt.get(), "", AT_FDCWD, s.target.c_str(), MOVE_MOUNT_F_EMPTY_PATH) < 0)
    throw_errno("move_mount overlay to `" + s.target + "`");
}

void mount_overlay(const OverlaySpec& s) {
  validate(s);
  std::string opts =
      "lowerdir=" + join_lower(s.lower) + ",upperdir=" + s.upper + ",workdir=" + s.work;
  // mount(2) copies at most one page of options (the NUL included) and truncates the rest.
  if (opts.size() + 1 > static_cast<size_t>(::sysconf(_SC_PAGESIZE))) {
    mount_with_fsconfig(s);
    return;
  }
  unsigned long flags = s.readonly ? MS_RDONLY : 0;
  if (::mount("overlay", s.target.c_str(), "overlay", flags, opts.c_str()) < 0)
    throw_errno("mount overlay on `" + s.target + "` (" + opts + ")");
}

std::vector<std::string> string_array(Napi::Value v, const std::string& what) {
  if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), what + " must be an array of strings");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<std::string> out;
  for (uint32_t i = 0; i < a.Length(); i++)
    out.push_back(string_arg(a.Get(i), what + "[" + std::to_string(i) + "]"));
  return out;
}

}  // namespace

void register_mounts(Napi::Env env, Napi::Object exports) {
  exports.Set("mountOverlay", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
                if (!info[0].IsObject())
                  throw Napi::TypeError::New(info.Env(), "mountOverlay: options must be an object");
                Napi::Object o = info[0].As<Napi::Object>();
                OverlaySpec s;
                s.lower = string_array(o.Get("lower"), "mountOverlay: lower");
                s.upper = string_arg(o.Get("upper"), "mountOverlay: upper");
                s.work = string_arg(o.Get("work"), "mountOverlay: work");
                s.target = string_arg(o.Get("target"), "mountOverlay: target");
                s.readonly = o.Get("readonly").ToBoolean().Value();
                return PromiseWorker<Done>::start(
                    info.Env(), "conductor.mountOverlay",
                    [s]() {
                      mount_overlay(s);
                      return Done{};
                    },
                    [](Napi::Env env, const Done&) { return env.Undefined(); });
              }));

  exports.Set("unmount", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
                std::string target = string_arg(info[0], "unmount: target");
                if (target.empty() || target[0] != '/')
                  throw Napi::TypeError::New(info.Env(),
                                             "unmount: target `" + target + "` is not absolute");
                bool detach = info[1].IsObject() &&
                              info[1].As<Napi::Object>().Get("detach").ToBoolean().Value();
                return PromiseWorker<Done>::start(
                    info.Env(), "conductor.unmount",
                    [target, detach]() {
                      // NOFOLLOW: a symlink planted at the target must not redirect the unmount.
                      int flags = UMOUNT_NOFOLLOW | (detach ? MNT_DETACH : 0);
                      if (::umount2(target.c_str(), flags) < 0)
                        throw_errno("umount2 `" + target + "`" + (detach ? " (detach)" : ""));
                      return Done{};
                    },
                    [](Napi::Env env, const Done&) { return env.Undefined(); });
              }));
}

}  // namespace conductor::addon
