// The runtime's own messages (container.h: log_message).
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "runtime/container.h"

namespace conductor {

void log_message(const GlobalOptions& g, const std::string& level, const std::string& msg) {
  std::string prefix = level == "error" ? "" : level + ": ";
  std::fprintf(stderr, "conductor-runtime: %s%s\n", prefix.c_str(), msg.c_str());
  if (g.log.empty()) return;
  std::string line = g.log_format == "json"
                         ? nlohmann::json{{"level", level == "warning" ? "warn" : level},
                                          {"msg", msg},
                                          {"time", now_rfc3339()}}
                                   .dump() +
                               "\n"
                         : now_rfc3339() + " " + level + " " + msg + "\n";
  int fd = ::open(g.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd >= 0) {
    ssize_t n = ::write(fd, line.data(), line.size());
    (void)n;
    ::close(fd);
  }
}

}  // namespace conductor
