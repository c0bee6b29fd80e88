// Module entry: each concern registers its own functions (see addon.h).
#include "addon/addon.h"

#include <climits>
#include <cmath>

namespace conductor::addon {

Napi::Error make_error(Napi::Env env, const std::string& message, int err) {
  Napi::Error e = Napi::Error::New(env, message);
  if (err != 0) {
    e.Set("code", Napi::String::New(env, errno_name(err)));
    e.Set("errno", Napi::Number::New(env, err));
  }
  return e;
}

pid_t pid_arg(const Napi::CallbackInfo& info, size_t index, const char* fn) {
  Napi::Value v = info[index];
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : 0;
  if (!v.IsNumber() || d < 1 || d > INT_MAX || std::floor(d) != d)
    throw Napi::TypeError::New(info.Env(), std::string(fn) + ": pid must be a positive integer");
  return static_cast<pid_t>(d);
}

std::string string_arg(Napi::Value v, const std::string& what) {
  if (!v.IsString()) throw Napi::TypeError::New(v.Env(), what + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

}  // namespace conductor::addon

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  using namespace conductor::addon;
  ExitWatcher* watcher = register_pidfd(env, exports);
  register_spawn(env, exports, *watcher);
  register_mounts(env, exports);
  register_cgroups(env, exports);
  register_namespaces(env, exports);
  register_image(env, exports);
  return exports;
}

NODE_API_MODULE(conductor_native, Init)
