// Errors that say what failed, where and why: the syscall, its argument and errno.
// Every fallible step in the native core throws conductor::Error; callers add context as it
// climbs (Error::wrap), so "exec failed" reads "pivot_root `/var/lib/.../rootfs`: EINVAL".
#pragma once

#include <cerrno>
#include <stdexcept>
#include <string>

namespace conductor {

class Error : public std::runtime_error {
 public:
  // `what` names the operation and its argument; `err` is errno (0 when not a syscall failure).
  Error(std::string what, int err = 0);
  int code() const { return err_; }
  // A new error whose message is `context: <this message>`, keeping errno.
  Error wrap(const std::string& context) const;
  // An error whose message is already complete (e.g. received from the container's init).
  static Error preformatted(std::string message, int err) { return Error(message, err, true); }

 private:
  Error(std::string message, int err, bool);
  int err_;
};

// Throws Error(what, errno) — call right after a failed syscall.
[[noreturn]] void throw_errno(const std::string& what);

// "EINVAL", "ENOENT", ... (falls back to the number).
std::string errno_name(int err);

}  // namespace conductor
