// Glue shared by the addon's files: one register_* per concern (pidfd, mounts, cgroup stats,
// namespaces, image layers), conversion of conductor::Error into JS errors, and a
// promise-returning worker so nothing that can block (mount, cgroup reads, unpacking) runs on
// the JS thread.
#pragma once

#include <napi.h>

#include <exception>
#include <functional>
#include <string>
#include <utility>

#include "common/error.h"
#include "common/fd.h"

namespace conductor::addon {

// Waits for process exits by pidfd on one epoll thread (pidfd.cc); spawn.cc hands it children.
class ExitWatcher;
ExitWatcher* register_pidfd(Napi::Env env, Napi::Object exports);
void register_spawn(Napi::Env env, Napi::Object exports, ExitWatcher& watcher);
// {id, exited}: `exited` resolves with {code, signal} once the child (ours, not yet reaped)
// that `pidfd` refers to has exited and been reaped.
Napi::Object watch_child(Napi::Env env, ExitWatcher& w, UniqueFd pidfd);
// Signals the process of wait `id` through its pidfd; false when it is already gone.
bool kill_waited(Napi::Env env, ExitWatcher& w, uint64_t id, int sig);
void register_mounts(Napi::Env env, Napi::Object exports);
void register_cgroups(Napi::Env env, Napi::Object exports);
void register_namespaces(Napi::Env env, Napi::Object exports);
void register_image(Napi::Env env, Napi::Object exports);

// An Error whose message is `message` and, for syscall failures, `code` = "ENOENT"... and
// `errno` = the number, as Node's own fs errors carry them.
Napi::Error make_error(Napi::Env env, const std::string& message, int err);

// A pid argument: a positive integer that fits pid_t. Throws a TypeError otherwise.
pid_t pid_arg(const Napi::CallbackInfo& info, size_t index, const char* fn);
// A string argument. Throws a TypeError naming `what` otherwise.
std::string string_arg(Napi::Value v, const std::string& what);

// Runs a synchronous body, turning conductor::Error into a JS error with code/errno.
template <typename F>
Napi::Value guarded(Napi::Env env, F&& body) {
  try {
    return body();
  } catch (const Error& e) {
    throw make_error(env, e.what(), e.code());
  }
}

// Runs `work` on the libuv thread pool and settles a promise: resolved with `to_js(result)`,
// or rejected with the conductor::Error (message, code, errno) that `work` threw.
template <typename Result>
class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<Result()>;
  using ToJs = std::function<Napi::Value(Napi::Env, const Result&)>;

  static Napi::Promise start(Napi::Env env, const char* name, Work work, ToJs to_js) {
    auto* w = new PromiseWorker(env, name, std::move(work), std::move(to_js));
    Napi::Promise p = w->deferred_.Promise();
    w->Queue();  // the worker deletes itself once settled
    return p;
  }

 protected:
  void Execute() override {
    try {
      result_ = work_();
    } catch (const Error& e) {
      err_ = e.code();
      SetError(e.what());
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override { deferred_.Resolve(to_js_(Env(), result_)); }
  void OnError(const Napi::Error& e) override {
    deferred_.Reject(make_error(Env(), e.Message(), err_).Value());
  }

 private:
  PromiseWorker(Napi::Env env, const char* name, Work work, ToJs to_js)
      : Napi::AsyncWorker(env, name),
        deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)),
        to_js_(std::move(to_js)) {}

  Napi::Promise::Deferred deferred_;
  Work work_;
  ToJs to_js_;
  Result result_{};
  int err_ = 0;
};

struct Done {};  // Result of work that only succeeds or fails.

}  // namespace conductor::addon
