// The parent ↔ container-init handshake over a SOCK_SEQPACKET socketpair, in typed steps:
// a wait that receives something else fails with "expected X, received Y" — and an ERROR
// message carries the child's failing step and errno, so "create failed" reads
// "pivot_root `/…/rootfs`: EINVAL (Invalid argument)".
#pragma once

#include <string>
#include <vector>

#include "common/fd.h"

namespace conductor {

enum class Msg : int {
  kGo = 1,         // parent → child: cgroup joined, set up the container
  kReady = 2,      // child → parent: everything up to execve is done; waiting for start
  kStart = 3,      // parent → child (`run` only): execve now
  kError = 4,      // child → parent: a step failed (errno + message)
  kHooks = 5,      // child → parent: mounts made, run prestart/createRuntime hooks
  kHooksDone = 6,  // parent → child: they ran; go on to createContainer and pivot_root
  kIdmapped = 7,   // parent → child, before GO: the idmapped mounts' trees, as fds
};

class Channel {
 public:
  Channel() = default;
  explicit Channel(UniqueFd fd) : fd_(std::move(fd)) {}
  static void pair(Channel& a, Channel& b);  // CLOEXEC socketpair

  void send(Msg m, int err = 0, const std::string& text = "");
  void send_error(const std::exception& e);
  // A message carrying open fds (SCM_RIGHTS), at most kMaxFds.
  static constexpr size_t kMaxFds = 64;
  void send_fds(Msg m, const std::vector<int>& fds);
  std::vector<UniqueFd> expect_fds(Msg want);
  // Waits for `want`; an ERROR from the peer is rethrown as conductor::Error with its errno; EOF
  // (the peer died) is an error naming what was expected.
  void expect(Msg want);
  // Waits for the peer to close its end (the init's end is close-on-exec, so EOF means its
  // execve succeeded); an ERROR is rethrown.
  void expect_closed();
  int fd() const { return fd_.get(); }
  void close() { fd_.reset(); }

 private:
  UniqueFd fd_;
};

const char* msg_name(Msg m);

}  // namespace conductor
