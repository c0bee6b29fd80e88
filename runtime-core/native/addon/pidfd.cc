// waitForExit(pid), cancelWait(id) and pidStartTime(pid).
//
// A pidfd becomes readable when its process exits, whoever its parent is — so the controller
// can wait for a detached shim it did not start. One watcher thread per addon instance
// epoll_waits on every pending pidfd and hands exits to the JS thread through a
// ThreadSafeFunction: waits cost one fd each, not a libuv pool thread each (the pool has four,
// and containers run for days). The ThreadSafeFunction is ref'd only while a wait is pending,
// so an idle addon never keeps the process alive — and cancelWait drops a wait nobody needs any
// more (its pidfd closed, its promise rejected), so an abandoned wait does not either.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <memory>
#include <thread>

#include "addon/addon.h"
#include "common/fd.h"
#include "common/fs.h"

namespace conductor::addon {

namespace {

[[noreturn]] void throw_js_errno(Napi::Env env, const std::string& what) {
  int e = errno;
  throw make_error(env, Error(what, e).what(), e);
}

}  // namespace

void deliver_exit(Napi::Env env, Napi::Function, ExitWatcher* w, uint64_t* id);
using ExitTsfn = Napi::TypedThreadSafeFunction<ExitWatcher, uint64_t, deliver_exit>;

class ExitWatcher {
 public:
  // {id, exited}: `exited` settles when the process exits; cancelWait(id) ends the wait.
  Napi::Value wait(Napi::Env env, pid_t pid) {
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd) {
      int e = errno;
      std::string msg = "waitForExit(" + std::to_string(pid) + "): pidfd_open";
      if (e == ESRCH) msg += ": process " + std::to_string(pid) + " does not exist";
      auto deferred = Napi::Promise::Deferred::New(env);
      deferred.Reject(make_error(env, Error(msg, e).what(), e).Value());
      auto result = Napi::Object::New(env);
      result.Set("exited", deferred.Promise());
      result.Set("id", Napi::Number::New(env, 0));
      return result;
    }
    return add(env, std::move(pidfd), false);
  }

  // {id, exited} for a child of ours (spawn.cc) whose pidfd is `pidfd`: it is reaped when it
  // exits, and `exited` resolves with {code, signal} (one of them null) as Node reports them.
  // There is no cancelling such a wait (a child nobody reaps stays a zombie): kill it instead.
  Napi::Object wait_child(Napi::Env env, UniqueFd pidfd) {
    return add(env, std::move(pidfd), true);
  }

  // JS thread: sends `sig` to the child or process of wait `id` through its pidfd, so a pid
  // reused after the exit is never hit. False when the wait is over (the process is gone).
  bool kill(Napi::Env env, uint64_t id, int sig) {
    auto it = pending_.find(id);
    if (it == pending_.end()) return false;
    if (::syscall(SYS_pidfd_send_signal, it->second.pidfd.get(), sig, nullptr, 0) == 0) return true;
    if (errno == ESRCH) return false;
    throw_js_errno(env, "pidfd_send_signal(" + std::to_string(sig) + ")");
  }

  // JS thread: drops the wait `id` (if still pending) and rejects its promise with code
  // ECANCELED. An exit the watcher thread already queued for it is ignored when it arrives.
  void cancel(Napi::Env env, uint64_t id) {
    auto it = pending_.find(id);
    if (it == pending_.end() || it->second.reap) return;
    Napi::Promise::Deferred deferred = it->second.deferred;
    (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second.pidfd.get(), nullptr);
    pending_.erase(it);
    if (pending_.empty()) tsfn_.Unref(env);
    deferred.Reject(make_error(env, "waitForExit: cancelled", ECANCELED).Value());
  }

