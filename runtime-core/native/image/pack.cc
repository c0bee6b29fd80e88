// The layer packer: see pack.h for the contract. The whiteout conversion is moby's
// overlayWhiteoutConverter (pkg/archive/archive_linux.go) in reverse of unpack.cc's; the walk
// holds a directory fd per level and reaches each entry by one name below it, so no path string
// is ever resolved by the kernel across a symlink.
#include "image/pack.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "common/error.h"
#include "common/fd.h"
#include "image/tar_writer.h"

namespace conductor::image {

namespace {

constexpr const char* kWhiteout = ".wh.";
constexpr const char* kOpaque = ".wh..wh..opq";
constexpr const char* kOverlayPrefix = "trusted.overlay.";

// overlayfs's own records on upper directories: how it tracks copy-ups and inode numbers, not
// content. Everything else under trusted.overlay. changes what the merged tree shows.
const std::set<std::string> kOverlayBookkeeping = {
    "trusted.overlay.origin", "trusted.overlay.impure", "trusted.overlay.nlink",
    "trusted.overlay.upper",  "trusted.overlay.uuid",
};

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

Error refused(const std::string& message, int err = EPERM) {
  return Error::preformatted(message, err);
}

std::vector<std::string> list_dir(int fd) {
  int dfd = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dfd < 0) throw_errno("dup directory fd");
  DIR* d = ::fdopendir(dfd);
  if (!d) {
    int err = errno;
    ::close(dfd);
    throw Error("read directory", err);
  }
  std::unique_ptr<DIR, int (*)(DIR*)> guard(d, ::closedir);
  std::vector<std::string> names;
  for (;;) {
    errno = 0;
    dirent* de = ::readdir(d);
    if (!de) {
      if (errno != 0) throw_errno("read directory");
      break;
    }
    std::string n = de->d_name;
    if (n != "." && n != "..") names.push_back(std::move(n));
  }
  // Byte order: the same directory always gives the same tar.
  std::sort(names.begin(), names.end());
  return names;
}

struct Xattrs {
  bool opaque = false;
  std::vector<std::pair<std::string, std::string>> carried;
};

std::string get_xattr(int fd, const std::string& name) {
  for (;;) {
    ssize_t n = ::fgetxattr(fd, name.c_str(), nullptr, 0);
    if (n < 0) throw_errno("read xattr " + name);
    std::string v(static_cast<size_t>(n), '\0');
    ssize_t m = ::fgetxattr(fd, name.c_str(), v.data(), v.size());
    if (m < 0 && errno == ERANGE) continue;  // it grew meanwhile
    if (m < 0) throw_errno("read xattr " + name);
    v.resize(static_cast<size_t>(m));
    return v;
  }
}

// The xattrs of an open file or directory, sorted into what a layer carries.
Xattrs read_xattrs(int fd) {
  Xattrs out;
  std::string list;
  for (;;) {
    ssize_t n = ::flistxattr(fd, nullptr, 0);
    if (n < 0 && errno == ENOTSUP) return out;
    if (n < 0) throw_errno("list xattrs");
    list.assign(static_cast<size_t>(n), '\0');
    ssize_t m = ::flistxattr(fd, list.data(), list.size());
    if (m < 0 && errno == ERANGE) continue;
    if (m < 0) throw_errno("list xattrs");
    list.resize(static_cast<size_t>(m));
    break;
  }
  std::vector<std::string> names;
  for (size_t pos = 0; pos < list.size();) {
    size_t end = list.find('\0', pos);
    if (end == std::string::npos) end = list.size();
    if (end > pos) names.emplace_back(list, pos, end - pos);
    pos = end + 1;
  }
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    if (name == "trusted.overlay.opaque") {
      std::string v = get_xattr(fd, name);
      if (v != "y")
        throw refused("trusted.overlay.opaque=" + quote_name(v) +
                          " is not an opaque directory (\"y\"): it cannot be written as a layer",
                      ENOTSUP);
      out.opaque = true;
    } else if (kOverlayBookkeeping.count(name)) {
      // not content
    } else if (starts_with(name, kOverlayPrefix)) {
      throw refused("xattr " + name +
                        ": overlayfs keeps this entry's content or name in another layer "
                        "(redirect_dir, metacopy or a whiteout of its own), which a tar cannot say",
                    ENOTSUP);
    } else if (starts_with(name, "user.") || name == "security.capability") {
      out.carried.emplace_back(name, get_xattr(fd, name));
    } else if (name == "security.selinux") {
      // The host's label, given again wherever the image runs (docker leaves it out too).
    } else {
      throw refused("xattr " + name +
                        " cannot be exported: Conductor's layers carry only user.* and "
                        "security.capability",
                    ENOTSUP);
    }
  }
  return out;
}

