#include "runtime/channel.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

#include "common/error.h"

namespace conductor {

namespace {
struct Wire {
  int type;
  int err;
  char text[3072];
};
}  // namespace

const char* msg_name(Msg m) {
  switch (m) {
    case Msg::kGo:
      return "GO";
    case Msg::kReady:
      return "READY";
    case Msg::kStart:
      return "START";
    case Msg::kError:
      return "ERROR";
    case Msg::kHooks:
      return "HOOKS";
    case Msg::kHooksDone:
      return "HOOKS_DONE";
    case Msg::kIdmapped:
      return "IDMAPPED";
  }
  return "UNKNOWN";
}

void Channel::pair(Channel& a, Channel& b) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) < 0) throw_errno("socketpair");
  a = Channel(UniqueFd(fds[0]));
  b = Channel(UniqueFd(fds[1]));
}

void Channel::send(Msg m, int err, const std::string& text) {
  Wire w{};
  w.type = static_cast<int>(m);
  w.err = err;
  std::strncpy(w.text, text.c_str(), sizeof w.text - 1);
  size_t len = offsetof(Wire, text) + std::strlen(w.text) + 1;
  while (::send(fd_.get(), &w, len, MSG_NOSIGNAL) < 0) {
    if (errno != EINTR) throw_errno(std::string("send ") + msg_name(m));
  }
}

void Channel::send_error(const std::exception& e) {
  const auto* ce = dynamic_cast<const Error*>(&e);
  // The message already carries the errno text; send the code so the parent can keep it.
  try {
    send(Msg::kError, ce ? ce->code() : 0, e.what());
  } catch (...) {
    // The parent is gone; nothing more to tell.
  }
}

void Channel::send_fds(Msg m, const std::vector<int>& fds) {
  if (fds.size() > kMaxFds) throw Error(std::string("send ") + msg_name(m) + ": too many fds");
  Wire w{};
  w.type = static_cast<int>(m);
  iovec iov{&w, offsetof(Wire, text) + 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  while (::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL) < 0) {
    if (errno != EINTR) throw_errno(std::string("send ") + msg_name(m));
  }
}

namespace {
// Receives one message (and the fds it carries, into `fds` when given); false on EOF. An ERROR
// from the peer is rethrown as is.
bool receive(int fd, Wire& w, const char* waiting_for, std::vector<UniqueFd>* fds = nullptr) {
  ssize_t n;
  bool reset = false;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * Channel::kMaxFds)] = {};
  iovec iov{&w, sizeof w};
  msghdr msg{};
  for (;;) {
    msg = msghdr{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
    if (n >= 0) break;
    if (errno == EINTR) continue;
    // A peer that exits with a message of ours unread (an init failing before it read GO)
    // resets the connection, and the kernel reports that before the messages it queued: its
    // ERROR is still there. The reset is reported once; read on.
    if (errno == ECONNRESET && !reset) {
      reset = true;
      continue;
    }
    throw_errno(std::string("waiting for ") + waiting_for);
  }
  // Whatever fds came along are owned from here, wanted or not.
  std::vector<UniqueFd> got;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int f;
      std::memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
      got.emplace_back(f);
    }
  }
  if (fds) *fds = std::move(got);
  if (n == 0) return false;
  w.text[sizeof w.text - 1] = 0;
  if (static_cast<Msg>(w.type) == Msg::kError) throw Error::preformatted(w.text, w.err);
  return true;
}
}  // namespace

std::vector<UniqueFd> Channel::expect_fds(Msg want) {
  Wire w{};
  std::vector<UniqueFd> fds;
  if (!receive(fd_.get(), w, msg_name(want), &fds))
    throw Error(std::string("expected ") + msg_name(want) + ", but the other side exited");
  Msg got = static_cast<Msg>(w.type);
  if (got != want)
    throw Error(std::string("expected ") + msg_name(want) + ", received " + msg_name(got));
  return fds;
}

void Channel::expect_closed() {
  Wire w{};
  if (receive(fd_.get(), w, "exec"))
    throw Error(std::string("expected the init to exec, received ") +
                msg_name(static_cast<Msg>(w.type)));
}

void Channel::expect(Msg want) {
  Wire w{};
  if (!receive(fd_.get(), w, msg_name(want)))
    throw Error(std::string("expected ") + msg_name(want) + ", but the other side exited");
  Msg got = static_cast<Msg>(w.type);
  if (got != want)
    throw Error(std::string("expected ") + msg_name(want) + ", received " + msg_name(got));
}

}  // namespace conductor
