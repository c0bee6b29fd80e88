#include "runtime/channel.h"

#include <sys/socket.h>

#include <cerrno>
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

namespace {
// Receives one message; false on EOF. An ERROR from the peer is rethrown as is.
bool receive(int fd, Wire& w, const char* waiting_for) {
  ssize_t n;
  bool reset = false;
  for (;;) {
    n = ::recv(fd, &w, sizeof w, 0);
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
  if (n == 0) return false;
  w.text[sizeof w.text - 1] = 0;
  if (static_cast<Msg>(w.type) == Msg::kError) throw Error::preformatted(w.text, w.err);
  return true;
}
}  // namespace

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
