// spawn(options) and killChild(id, signal): starting a program without fork().
//
// Node's child_process forks the whole controller to run a program, and fork copies the page
// tables of every mapped page on the JS thread: about 1 ms per 40 MB of resident memory, 4-5 ms
// for a controller, paid by everything waiting on the event loop — five times per container
// started (the CNI plugins, the shim, the first probe). posix_spawn runs the child in our
// address space until it execs (glibc: clone(CLONE_VM | CLONE_VFORK)), so the cost no longer
// grows with the controller's size, and exec failures (ENOENT, EACCES) come back as its return
// value. It still suspends the calling thread until the child has exec'd — milliseconds when
// the machine is busy — so it runs on the libuv pool and spawn() returns a promise.
//
// The child gets: the given argv and environment, stdin/stdout/stderr each a new pipe (its other
// end returned to JS as a file descriptor), /dev/null, or ours; no other descriptor of ours
// (closefrom 3); every signal at its default disposition and none blocked (Node ignores
// SIGPIPE, and ignored signals survive exec); optionally a new session (setsid, for a process
// that must outlive us). Its exit is watched by pidfd on the exit watcher's thread, which reaps
// it: `exited` resolves with {code, signal}, and killChild signals it through the pidfd, so a
// recycled pid is never hit.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "addon/addon.h"

extern char** environ;

namespace conductor::addon {

namespace {

enum class Stdio { Pipe, Ignore, Inherit };

Stdio stdio_arg(Napi::Value v, int i) {
  std::string s =
      v.IsUndefined() ? "ignore" : string_arg(v, "spawn: stdio[" + std::to_string(i) + "]");
  if (s == "pipe") return Stdio::Pipe;
  if (s == "ignore") return Stdio::Ignore;
  if (s == "inherit") return Stdio::Inherit;
  throw Napi::TypeError::New(v.Env(), "spawn: stdio[" + std::to_string(i) +
                                          "] must be 'pipe', 'ignore' or 'inherit', not " + s);
}

std::vector<std::string> strings_arg(Napi::Value v, const std::string& what) {
  if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), what + " must be an array of strings");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<std::string> out;
  out.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++)
    out.push_back(string_arg(a.Get(i), what + "[" + std::to_string(i) + "]"));
  return out;
}

// NUL-terminated argv/envp views of `strings` (which must outlive them).
std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (auto& s : strings) {
    if (s.find('\0') != std::string::npos)
      throw Error("spawn: an argument or environment entry contains a NUL byte", EINVAL);
    out.push_back(s.data());
  }
  out.push_back(nullptr);
  return out;
}

// posix_spawn's file actions and attributes, destroyed on every path out.
struct SpawnSetup {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  SpawnSetup() {
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
  }
  ~SpawnSetup() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
  SpawnSetup(const SpawnSetup&) = delete;
  SpawnSetup& operator=(const SpawnSetup&) = delete;
};

void check(int rc, const char* what) {
  if (rc != 0) throw Error(std::string("spawn: ") + what, rc);
}

struct Spawned {
  pid_t pid;
  UniqueFd pidfd;
  std::array<UniqueFd, 3> ours;  // our ends of the pipes, where stdio[i] is 'pipe'
};

Spawned spawn(const std::string& file, std::vector<std::string>& args,
              std::vector<std::string>* env, const std::string* cwd,
              const std::array<Stdio, 3>& stdio, bool setsid) {
  SpawnSetup s;
  std::array<UniqueFd, 3> theirs;
  Spawned out{};
  for (int i = 0; i < 3; i++) {
    if (stdio[i] == Stdio::Pipe) {
      int p[2];
      if (::pipe2(p, O_CLOEXEC) != 0) throw Error("spawn: pipe2", errno);
      // stdin: the child reads p[0]; stdout/stderr: the child writes p[1].
      out.ours[i].reset(i == 0 ? p[1] : p[0]);
      theirs[i].reset(i == 0 ? p[0] : p[1]);
      // dup2 onto 0-2 clears close-on-exec on the copy; the originals close at exec.
      check(posix_spawn_file_actions_adddup2(&s.actions, theirs[i].get(), i), "adddup2");
    } else if (stdio[i] == Stdio::Ignore) {
      check(posix_spawn_file_actions_addopen(&s.actions, i, "/dev/null",
                                             i == 0 ? O_RDONLY : O_WRONLY, 0),
            "addopen /dev/null");
    }
  }
  check(posix_spawn_file_actions_addclosefrom_np(&s.actions, 3), "addclosefrom");
  if (cwd) check(posix_spawn_file_actions_addchdir_np(&s.actions, cwd->c_str()), "addchdir");
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  check(posix_spawnattr_setsigdefault(&s.attr, &all), "setsigdefault");
  check(posix_spawnattr_setsigmask(&s.attr, &none), "setsigmask");
  short flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
  if (setsid) flags |= POSIX_SPAWN_SETSID;
  check(posix_spawnattr_setflags(&s.attr, flags), "setflags");

  std::vector<char*> argv = c_strings(args);
  std::vector<char*> envp = env ? c_strings(*env) : std::vector<char*>{};
  char* const* envv = env ? envp.data() : environ;
  // A bare name is looked up in PATH, as execvp (and Node) do.
  bool search = file.find('/') == std::string::npos;
  int rc = search ? posix_spawnp(&out.pid, file.c_str(), &s.actions, &s.attr, argv.data(), envv)
                  : posix_spawn(&out.pid, file.c_str(), &s.actions, &s.attr, argv.data(), envv);
  if (rc != 0) throw Error("spawn " + file, rc);
  // Ours, and not reaped until the exit watcher does it: the pid cannot be recycled meanwhile.
  out.pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, out.pid, 0)));
  if (!out.pidfd) {
    int e = errno;
    ::kill(out.pid, SIGKILL);
    int st;
    ::waitpid(out.pid, &st, 0);
    throw Error("spawn " + file + ": pidfd_open", e);
  }
  return out;
}

