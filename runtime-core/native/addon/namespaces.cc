// nsInodes(pid): the namespaces a process is in, as /proc/PID/ns/* links ("pid:[4026531836]").
// Two processes share a namespace exactly when the links match — how tests prove that exec
// joined every namespace of a container.
#include <unistd.h>

#include <climits>

#include "addon/addon.h"

namespace conductor::addon {

namespace {

const char* const kKinds[] = {"pid", "uts", "ipc", "mnt", "net", "cgroup"};

std::string read_link(const std::string& path) {
  char buf[PATH_MAX];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
  if (n < 0) throw_errno("readlink `" + path + "`");
  return std::string(buf, static_cast<size_t>(n));
}

}  // namespace

void register_namespaces(Napi::Env env, Napi::Object exports) {
  exports.Set("nsInodes", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
                pid_t pid = pid_arg(info, 0, "nsInodes");
                return guarded(info.Env(), [&]() -> Napi::Value {
                  Napi::Object o = Napi::Object::New(info.Env());
                  for (const char* kind : kKinds) {
                    std::string link =
                        read_link("/proc/" + std::to_string(pid) + "/ns/" + std::string(kind));
                    o.Set(kind, Napi::String::New(info.Env(), link));
                  }
                  return o;
                });
              }));
}

}  // namespace conductor::addon
