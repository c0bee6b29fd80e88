// conductor-probe: the network probes of a Container (tcpSocket, httpGet) from inside the
// container's network namespace, so they work before — and without — container networking.
//
//   conductor-probe [--pid PID] [--timeout-ms N] tcp PORT [HOST]
//   conductor-probe [--pid PID] [--timeout-ms N] http PORT PATH [HOST]
//
// Exit 0: success (TCP connected; HTTP status 200-399, as the kubelet counts it), 1: failure,
// 2: usage or set-up error. One line on stdout says what happened (it becomes the event text).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

long long now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

[[noreturn]] void finish(int code, const std::string& msg) {
  std::printf("%s\n", msg.c_str());
  std::exit(code);
}

int wait_for(int fd, short events, long long deadline) {
  pollfd p{fd, events, 0};
  for (;;) {
    long long left = deadline - now_ms();
    if (left <= 0) return 0;
    int n = ::poll(&p, 1, static_cast<int>(left));
    if (n < 0 && errno == EINTR) continue;
    return n;
  }
}

int connect_to(const std::string& host, int port, long long deadline) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1)
    finish(2, "probe: host `" + host + "` must be an IPv4 address");
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) finish(2, std::string("probe: socket: ") + std::strerror(errno));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 && errno != EINPROGRESS)
    finish(1, "dial tcp " + host + ":" + std::to_string(port) + ": " + std::strerror(errno));
  if (wait_for(fd, POLLOUT, deadline) <= 0)
    finish(1, "dial tcp " + host + ":" + std::to_string(port) + ": timeout");
  int err = 0;
  socklen_t len = sizeof err;
  ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err) finish(1, "dial tcp " + host + ":" + std::to_string(port) + ": " + std::strerror(err));
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  int i = 1;
  long long timeout = 1000;
  const char* pid = nullptr;
  for (; i < argc && argv[i][0] == '-'; ++i) {
    if (!std::strcmp(argv[i], "--pid") && i + 1 < argc) {
      pid = argv[++i];
    } else if (!std::strcmp(argv[i], "--timeout-ms") && i + 1 < argc) {
      timeout = std::atoll(argv[++i]);
    } else {
      finish(2, std::string("probe: unknown option ") + argv[i]);
    }
  }
  if (argc - i < 2)
    finish(2, "usage: conductor-probe [--pid PID] [--timeout-ms N] tcp|http PORT ...");
  std::string kind = argv[i], port_s = argv[i + 1];
  int port = std::atoi(port_s.c_str());
  if (port < 1 || port > 65535) finish(2, "probe: port `" + port_s + "` must be 1..65535");
  if (pid) {
    std::string path = std::string("/proc/") + pid + "/ns/net";
    int ns = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (ns < 0 || ::setns(ns, CLONE_NEWNET) < 0)
      finish(2, "probe: join `" + path + "`: " + std::strerror(errno));
    ::close(ns);
  }
  long long deadline = now_ms() + timeout;
  if (kind == "tcp") {
    std::string host = argc - i > 2 ? argv[i + 2] : "127.0.0.1";
    ::close(connect_to(host, port, deadline));
    finish(0, "tcp " + host + ":" + port_s + ": connected");
  }
  if (kind != "http" || argc - i < 3) finish(2, "probe: expected `tcp PORT` or `http PORT PATH`");
  std::string path = argv[i + 2];
  std::string host = argc - i > 3 ? argv[i + 3] : "127.0.0.1";
  if (path.empty() || path[0] != '/' || path.find_first_of("\r\n ") != std::string::npos)
    finish(2, "probe: path `" + path + "` must start with / and hold no spaces");
  int fd = connect_to(host, port, deadline);
  std::string req =
      "GET " + path + " HTTP/1.1\r\nHost: " + host + ":" + port_s +
      "\r\nUser-Agent: conductor-probe/0.1\r\nAccept: */*\r\nConnection: close\r\n\r\n";
  size_t off = 0;
  while (off < req.size()) {
    if (wait_for(fd, POLLOUT, deadline) <= 0) finish(1, "http: timeout sending the request");
    ssize_t n = ::send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN) finish(1, std::string("http: send: ") + std::strerror(errno));
    if (n > 0) off += static_cast<size_t>(n);
  }
  std::string resp;
  char buf[512];
  while (resp.find("\r\n") == std::string::npos && resp.size() < 4096) {
    if (wait_for(fd, POLLIN, deadline) <= 0) finish(1, "http: timeout awaiting the response");
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EAGAIN) continue;
    if (n <= 0) break;
    resp.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  // "HTTP/1.1 200 OK"
  int code = 0;
  if (resp.rfind("HTTP/", 0) != 0 || std::sscanf(resp.c_str(), "HTTP/%*s %d", &code) != 1)
    finish(1, "http: not an HTTP response");
  std::string line = resp.substr(0, resp.find("\r\n"));
  finish(code >= 200 && code < 400 ? 0 : 1, "http GET " + path + ": " + line);
}