class Packer {
 public:
  Packer(UniqueFd root, TarWriter& tar) : root_(std::move(root)), tar_(tar), buf_(256 * 1024) {}

  PackResult run() {
    struct stat st;
    if (::fstat(root_.get(), &st) < 0) throw_errno("stat the layer root");
    dev_ = st.st_dev;
    Xattrs x;
    try {
      x = read_xattrs(root_.get());
    } catch (const Error& e) {
      throw e.wrap("the layer root");
    }
    if (x.opaque) opaque_marker("", st);
    walk(root_.get(), "");
    return result_;
  }

 private:
  void walk(int dirfd, const std::string& prefix) {
    std::vector<std::string> names;
    try {
      names = list_dir(dirfd);
    } catch (const Error& e) {
      throw e.wrap(prefix.empty() ? "the layer root" : "layer entry " + quote_name(prefix));
    }
    for (const std::string& name : names) {
      std::string path = prefix.empty() ? name : prefix + "/" + name;
      UniqueFd dir;
      try {
        dir = entry(dirfd, name, path);
      } catch (const Error& e) {
        throw e.wrap("layer entry " + quote_name(path));
      }
      if (dir) walk(dir.get(), path);
    }
  }

  // Writes one entry; for a directory, returns its fd for the walk to go on below it.
  UniqueFd entry(int dirfd, const std::string& name, const std::string& path) {
    struct stat st;
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) throw_errno("stat");
    if (st.st_dev != dev_)
      throw refused("is on another file system (a mount point in the layer)", EXDEV);
    bool whiteout = S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
    if (starts_with(name, kWhiteout))
      throw refused("a name starting with .wh. would read as a whiteout in a layer", EINVAL);

    TarHeader h;
    h.name = path;
    h.mode = st.st_mode & 07777;
    h.uid = st.st_uid;
    h.gid = st.st_gid;
    h.mtime_sec = st.st_mtim.tv_sec;
    h.mtime_nsec = st.st_mtim.tv_nsec;