// What the JS thread read from spawn()'s options, for the pool thread.
struct SpawnArgs {
  std::string file;
  std::vector<std::string> args;
  std::vector<std::string> env;
  bool has_env;
  std::string cwd;
  bool has_cwd;
  std::array<Stdio, 3> stdio;
  bool setsid;
};

// A Spawned handed from the pool thread to the JS thread, which takes the descriptors over.
struct RawSpawned {
  pid_t pid = 0;
  int pidfd = -1;
  std::array<int, 3> ours{-1, -1, -1};
};

}  // namespace

void register_spawn(Napi::Env env, Napi::Object exports, ExitWatcher& watcher) {
  exports.Set("spawn", Napi::Function::New(env, [&watcher](const Napi::CallbackInfo& info) {
                Napi::Env env = info.Env();
                if (info.Length() < 1 || !info[0].IsObject())
                  throw Napi::TypeError::New(env, "spawn: options must be an object");
                Napi::Object o = info[0].As<Napi::Object>();
                std::string file = string_arg(o.Get("file"), "spawn: file");
                std::vector<std::string> args = strings_arg(o.Get("args"), "spawn: args");
                if (args.empty()) throw Napi::TypeError::New(env, "spawn: args needs argv[0]");
                std::vector<std::string> envs;
                bool has_env = !o.Get("env").IsUndefined();
                if (has_env) envs = strings_arg(o.Get("env"), "spawn: env");
                std::string cwd;
                bool has_cwd = !o.Get("cwd").IsUndefined();
                if (has_cwd) cwd = string_arg(o.Get("cwd"), "spawn: cwd");
                std::array<Stdio, 3> stdio{Stdio::Ignore, Stdio::Ignore, Stdio::Ignore};
                Napi::Value sv = o.Get("stdio");
                if (!sv.IsUndefined()) {
                  if (!sv.IsArray() || sv.As<Napi::Array>().Length() != 3)
                    throw Napi::TypeError::New(env, "spawn: stdio must be an array of three");
                  for (uint32_t i = 0; i < 3; i++)
                    stdio[i] = stdio_arg(sv.As<Napi::Array>().Get(i), i);
                }
                bool setsid = o.Get("setsid").ToBoolean();
                // posix_spawn suspends the calling thread until the child has exec'd, which on a
                // busy machine is milliseconds: it runs on the libuv pool, never on the JS thread.
                auto shared = std::make_shared<SpawnArgs>(
                    SpawnArgs{std::move(file), std::move(args), std::move(envs), has_env,
                              std::move(cwd), has_cwd, stdio, setsid});
                return PromiseWorker<RawSpawned>::start(
                    env, "conductor.spawn",
                    [shared]() {
                      SpawnArgs& a = *shared;
                      Spawned s = spawn(a.file, a.args, a.has_env ? &a.env : nullptr,
                                        a.has_cwd ? &a.cwd : nullptr, a.stdio, a.setsid);
                      RawSpawned r;
                      r.pid = s.pid;
                      r.pidfd = s.pidfd.release();
                      for (int i = 0; i < 3; i++) r.ours[i] = s.ours[i].release();
                      return r;
                    },
                    [&watcher](Napi::Env env, const RawSpawned& r) -> Napi::Value {
                      Napi::Object result = watch_child(env, watcher, UniqueFd(r.pidfd));
                      result.Set("pid", Napi::Number::New(env, r.pid));
                      const char* names[3] = {"stdin", "stdout", "stderr"};
                      for (int i = 0; i < 3; i++)
                        result.Set(names[i],
                                   r.ours[i] >= 0 ? Napi::Number::New(env, r.ours[i]) : env.Null());
                      return result;
                    });
              }));
  exports.Set("killChild", Napi::Function::New(env, [&watcher](const Napi::CallbackInfo& info) {
                Napi::Env env = info.Env();
                if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber())
                  throw Napi::TypeError::New(env, "killChild: (id, signal) must be numbers");
                uint64_t id = static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value());
                int sig = info[1].As<Napi::Number>().Int32Value();
                return Napi::Boolean::New(env, kill_waited(env, watcher, id, sig));
              }));
}

}  // namespace conductor::addon
