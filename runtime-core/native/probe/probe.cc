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

#include "common/error.h"
#include "common/fd.h"

namespace {

using conductor::Error;
using conductor::UniqueFd;

// The probe ran and failed (exit 1). Any other conductor::Error is a usage or set-up error
// (exit 2). Messages are the event text as the kubelet words it: "what: strerror", no errno name.
class Failure : public Error {
 public:
  explicit Failure(const std::string& line) : Error(line) {}
};

std::string sys(const std::string& what, int err) { return what + ": " + std::strerror(err); }

// What the probe saw: the exit code and the one line for stdout.
struct Outcome {
  int code;
  std::string line;
};

long long now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
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

UniqueFd connect_to(const std::string& host, int port, long long deadline) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1)
    throw Error("probe: host `" + host + "` must be an IPv4 address");
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) throw Error::preformatted(sys("probe: socket", errno), errno);
  std::string dial = "dial tcp " + host + ":" + std::to_string(port);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 &&
      errno != EINPROGRESS)
    throw Failure(sys(dial, errno));
  if (wait_for(fd.get(), POLLOUT, deadline) <= 0) throw Failure(dial + ": timeout");
  int err = 0;
  socklen_t len = sizeof err;
  ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
  if (err) throw Failure(sys(dial, err));
  return fd;
}

Outcome probe(int argc, char** argv) {
  int i = 1;
  long long timeout = 1000;
  const char* pid = nullptr;
  for (; i < argc && argv[i][0] == '-'; ++i) {
    if (!std::strcmp(argv[i], "--pid") && i + 1 < argc) {
      pid = argv[++i];
    } else if (!std::strcmp(argv[i], "--timeout-ms") && i + 1 < argc) {
      timeout = std::atoll(argv[++i]);
    } else {
      throw Error(std::string("probe: unknown option ") + argv[i]);
    }
  }
  if (argc - i < 2)
    throw Error("usage: conductor-probe [--pid PID] [--timeout-ms N] tcp|http PORT ...");
  std::string kind = argv[i], port_s = argv[i + 1];
  int port = std::atoi(port_s.c_str());
  if (port < 1 || port > 65535) throw Error("probe: port `" + port_s + "` must be 1..65535");
  if (pid) {
    std::string path = std::string("/proc/") + pid + "/ns/net";
    UniqueFd ns(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!ns || ::setns(ns.get(), CLONE_NEWNET) < 0)
      throw Error::preformatted(sys("probe: join `" + path + "`", errno), errno);
  }
  long long deadline = now_ms() + timeout;
  if (kind == "tcp") {
    std::string host = argc - i > 2 ? argv[i + 2] : "127.0.0.1";
    connect_to(host, port, deadline);
    return {0, "tcp " + host + ":" + port_s + ": connected"};
  }
  if (kind != "http" || argc - i < 3) throw Error("probe: expected `tcp PORT` or `http PORT PATH`");
  std::string path = argv[i + 2];
  std::string host = argc - i > 3 ? argv[i + 3] : "127.0.0.1";
  if (path.empty() || path[0] != '/' || path.find_first_of("\r\n ") != std::string::npos)
    throw Error("probe: path `" + path + "` must start with / and hold no spaces");
  UniqueFd fd = connect_to(host, port, deadline);
  std::string req =
      "GET " + path + " HTTP/1.1\r\nHost: " + host + ":" + port_s +
      "\r\nUser-Agent: conductor-probe/0.1\r\nAccept: */*\r\nConnection: close\r\n\r\n";
  size_t off = 0;
  while (off < req.size()) {
    if (wait_for(fd.get(), POLLOUT, deadline) <= 0)
      throw Failure("http: timeout sending the request");
    ssize_t n = ::send(fd.get(), req.data() + off, req.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN) throw Failure(sys("http: send", errno));
    if (n > 0) off += static_cast<size_t>(n);
  }
  std::string resp;
  char buf[512];
  while (resp.find("\r\n") == std::string::npos && resp.size() < 4096) {
    if (wait_for(fd.get(), POLLIN, deadline) <= 0)
      throw Failure("http: timeout awaiting the response");
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n < 0 && errno == EAGAIN) continue;
    if (n <= 0) break;
    resp.append(buf, static_cast<size_t>(n));
  }
  fd.reset();
  // "HTTP/1.1 200 OK"
  int code = 0;
  if (resp.rfind("HTTP/", 0) != 0 || std::sscanf(resp.c_str(), "HTTP/%*s %d", &code) != 1)
    throw Failure("http: not an HTTP response");
  std::string line = resp.substr(0, resp.find("\r\n"));
  return {code >= 200 && code < 400 ? 0 : 1, "http GET " + path + ": " + line};
}

}  // namespace

int main(int argc, char** argv) {
  Outcome o;
  try {
    o = probe(argc, argv);
  } catch (const Failure& e) {
    o = {1, e.what()};
  } catch (const std::exception& e) {
    o = {2, e.what()};
  }
  std::printf("%s\n", o.line.c_str());
  return o.code;
}