    if (whiteout) {
      // overlayfs's whiteout (maybe a hardlink of the one in its work directory) becomes OCI's:
      // an empty file named .wh.NAME, mode 0, as moby writes it.
      size_t slash = path.rfind('/');
      h.name = (slash == std::string::npos ? "" : path.substr(0, slash + 1)) + kWhiteout + name;
      h.mode = 0;
      add(h);
      return {};
    }
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))
      throw refused(std::string("a device node (") + (S_ISCHR(st.st_mode) ? "c " : "b ") +
                    std::to_string(major(st.st_rdev)) + ":" + std::to_string(minor(st.st_rdev)) +
                    "): layers hold none (containers get their own /dev, and Conductor's import "
                    "refuses them)");
    if (S_ISSOCK(st.st_mode)) throw refused("a socket: a tar cannot hold one", ENOTSUP);

    if (S_ISDIR(st.st_mode)) {
      UniqueFd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!fd) throw_errno("open directory");
      same_inode(fd.get(), st);
      Xattrs x = read_xattrs(fd.get());
      h.type = '5';
      h.xattrs = std::move(x.carried);
      add(h);
      if (x.opaque) opaque_marker(path, st);
      return fd;
    }
    if (st.st_nlink > 1) {
      auto [it, fresh] = links_.emplace(std::make_pair(st.st_dev, st.st_ino), path);
      if (!fresh) {
        h.type = '1';
        h.linkname = it->second;
        add(h);
        return {};
      }
    }
    if (S_ISLNK(st.st_mode)) {
      // st_size is the target's length where the file system knows it (a bound, not trusted).
      std::string target(std::max<size_t>(static_cast<size_t>(st.st_size), 4096) + 1, '\0');
      ssize_t n = ::readlinkat(dirfd, name.c_str(), target.data(), target.size());
      if (n < 0) throw_errno("read symlink");
      if (static_cast<size_t>(n) >= target.size())
        throw refused("the symlink changed while it was read", EAGAIN);
      target.resize(static_cast<size_t>(n));
      h.type = '2';
      h.linkname = std::move(target);
      add(h);
      return {};
    }
    if (S_ISFIFO(st.st_mode)) {
      h.type = '6';
      add(h);
      return {};
    }
    if (!S_ISREG(st.st_mode)) throw refused("an unknown file type", ENOTSUP);
    regular(dirfd, name, st, h);
    return {};
  }

  void regular(int dirfd, const std::string& name, const struct stat& st, TarHeader& h) {
    // O_NONBLOCK: if a fifo took the file's place since the stat, opening it does not hang (and
    // same_inode refuses it).
    UniqueFd fd(
        ::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC));
    if (!fd) throw_errno("open file");
    same_inode(fd.get(), st);
    h.xattrs = read_xattrs(fd.get()).carried;
    h.type = '0';
    h.size = static_cast<uint64_t>(st.st_size);
    add(h);
    uint64_t left = h.size;
    while (left > 0) {
      ssize_t r = ::read(fd.get(), buf_.data(), std::min<uint64_t>(left, buf_.size()));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) throw_errno("read file");
      if (r == 0)
        throw refused("the file shrank while it was read (" + std::to_string(left) + " of its " +
                          std::to_string(h.size) + " bytes missing)",
                      EIO);
      tar_.data(buf_.data(), static_cast<size_t>(r));
      left -= static_cast<uint64_t>(r);
      result_.bytes += static_cast<uint64_t>(r);
    }
    char extra;
    ssize_t r;
    do r = ::read(fd.get(), &extra, 1);
    while (r < 0 && errno == EINTR);
    if (r > 0) throw refused("the file grew while it was read", EIO);
  }

  // DIR/.wh..wh..opq after an opaque directory: a regular file with the directory's owner and
  // permission bits, as moby writes it.
  void opaque_marker(const std::string& dir, const struct stat& st) {
    TarHeader h;
    h.name = dir.empty() ? kOpaque : dir + "/" + kOpaque;
    h.mode = st.st_mode & 0777;
    h.uid = st.st_uid;
    h.gid = st.st_gid;
    h.mtime_sec = st.st_mtim.tv_sec;
    h.mtime_nsec = st.st_mtim.tv_nsec;
    add(h);
  }

  // The fd opened is the inode stat'ed: nothing was swapped in between.
  void same_inode(int fd, const struct stat& st) {
    struct stat now;
    if (::fstat(fd, &now) < 0) throw_errno("stat");
    if (now.st_dev != st.st_dev || now.st_ino != st.st_ino ||
        (now.st_mode & S_IFMT) != (st.st_mode & S_IFMT))
      throw refused("changed while it was read (another file took its place)", EAGAIN);
  }

  void add(const TarHeader& h) {
    tar_.add(h);
    result_.entries++;
  }

  UniqueFd root_;
  TarWriter& tar_;
  std::vector<char> buf_;
  dev_t dev_ = 0;
  std::map<std::pair<dev_t, ino_t>, std::string> links_;  // first name of each multi-link inode
  PackResult result_;
};

}  // namespace

PackResult pack_layer(const std::string& source, const std::string& target, Compression compression,
                      int level) {
  if (compression != Compression::Gzip && compression != Compression::None)
    throw Error("packLayer: compression must be gzip or none", EINVAL);
  // The source path itself is the caller's (the layer store's own path, maybe its link to a
  // shared base); below it nothing is followed.
  UniqueFd root(::open(source.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root) throw_errno("packLayer: open layer `" + source + "`");
  UniqueFd out(::open(target.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!out) throw_errno("packLayer: create `" + target + "`");
  FileSink file(std::move(out), target);
  HashingSink stored(file);
  std::optional<GzipSink> gzip;
  if (compression == Compression::Gzip) gzip.emplace(stored, level);
  HashingSink tar_bytes(gzip ? static_cast<ByteSink&>(*gzip) : static_cast<ByteSink&>(stored));
  TarWriter tar(tar_bytes);
  PackResult r;
  try {
    r = Packer(std::move(root), tar).run();
  } catch (const Error& e) {
    throw e.wrap("layer `" + source + "`");
  }
  tar.close();
  r.diff_id = tar_bytes.digest();
  r.digest = stored.digest();
  r.size = stored.size();
  return r;
}

}  // namespace conductor::image
