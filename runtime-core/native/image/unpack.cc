// The layer unpacker: see unpack.h for the contract. The approach is containerd's
// archive/tar.go and moby's pkg/archive (clean names, refuse breakouts, overlay whiteouts,
// directory times last), with the path checks done by the kernel: every parent directory is
// opened with openat2 under RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS, so no string prefix test
// stands between an archive and the host.
#include "image/unpack.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <vector>

#include "common/error.h"
#include "common/fd.h"

namespace conductor::image {

namespace {

constexpr uint64_t kResolve =
    RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
constexpr const char* kWhiteout = ".wh.";
constexpr const char* kWhiteoutMeta = ".wh..wh.";  // aufs bookkeeping (.wh..wh.plnk, ...)
constexpr const char* kOpaque = ".wh..wh..opq";

int openat2_fd(int dirfd, const std::string& path, int flags, uint64_t resolve) {
  struct open_how how = {};
  how.flags = static_cast<uint64_t>(flags);
  how.resolve = resolve;
  for (;;) {
    int fd = static_cast<int>(::syscall(SYS_openat2, dirfd, path.c_str(), &how, sizeof how));
    // EAGAIN: a concurrent rename elsewhere on the system made the kernel retry-safe check fail.
    if (fd < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    return fd;
  }
}

// A refusal: the message is complete as it is; `err` (when set) becomes the JS error's code.
Error refused(const std::string& message, int err = 0) { return Error::preformatted(message, err); }

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

std::string join(const std::vector<std::string>& c, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; i++) out += (i ? "/" : "") + c[i];
  return out;
}

// Splits an archive name into components, dropping "" and "." (so "./a//b/" is a/b). Names
// that could point outside the layer are refused, never rewritten.
std::vector<std::string> clean(const std::string& name, const std::string& what) {
  if (name.empty()) throw refused(what + " is empty");
  if (name.find('\0') != std::string::npos) throw refused(what + " holds a NUL byte");
  if (name[0] == '/') throw refused(what + " is an absolute path");
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= name.size()) {
    size_t slash = name.find('/', pos);
    if (slash == std::string::npos) slash = name.size();
    std::string part = name.substr(pos, slash - pos);
    pos = slash + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") throw refused(what + " leaves the layer");
    out.push_back(part);
  }
  return out;
}

// A DIR* on a duplicate of `fd` (closedir closes the duplicate only).
DIR* open_dir(int fd, const std::string& what) {
  int dfd = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dfd < 0) throw_errno(what);
  DIR* d = ::fdopendir(dfd);
  if (!d) {
    int err = errno;
    ::close(dfd);
    throw Error(what, err);
  }
  return d;
}

timespec mtime_of(const TarEntry& e) {
  return timespec{static_cast<time_t>(e.mtime_sec), e.mtime_nsec};
}

class Unpacker {
 public:
  Unpacker(UniqueFd root, TarReader& tar) : root_(std::move(root)), tar_(tar), buf_(256 * 1024) {}

  UnpackResult run() {
    while (auto e = tar_.next()) {
      try {
        apply(*e);
      } catch (const Error& err) {
        throw err.wrap("layer entry " + quote_name(e->name));
      }
    }
    tar_.drain();
    set_dir_times();
    return result_;
  }

 private:
  void apply(const TarEntry& e) {
    std::vector<std::string> c = clean(e.name, "path");
    for (size_t i = 0; i < c.size(); i++) {
      // aufs's own bookkeeping files are not content (moby and containerd skip them too).
      if (starts_with(c[i], kWhiteoutMeta) && c[i] != kOpaque) return;
      if (i + 1 < c.size() && starts_with(c[i], kWhiteout))
        throw refused("a whiteout name (.wh.) as a parent directory");
    }
    result_.entries++;
    if (!c.empty() && starts_with(c.back(), kWhiteout)) return whiteout(c);
    if (c.empty()) {
      // "./": the layer's root directory itself; its metadata is the merged root's.
      if (e.type != '5') throw refused("the layer root is not a directory");
      UniqueFd fd = reopen_root();
      set_owner_mode(fd.get(), e, true);
      dir_times_[""] = mtime_of(e);
      return;
    }
    switch (e.type) {
      case '0':
        return regular(e, c);
      case '1':
        return hardlink(e, c);
      case '2':
        return symlink(e, c);
      case '5':
        return directory(e, c);
      case '6':
        return fifo(e, c);
      case '3':
      case '4':
        throw refused("device nodes are refused (only whiteouts become devices)", EPERM);
      default:
        throw refused(std::string("unsupported entry type '") + e.type + "'", ENOTSUP);
    }
  }

