#include "runtime/hooks.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstring>

#include "common/error.h"
#include "common/fd.h"

namespace conductor {

using json = nlohmann::json;

namespace {

constexpr size_t kOutputTail = 4096;  // of a failing hook's output, kept for its error

int64_t now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// Ignores SIGPIPE while it lives: a hook that exits without reading its stdin must not kill the
// runtime (or the container's init) writing the state to it. Restored after, so the
// container's process never inherits SIG_IGN.
class IgnoreSigpipe {
 public:
  IgnoreSigpipe() {
    struct sigaction sa {};
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGPIPE, &sa, &old_);
  }
  ~IgnoreSigpipe() { ::sigaction(SIGPIPE, &old_, nullptr); }

 private:
  struct sigaction old_ {};
};

// Runs one hook to completion; throws an Error (without the hooks.<stage>[i] prefix) on failure.
void run_one(const Hook& h, const std::string& state) {
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) < 0) throw_errno("pipe");
  UniqueFd in_r(in[0]), in_w(in[1]);
  if (::pipe2(out, O_CLOEXEC) < 0) throw_errno("pipe");
  UniqueFd out_r(out[0]), out_w(out[1]);

  std::vector<char*> argv, envp;
  std::vector<std::string> args = h.args.empty() ? std::vector<std::string>{h.path} : h.args;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env = h.env;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);

  IgnoreSigpipe guard;
  pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork");
  if (pid == 0) {
    // Only async-signal-safe calls until execve: the parent may be multi-threaded (the addon).
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(SIGPIPE, &dfl, nullptr);
    if (::dup2(in_r.get(), 0) < 0 || ::dup2(out_w.get(), 1) < 0 || ::dup2(out_w.get(), 2) < 0)
      ::_exit(126);
    ::execve(h.path.c_str(), argv.data(), envp.data());
    const char* msg = "conductor-runtime: cannot execute the hook: ";
    ssize_t ignored = ::write(2, msg, std::strlen(msg));
    const char* why = std::strerror(errno);
    ignored = ::write(2, why, std::strlen(why));
    (void)ignored;
    ::_exit(127);
  }
  in_r.reset();
  out_w.reset();
  auto reap = [&](bool kill_first) {
    if (kill_first) ::kill(pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
  };
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) {
    int e = errno;
    reap(true);
    throw Error("pidfd_open for the hook `" + h.path + "`", e);
  }
  // The state is small (well under a pipe's 64 KiB): it is written whole without blocking,
  // whether or not the hook reads it.
  ssize_t wrote = ::write(in_w.get(), state.data(), state.size());
  (void)wrote;  // EPIPE: the hook did not want it
  in_w.reset();

  std::string output;
  auto keep = [&](const char* buf, ssize_t r) {
    output.append(buf, static_cast<size_t>(r));
    if (output.size() > 2 * kOutputTail) output.erase(0, output.size() - kOutputTail);
  };
  int64_t deadline = h.timeout ? now_ms() + int64_t{*h.timeout} * 1000 : -1;
  bool exited = false, open_out = true;
  char buf[4096];
  while (!exited) {
    pollfd p[2] = {{pidfd.get(), POLLIN, 0}, {open_out ? out_r.get() : -1, POLLIN, 0}};
    int wait = -1;
    if (deadline >= 0) {
      int64_t left = deadline - now_ms();
      if (left <= 0) {
        reap(true);
        throw Error("`" + h.path + "` timed out after " + std::to_string(*h.timeout) +
                    " s (killed)");
      }
      wait = static_cast<int>(left);
    }
    if (::poll(p, 2, wait) < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      reap(true);
      throw Error("poll on the hook `" + h.path + "`", e);
    }
    if (p[0].revents & POLLIN) exited = true;
    if (open_out && (p[1].revents & (POLLIN | POLLHUP))) {
      ssize_t r = ::read(out_r.get(), buf, sizeof buf);
      if (r > 0) keep(buf, r);
      if (r == 0) open_out = false;
    }
  }
  // Exited: what it printed before exiting is in the pipe (a child it left behind may keep
  // the pipe open, so read only what is there).
  ::fcntl(out_r.get(), F_SETFL, O_NONBLOCK);
  for (ssize_t r; open_out && (r = ::read(out_r.get(), buf, sizeof buf)) > 0;) keep(buf, r);
  int status = reap(false);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return;
  if (output.size() > kOutputTail) output.erase(0, output.size() - kOutputTail);
  while (!output.empty() && (output.back() == '\n' || output.back() == ' ')) output.pop_back();
  std::string why = WIFEXITED(status) ? "exited with status " + std::to_string(WEXITSTATUS(status))
                    : WIFSIGNALED(status) ? "killed by signal " + std::to_string(WTERMSIG(status))
                                          : "failed";
  throw Error("`" + h.path + "` " + why + (output.empty() ? "" : ": " + output));
}

}  // namespace

json oci_state(const std::string& id, const std::string& status, pid_t pid,
               const std::string& bundle, const std::map<std::string, std::string>& annotations) {
  return {{"ociVersion", "1.0.2"}, {"id", id},
          {"status", status},      {"pid", pid},
          {"bundle", bundle},      {"annotations", annotations}};
}

std::string hook_state(const std::string& id, const std::string& status, pid_t pid,
                       const std::string& bundle,
                       const std::map<std::string, std::string>& annotations) {
  return oci_state(id, status, pid, bundle, annotations).dump();
}

void run_hooks(const std::vector<Hook>& hooks, const std::string& stage, const std::string& state) {
  for (size_t i = 0; i < hooks.size(); ++i) {
    try {
      run_one(hooks[i], state);
    } catch (const Error& e) {
      throw e.wrap("hooks." + stage + "[" + std::to_string(i) + "]");
    }
  }
}

std::vector<std::string> run_hooks_warning(const std::vector<Hook>& hooks, const std::string& stage,
                                           const std::string& state) {
  std::vector<std::string> failed;
  for (size_t i = 0; i < hooks.size(); ++i) {
    try {
      run_one(hooks[i], state);
    } catch (const Error& e) {
      failed.push_back("hooks." + stage + "[" + std::to_string(i) + "]: " + e.what());
    }
  }
  return failed;
}

json hooks_to_json(const std::vector<Hook>& hooks) {
  json out = json::array();
  for (const auto& h : hooks) {
    json j = {{"path", h.path}, {"args", h.args}, {"env", h.env}};
    if (h.timeout) j["timeout"] = *h.timeout;
    out.push_back(j);
  }
  return out;
}

std::vector<Hook> hooks_from_json(const json& j) {
  std::vector<Hook> out;
  if (!j.is_array()) return out;
  for (const auto& h : j) {
    Hook hook;
    hook.path = h.at("path").get<std::string>();
    hook.args = h.at("args").get<std::vector<std::string>>();
    hook.env = h.at("env").get<std::vector<std::string>>();
    if (h.contains("timeout")) hook.timeout = h.at("timeout").get<int>();
    out.push_back(hook);
  }
  return out;
}

}  // namespace conductor