  // JS thread: the pidfd registered as `id` became readable.
  void exited(uint64_t id) {
    auto it = pending_.find(id);
    if (it == pending_.end()) return;
    Napi::Promise::Deferred deferred = it->second.deferred;
    Napi::Env env = deferred.Env();
    Napi::Value value = env.Undefined();
    if (it->second.reap) {
      // The pidfd is readable: the child is a zombie, and reaping it cannot block.
      siginfo_t si{};
      int r;
      do
        r = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(it->second.pidfd.get()), &si,
                     WEXITED | WNOHANG);
      while (r < 0 && errno == EINTR);
      Napi::Object status = Napi::Object::New(env);
      bool exited = r == 0 && si.si_code == CLD_EXITED;
      bool killed = r == 0 && (si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED);
      status.Set("code", exited ? Napi::Number::New(env, si.si_status) : env.Null());
      status.Set("signal", killed ? Napi::Number::New(env, si.si_status) : env.Null());
      value = status;
    }
    pending_.erase(it);  // closes the pidfd, which also drops it from the epoll set
    if (pending_.empty()) tsfn_.Unref(env);
    deferred.Resolve(value);
  }

  // Env teardown. Registered right after the ThreadSafeFunction is created, so it runs before
  // Node's own clean-up of that function (hooks run in reverse order): the thread is joined
  // while the function is still valid, then released.
  void stop() {
    if (!thread_) return;
    uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof one);
    thread_->join();
    thread_.reset();
    tsfn_.Release();
    pending_.clear();
  }

 private:
  struct Pending {
    UniqueFd pidfd;
    Napi::Promise::Deferred deferred;
    bool reap;  // a child of ours: reaped at its exit (and never cancelled)
  };

  Napi::Object add(Napi::Env env, UniqueFd pidfd, bool reap) {
    auto deferred = Napi::Promise::Deferred::New(env);
    auto result = Napi::Object::New(env);
    result.Set("exited", deferred.Promise());
    start(env);
    uint64_t id = next_id_++;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLONESHOT;
    ev.data.u64 = id;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, pidfd.get(), &ev) < 0)
      throw_js_errno(env, "epoll_ctl(ADD) pidfd");
    if (pending_.empty()) tsfn_.Ref(env);
    pending_.emplace(id, Pending{std::move(pidfd), deferred, reap});
    result.Set("id", Napi::Number::New(env, static_cast<double>(id)));
    return result;
  }

  void start(Napi::Env env) {
    if (thread_) return;
    UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
    if (!ep) throw_js_errno(env, "epoll_create1");
    UniqueFd wake(::eventfd(0, EFD_CLOEXEC));
    if (!wake) throw_js_errno(env, "eventfd");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = 0;  // ids start at 1: 0 is the wake-up eventfd
    if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, wake.get(), &ev) < 0)
      throw_js_errno(env, "epoll_ctl(ADD) eventfd");
    epoll_ = std::move(ep);
    wake_ = std::move(wake);
    tsfn_ = ExitTsfn::New(env, "conductor.waitForExit", 0, 1, this);
    tsfn_.Unref(env);
    env.AddCleanupHook([this]() { stop(); });
    thread_ = std::make_unique<std::thread>([this]() { run(); });
  }

  void run() {
    epoll_event events[32];
    for (;;) {
      int n = ::epoll_wait(epoll_.get(), events, 32, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        return;  // cannot happen with a valid epoll fd; waits stay pending rather than crash
      }
      for (int i = 0; i < n; i++) {
        uint64_t id = events[i].data.u64;
        if (id == 0) return;  // stop()
        auto* data = new uint64_t(id);
        if (tsfn_.NonBlockingCall(data) != napi_ok) {
          delete data;
          return;  // the function is closing: the environment is going away
        }
      }
    }
  }

  UniqueFd epoll_, wake_;
  ExitTsfn tsfn_;
  std::unique_ptr<std::thread> thread_;
  std::map<uint64_t, Pending> pending_;  // JS thread only
  uint64_t next_id_ = 1;
};

void deliver_exit(Napi::Env env, Napi::Function, ExitWatcher* w, uint64_t* id) {
  std::unique_ptr<uint64_t> owned(id);
  if (env != nullptr && w != nullptr) w->exited(*owned);
}

Napi::Object watch_child(Napi::Env env, ExitWatcher& w, UniqueFd pidfd) {
  return w.wait_child(env, std::move(pidfd));
}

bool kill_waited(Napi::Env env, ExitWatcher& w, uint64_t id, int sig) {
  return w.kill(env, id, sig);
}

namespace {

// Field 22 of /proc/PID/stat: start time in clock ticks since boot. The command name (field 2)
// may hold spaces and parentheses, so fields are counted from the last ')'.
std::optional<uint64_t> start_time(pid_t pid) {
  auto stat = read_file_if_exists("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return std::nullopt;
  size_t pos = stat->rfind(')');
  if (pos == std::string::npos) throw Error("/proc/" + std::to_string(pid) + "/stat: malformed");
  // After ") " comes field 3 (state); field 22 is 19 fields further.
  size_t p = pos + 2;
  for (int field = 3; field < 22; field++) {
    p = stat->find(' ', p);
    if (p == std::string::npos) throw Error("/proc/" + std::to_string(pid) + "/stat: malformed");
    p++;
  }
  return std::stoull(stat->substr(p, stat->find(' ', p) - p));
}

}  // namespace

ExitWatcher* register_pidfd(Napi::Env env, Napi::Object exports) {
  // Lives as long as the environment: freed by the last clean-up hook to run.
  auto* watcher = new ExitWatcher();
  env.AddCleanupHook([watcher]() { delete watcher; });

  exports.Set("waitForExit", Napi::Function::New(env, [watcher](const Napi::CallbackInfo& info) {
                return watcher->wait(info.Env(), pid_arg(info, 0, "waitForExit"));
              }));
  exports.Set("cancelWait", Napi::Function::New(env, [watcher](const Napi::CallbackInfo& info) {
                if (info.Length() < 1 || !info[0].IsNumber())
                  throw Napi::TypeError::New(info.Env(), "cancelWait: id must be a number");
                watcher->cancel(info.Env(),
                                static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value()));
                return info.Env().Undefined();
              }));
  exports.Set("pidStartTime", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
                pid_t pid = pid_arg(info, 0, "pidStartTime");
                return guarded(info.Env(), [&]() -> Napi::Value {
                  // A process that exits between open and read reads as ESRCH: gone, too.
                  std::optional<uint64_t> t;
                  try {
                    t = start_time(pid);
                  } catch (const Error& e) {
                    if (e.code() != ESRCH) throw;
                  }
                  if (!t) return info.Env().Null();
                  return Napi::BigInt::New(info.Env(), *t);
                });
              }));
  return watcher;
}

}  // namespace conductor::addon
