#include "common/error.h"

#include <cstring>

namespace conductor {

namespace {
std::string format(const std::string& what, int err) {
  if (err == 0) return what;
  return what + ": " + errno_name(err) + " (" + std::strerror(err) + ")";
}
}  // namespace

Error::Error(std::string what, int err) : std::runtime_error(format(what, err)), err_(err) {}
Error::Error(std::string message, int err, bool) : std::runtime_error(message), err_(err) {}

Error Error::wrap(const std::string& context) const {
  return Error(context + ": " + what(), err_, true);
}

void throw_errno(const std::string& what) { throw Error(what, errno); }

std::string errno_name(int err) {
  const char* name = strerrorname_np(err);
  return name ? name : "errno " + std::to_string(err);
}

}  // namespace conductor
