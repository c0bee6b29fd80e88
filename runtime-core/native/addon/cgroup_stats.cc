// cgroupStats(cgroupsPath): a container's usage, read from its cgroup by the cgroups backend
// (v1, v2 or hybrid, as the host is). Reads run on the libuv pool: cgroup files can stall
// while the kernel walks a large hierarchy.
#include "addon/addon.h"
#include "cgroups/cgroups.h"

namespace conductor::addon {

namespace {

Napi::Value limit(Napi::Env env, int64_t v) {
  return v < 0 ? env.Null() : Napi::Number::New(env, static_cast<double>(v));
}

Napi::Value to_js(Napi::Env env, const CgroupStats& s) {
  Napi::Object o = Napi::Object::New(env);
  // Nanoseconds pass 2^53 after 104 days of CPU time: a bigint. Byte and pid counts stay far
  // below 2^53 and are plain numbers.
  o.Set("cpuUsageNs", Napi::BigInt::New(env, s.cpu_usage_ns));
  o.Set("memoryUsage", Napi::Number::New(env, static_cast<double>(s.memory_usage)));
  o.Set("memoryWorkingSet", Napi::Number::New(env, static_cast<double>(s.memory_working_set)));
  o.Set("memoryLimit", limit(env, s.memory_limit));
  o.Set("pidsCurrent", Napi::Number::New(env, static_cast<double>(s.pids_current)));
  o.Set("pidsLimit", limit(env, s.pids_limit));
  o.Set("oomKills", Napi::Number::New(env, static_cast<double>(s.oom_kills)));
  return o;
}

}  // namespace

void register_cgroups(Napi::Env env, Napi::Object exports) {
  exports.Set("cgroupStats", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
                std::string path = string_arg(info[0], "cgroupStats: cgroupsPath");
                return PromiseWorker<CgroupStats>::start(
                    info.Env(), "conductor.cgroupStats",
                    [path]() {
                      try {
                        Cgroup cg(CgroupLayout::detect(), path);
                        // Missing files read as zero: a typo must not look like an idle cgroup.
                        if (!cg.exists()) throw Error("no such cgroup", ENOENT);
                        return cg.stats();
                      } catch (const Error& e) {
                        throw e.wrap("cgroupStats(" + path + ")");
                      }
                    },
                    to_js);
              }));
}

}  // namespace conductor::addon
