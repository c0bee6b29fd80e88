#include "runtime/terminal.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "common/error.h"

namespace conductor {

Pty open_pty_in_container() {
  Pty p;
  p.master.reset(::open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!p.master) throw_errno("exec --tty: open /dev/ptmx in the container");
  int unlock = 0;
  if (::ioctl(p.master.get(), TIOCSPTLCK, &unlock) < 0) throw_errno("exec --tty: unlock the pty");
  p.slave.reset(::ioctl(p.master.get(), TIOCGPTPEER, O_RDWR | O_NOCTTY));
  if (!p.slave) throw_errno("exec --tty: open the pty's slave");
  return p;
}

void become_terminal_child(int slave) {
  if (::setsid() < 0) throw_errno("setsid");
  if (::ioctl(slave, TIOCSCTTY, 0) < 0) throw_errno("make the pty the controlling terminal");
  for (int fd = 0; fd < 3; ++fd)
    if (::dup2(slave, fd) < 0) throw_errno("dup2 the pty");
  if (slave > 2) ::close(slave);
}

namespace {

void copy_winsize(int from, int to) {
  winsize ws{};
  if (::ioctl(from, TIOCGWINSZ, &ws) == 0) ::ioctl(to, TIOCSWINSZ, &ws);
}

// Writes all of buf; false when the other side is gone.
bool write_all(int fd, const char* buf, ssize_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, buf, static_cast<size_t>(n));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    buf += w;
    n -= w;
  }
  return true;
}

}  // namespace

int relay_terminal(int master, pid_t child) {
  bool tty_in = ::isatty(0);
  termios saved{};
  if (tty_in && ::tcgetattr(0, &saved) == 0) {
    termios raw = saved;
    ::cfmakeraw(&raw);
    ::tcsetattr(0, TCSANOW, &raw);
    copy_winsize(0, master);
  }
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGWINCH);
  sigaddset(&mask, SIGCHLD);
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);
  UniqueFd sfd(::signalfd(-1, &mask, SFD_CLOEXEC));

  char buf[16384];
  bool stdin_open = true;
  for (;;) {
    pollfd fds[3] = {{master, POLLIN, 0}, {stdin_open ? 0 : -1, POLLIN, 0}, {sfd.get(), POLLIN, 0}};
    if (::poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = ::read(master, buf, sizeof buf);
      // EIO: every slave fd is closed — the process (and anything it left holding the
      // terminal) is gone.
      if (n <= 0 && errno != EINTR && errno != EAGAIN) break;
      if (n > 0 && !write_all(1, buf, n)) break;
    }
    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = ::read(0, buf, sizeof buf);
      if (n <= 0) {
        stdin_open = false;
        // End of input: send the terminal's EOF character, as a terminal would on ^D.
        char eof = 4;
        write_all(master, &eof, 1);
      } else if (!write_all(master, buf, n)) {
        break;
      }
    }
    if (fds[2].revents & POLLIN) {
      signalfd_siginfo si;
      if (::read(sfd.get(), &si, sizeof si) == sizeof si && si.ssi_signo == SIGWINCH && tty_in)
        copy_winsize(0, master);
    }
  }
  if (tty_in) ::tcsetattr(0, TCSANOW, &saved);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) throw_errno("waitpid " + std::to_string(child));
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace conductor
