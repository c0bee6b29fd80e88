// resolve_in_root: see unpack.h. The kernel does the resolution (openat2 RESOLVE_IN_ROOT), so
// `..` and absolute symlinks inside the root stay inside it, as they would in a chroot.
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <vector>

#include "common/error.h"
#include "common/fd.h"
#include "image/unpack.h"

namespace conductor::image {

std::string resolve_in_root(const std::string& root, const std::string& path) {
  const std::string what = "resolveInRoot `" + path + "` in `" + root + "`";
  if (path.find('\0') != std::string::npos || root.find('\0') != std::string::npos)
    throw Error::preformatted(what + ": a NUL byte in the path", EINVAL);
  UniqueFd rootfd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!rootfd) throw_errno(what + ": open the root");

  std::vector<std::string> comps;
  for (size_t pos = 0; pos <= path.size();) {
    size_t slash = path.find('/', pos);
    if (slash == std::string::npos) slash = path.size();
    std::string part = path.substr(pos, slash - pos);
    pos = slash + 1;
    if (!part.empty() && part != ".") comps.push_back(part);
  }

  // The longest prefix that exists, longest first.
  for (size_t k = comps.size();; k--) {
    std::string rel = ".";
    for (size_t i = 0; i < k; i++) rel += "/" + comps[i];
    struct open_how how = {};
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    int raw;
    do {
      raw = static_cast<int>(::syscall(SYS_openat2, rootfd.get(), rel.c_str(), &how, sizeof how));
    } while (raw < 0 && (errno == EAGAIN || errno == EINTR));
    UniqueFd fd(raw);
    if (!fd) {
      if (errno != ENOENT || k == 0) throw_errno(what);
      continue;
    }

    std::vector<std::string> rest(comps.begin() + static_cast<std::ptrdiff_t>(k), comps.end());
    if (!rest.empty()) {
      for (const auto& r : rest)
        if (r == "..")
          throw Error::preformatted(what + ": `..` below the missing component `" + rest[0] + "`",
                                    EINVAL);
      struct stat st;
      if (::fstat(fd.get(), &st) < 0) throw_errno(what);
      if (!S_ISDIR(st.st_mode)) throw Error(what + ": `" + rel.substr(2) + "`", ENOTDIR);
      // It exists but did not resolve: a dangling symlink. Appending its name would have the
      // host follow it, outside the root.
      if (::fstatat(fd.get(), rest[0].c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
        throw Error::preformatted(what + ": `" + rest[0] + "` is a dangling symlink", ELOOP);
    }

    char buf[PATH_MAX];
    std::string link = "/proc/self/fd/" + std::to_string(fd.get());
    ssize_t n = ::readlink(link.c_str(), buf, sizeof buf);
    if (n < 0) throw_errno(what + ": readlink " + link);
    if (static_cast<size_t>(n) == sizeof buf) throw Error(what + ": path too long", ENAMETOOLONG);
    std::string out(buf, static_cast<size_t>(n));
    for (const auto& r : rest) out += (out == "/" ? "" : "/") + r;
    return out;
  }
}

}  // namespace conductor::image