  UniqueFd reopen_root() {
    UniqueFd fd(::openat(root_.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) throw_errno("open the layer root");
    return fd;
  }

  // The directory holding c[n-1] (the first n components), never through a symlink. With
  // `create`, missing directories are made (0755, as tar and containerd do for parents the
  // archive does not list). Errors name the component at fault.
  UniqueFd open_parent(const std::vector<std::string>& c, size_t n, bool create,
                       const std::string& what = "parent") {
    if (n == 0) return reopen_root();
    UniqueFd fd(openat2_fd(root_.get(), join(c, n), O_RDONLY | O_DIRECTORY | O_CLOEXEC, kResolve));
    if (fd) return fd;
    // Slow path: one component at a time, to create what is missing or say what is wrong.
    UniqueFd cur = reopen_root();
    for (size_t i = 0; i < n; i++) {
      UniqueFd next(openat2_fd(cur.get(), c[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC, kResolve));
      if (!next && errno == ENOENT && create) {
        if (::mkdirat(cur.get(), c[i].c_str(), 0700) < 0 && errno != EEXIST)
          throw_errno("create " + what + " \"" + join(c, i + 1) + "\"");
        next.reset(openat2_fd(cur.get(), c[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC, kResolve));
        // Exactly 0755 root:root, whatever the umask or a setgid parent would give.
        if (next &&
            (::fchown(next.get(), ::geteuid(), ::getegid()) < 0 || ::fchmod(next.get(), 0755) < 0))
          throw_errno("set owner and mode of " + what + " \"" + join(c, i + 1) + "\"");
      }
      if (!next) {
        int err = errno;
        std::string p = "\"" + join(c, i + 1) + "\"";
        if (err == ELOOP)
          throw refused(what + " " + p + " is a symlink (paths through symlinks are refused)",
                        ELOOP);
        if (err == ENOTDIR) throw refused(what + " " + p + " is not a directory", ENOTDIR);
        if (err == EXDEV) throw refused(what + " " + p + " is a mount point", EXDEV);
        if (err == ENOENT) throw refused(what + " " + p + " does not exist", ENOENT);
        throw Error("open " + what + " " + p, err);
      }
      cur = std::move(next);
    }
    return cur;
  }

  // Makes room at `name` in `parent`. An existing directory stays when `keep_dir` (a directory
  // entry over a directory merges, as tar does); anything else there is removed.
  bool clear(int parent, const std::string& name, const std::string& key, bool keep_dir) {
    struct stat st;
    if (::fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
      if (errno == ENOENT) return false;
      throw_errno("stat the existing \"" + key + "\"");
    }
    if (S_ISDIR(st.st_mode)) {
      if (keep_dir) return true;
      remove_tree(parent, name);
      forget_dirs(key);
    } else if (::unlinkat(parent, name.c_str(), 0) < 0) {
      throw_errno("remove the existing \"" + key + "\"");
    }
    return false;
  }

  // rm -r relative to a directory fd, never following symlinks.
  void remove_tree(int parent, const std::string& name) {
    UniqueFd fd(::openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) throw_errno("open \"" + name + "\" to remove it");
    std::vector<std::pair<std::string, bool>> children;
    {
      DIR* d = open_dir(fd.get(), "read directory \"" + name + "\"");
      while (dirent* de = ::readdir(d)) {
        std::string n = de->d_name;
        if (n == "." || n == "..") continue;
        struct stat st;
        bool is_dir =
            ::fstatat(fd.get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
        children.emplace_back(n, is_dir);
      }
      ::closedir(d);
    }
    for (const auto& [n, is_dir] : children) {
      if (is_dir)
        remove_tree(fd.get(), n);
      else if (::unlinkat(fd.get(), n.c_str(), 0) < 0)
        throw_errno("remove \"" + n + "\"");
    }
    if (::unlinkat(parent, name.c_str(), AT_REMOVEDIR) < 0) throw_errno("remove \"" + name + "\"");
  }

  // A removed directory's recorded time (and those below it) no longer applies.
  void forget_dirs(const std::string& key) {
    dir_times_.erase(key);
    // Keys below `key` sort between "key/" and "key0" ('0' follows '/').
    dir_times_.erase(dir_times_.lower_bound(key + "/"), dir_times_.lower_bound(key + "0"));
  }

  void set_owner_mode(int fd, const TarEntry& e, bool xattrs) {
    // chown before chmod: chown clears setuid/setgid on files.
    if (::fchown(fd, e.uid, e.gid) < 0)
      throw_errno("chown to " + std::to_string(e.uid) + ":" + std::to_string(e.gid));
    if (::fchmod(fd, e.mode) < 0) throw_errno("chmod");
    if (!xattrs) return;
    for (const auto& [k, v] : e.xattrs) {
      if (!starts_with(k, "user.") && k != "security.capability") continue;
      if (::fsetxattr(fd, k.c_str(), v.data(), v.size(), 0) < 0) throw_errno("set xattr " + k);
    }
  }

  void set_times(int fd, const TarEntry& e) {
    timespec ts[2] = {mtime_of(e), mtime_of(e)};
    if (::futimens(fd, ts) < 0) throw_errno("set times");
  }

  void regular(const TarEntry& e, const std::vector<std::string>& c) {
    UniqueFd parent = open_parent(c, c.size() - 1, true);
    const std::string& name = c.back();
    clear(parent.get(), name, join(c, c.size()), false);
    UniqueFd fd(::openat(parent.get(), name.c_str(),
                         O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) throw_errno("create file");
    for (;;) {
      size_t n = tar_.read_data(buf_.data(), buf_.size());
      if (n == 0) break;
      for (size_t off = 0; off < n;) {
        ssize_t w = ::write(fd.get(), buf_.data() + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) throw_errno("write file");
        off += static_cast<size_t>(w);
      }
      result_.bytes += n;
    }
    set_owner_mode(fd.get(), e, true);
    set_times(fd.get(), e);
  }

  void directory(const TarEntry& e, const std::vector<std::string>& c) {
    UniqueFd parent = open_parent(c, c.size() - 1, true);
    const std::string& name = c.back();
    std::string key = join(c, c.size());
    if (!clear(parent.get(), name, key, true) && ::mkdirat(parent.get(), name.c_str(), 0700) < 0)
      throw_errno("create directory");
    UniqueFd fd(
        ::openat(parent.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) throw_errno("open directory");
    set_owner_mode(fd.get(), e, true);
    dir_times_[key] = mtime_of(e);  // set at the end: creating children changes it
  }

  void symlink(const TarEntry& e, const std::vector<std::string>& c) {
    // Any target is fine (absolute ones are normal): it is resolved inside the container at
    // run time, and this unpacker never follows a link it created.
    if (e.linkname.empty()) throw refused("symlink with an empty target");
    if (e.linkname.find('\0') != std::string::npos)
      throw refused("symlink target holds a NUL byte");
    UniqueFd parent = open_parent(c, c.size() - 1, true);
    const std::string& name = c.back();
    clear(parent.get(), name, join(c, c.size()), false);
    if (::symlinkat(e.linkname.c_str(), parent.get(), name.c_str()) < 0)
      throw_errno("create symlink");
    if (::fchownat(parent.get(), name.c_str(), e.uid, e.gid, AT_SYMLINK_NOFOLLOW) < 0)
      throw_errno("chown symlink");
    timespec ts[2] = {mtime_of(e), mtime_of(e)};
    if (::utimensat(parent.get(), name.c_str(), ts, AT_SYMLINK_NOFOLLOW) < 0)
      throw_errno("set symlink times");
  }

  void hardlink(const TarEntry& e, const std::vector<std::string>& c) {
    std::string what = "hardlink target " + quote_name(e.linkname);
    std::vector<std::string> t = clean(e.linkname, what);
    if (t.empty()) throw refused(what + " is the layer root");
    std::string key = join(c, c.size()), tkey = join(t, t.size());
    if (key == tkey) return;  // a link to itself: already there
    UniqueFd tparent = open_parent(t, t.size() - 1, false, what + ": parent");
    struct stat st;
    if (::fstatat(tparent.get(), t.back().c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
      if (errno == ENOENT) throw refused(what + " is not in the layer", ENOENT);
      throw_errno("stat " + what);
    }
    if (S_ISDIR(st.st_mode)) throw refused(what + " is a directory", EPERM);
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) throw refused(what + " is a device", EPERM);
    UniqueFd parent = open_parent(c, c.size() - 1, true);
    clear(parent.get(), c.back(), key, false);
    // flags 0: linkat does not follow a symlink named as the target (it links the symlink).
    if (::linkat(tparent.get(), t.back().c_str(), parent.get(), c.back().c_str(), 0) < 0) {
      if (errno == ENOENT) throw refused(what + " is not in the layer", ENOENT);
      throw_errno("create hardlink");
    }
  }

  void fifo(const TarEntry& e, const std::vector<std::string>& c) {
    UniqueFd parent = open_parent(c, c.size() - 1, true);
    const std::string& name = c.back();
    clear(parent.get(), name, join(c, c.size()), false);
    if (::mknodat(parent.get(), name.c_str(), S_IFIFO | 0600, 0) < 0) throw_errno("create fifo");
    // Opening for reading without blocking needs no writer; O_NOFOLLOW pins what was made.
    UniqueFd fd(
        ::openat(parent.get(), name.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) throw_errno("open fifo");
    set_owner_mode(fd.get(), e, false);
    set_times(fd.get(), e);
  }

  void whiteout(const std::vector<std::string>& c) {
    const std::string& base = c.back();
    UniqueFd parent = open_parent(c, c.size() - 1, true);
    if (base == kOpaque) {
      // The directory hides everything below it in lower layers (overlayfs opaque dir).
      if (::fsetxattr(parent.get(), "trusted.overlay.opaque", "y", 1, 0) < 0)
        throw_errno("set trusted.overlay.opaque on \"" + join(c, c.size() - 1) + "\"");
      return;
    }
    std::string victim = base.substr(std::strlen(kWhiteout));
    if (victim.empty() || victim == "." || victim == "..")
      throw refused("whiteout of an invalid name", EINVAL);
    std::vector<std::string> vc(c.begin(), c.end() - 1);
    vc.push_back(victim);
    clear(parent.get(), victim, join(vc, vc.size()), false);
    // overlayfs's whiteout: a character device 0/0 hides the name in lower layers.
    if (::mknodat(parent.get(), victim.c_str(), S_IFCHR | 0, makedev(0, 0)) < 0)
      throw_errno("create whiteout \"" + victim + "\"");
  }

  void set_dir_times() {
    for (const auto& [key, ts] : dir_times_) {
      UniqueFd fd = key.empty()
                        ? reopen_root()
                        : UniqueFd(openat2_fd(root_.get(), key, O_RDONLY | O_DIRECTORY | O_CLOEXEC,
                                              kResolve));
      if (!fd) throw_errno("layer: open directory \"" + key + "\" to set its times");
      timespec both[2] = {ts, ts};
      if (::futimens(fd.get(), both) < 0) throw_errno("layer: set times of \"" + key + "\"");
    }
  }

  UniqueFd root_;
  TarReader& tar_;
  std::vector<char> buf_;
  std::map<std::string, timespec> dir_times_;  // "" = the layer root
  UnpackResult result_;
};

}  // namespace

UnpackResult unpack_layer(const std::string& archive, const std::string& target,
                          Compression compression) {
  UniqueFd root(::open(target.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!root) throw_errno("unpackLayer: open target `" + target + "`");
  {
    DIR* d = open_dir(root.get(), "unpackLayer: read target `" + target + "`");
    bool empty = true;
    while (dirent* de = ::readdir(d)) {
      std::string n = de->d_name;
      if (n != "." && n != "..") empty = false;
    }
    ::closedir(d);
    if (!empty) throw Error("unpackLayer: target `" + target + "` is not empty", ENOTEMPTY);
  }
  std::unique_ptr<ByteSource> src = open_archive(archive, compression);
  // The uncompressed stream's digest is the layer's diff_id: the caller checks it against the
  // image config, so a layer cannot pass itself off as another (layers are stored by it).
  HashingSource hashed(*src);
  TarReader tar(hashed);
  try {
    UnpackResult r = Unpacker(std::move(root), tar).run();
    r.diff_id = hashed.digest();
    return r;
  } catch (const Error& e) {
    if (starts_with(e.what(), "layer")) throw;
    throw e.wrap("layer `" + archive + "`");
  }
}

}  // namespace conductor::image
