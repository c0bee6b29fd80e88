#include "common/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "common/error.h"
#include "common/fd.h"

namespace conductor {

namespace {
std::optional<std::string> read_fd(int fd, const std::string& path) {
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("read `" + path + "`");
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}
}  // namespace

std::optional<std::string> read_file_if_exists(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return std::nullopt;
    throw_errno("open `" + path + "`");
  }
  return read_fd(fd.get(), path);
}

std::string read_file(const std::string& path) {
  auto s = read_file_if_exists(path);
  if (!s) throw Error("open `" + path + "`", ENOENT);
  return *s;
}

void write_file(const std::string& path, const std::string& data) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
  if (!fd) throw_errno("open `" + path + "`");
  ssize_t n = ::write(fd.get(), data.data(), data.size());
  if (n < 0) throw_errno("write `" + data + "` to `" + path + "`");
  if (static_cast<size_t>(n) != data.size()) throw Error("short write to `" + path + "`", EIO);
}

void write_file_atomic(const std::string& path, const std::string& data, mode_t mode) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
    if (!fd) throw_errno("create `" + tmp + "`");
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::write(fd.get(), data.data() + off, data.size() - off);
      if (n < 0) {
        if (errno == EINTR) continue;
        int e = errno;
        ::unlink(tmp.c_str());
        throw Error("write `" + tmp + "`", e);
      }
      off += static_cast<size_t>(n);
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) < 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    throw Error("rename `" + tmp + "` to `" + path + "`", e);
  }
}

void mkdir_p(const std::string& path, mode_t mode) {
  if (path.empty()) return;
  std::string cur;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    cur = path.substr(0, j);
    if (!cur.empty() && ::mkdir(cur.c_str(), mode) < 0 && errno != EEXIST)
      throw_errno("mkdir `" + cur + "`");
    i = j + 1;
  }
  struct stat st;
  if (::stat(path.c_str(), &st) < 0) throw_errno("stat `" + path + "`");
  if (!S_ISDIR(st.st_mode)) throw Error("`" + path + "` exists and is not a directory", ENOTDIR);
}

bool path_exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

namespace {
void remove_at(int dirfd, const char* name, const std::string& shown, dev_t dev) {
  struct stat st;
  if (::fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
    if (errno == ENOENT) return;
    throw_errno("stat `" + shown + "`");
  }
  if (S_ISDIR(st.st_mode)) {
    if (st.st_dev != dev) throw Error("refusing to remove `" + shown + "`: a mount point", EBUSY);
    UniqueFd sub(::openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!sub) throw_errno("open `" + shown + "`");
    DIR* d = ::fdopendir(::dup(sub.get()));
    if (!d) throw_errno("opendir `" + shown + "`");
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
      names.emplace_back(e->d_name);
    }
    ::closedir(d);
    for (const auto& n : names) remove_at(sub.get(), n.c_str(), shown + "/" + n, dev);
    if (::unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
      throw_errno("rmdir `" + shown + "`");
  } else if (::unlinkat(dirfd, name, 0) < 0 && errno != ENOENT) {
    throw_errno("unlink `" + shown + "`");
  }
}
}  // namespace

void remove_all(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) < 0) {
    if (errno == ENOENT) return;
    throw_errno("stat `" + path + "`");
  }
  remove_at(AT_FDCWD, path.c_str(), path, st.st_dev);
}

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> out;
  DIR* d = ::opendir(path.c_str());
  if (!d) {
    if (errno == ENOENT) return out;
    throw_errno("opendir `" + path + "`");
  }
  while (dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    out.emplace_back(e->d_name);
  }
  ::closedir(d);
  return out;
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

}  // namespace conductor
