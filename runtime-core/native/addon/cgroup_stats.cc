// cgroupStats(cgroupsPath) and containerStats(targets): a container's usage, read from its
// cgroup by the cgroups backend (v1, v2 or hybrid, as the host is), and for a scrape many
// containers' at once with their network counters. Reads run on the libuv pool: cgroup files can
// stall while the kernel walks a large hierarchy, and a scrape of hundreds of containers is one
// job, not hundreds.
#include <memory>
#include <vector>

#include "addon/addon.h"
#include "cgroups/cgroups.h"

namespace conductor::addon {

namespace {

Napi::Value limit(Napi::Env env, int64_t v) {
  return v < 0 ? env.Null() : Napi::Number::New(env, static_cast<double>(v));
}

Napi::Value num(Napi::Env env, uint64_t v) {
  return Napi::Number::New(env, static_cast<double>(v));
}

Napi::Object to_js(Napi::Env env, const CgroupStats& s) {
  Napi::Object o = Napi::Object::New(env);
  // Nanoseconds pass 2^53 after 104 days of CPU time: bigints. Byte and pid counts stay far
  // below 2^53 and are plain numbers.
  o.Set("cpuUsageNs", Napi::BigInt::New(env, s.cpu_usage_ns));
  o.Set("cpuUserNs", Napi::BigInt::New(env, s.cpu_user_ns));
  o.Set("cpuSystemNs", Napi::BigInt::New(env, s.cpu_system_ns));
  o.Set("cpuPeriods", num(env, s.cpu_periods));
  o.Set("cpuThrottledPeriods", num(env, s.cpu_throttled_periods));
  o.Set("cpuThrottledNs", Napi::BigInt::New(env, s.cpu_throttled_ns));
  o.Set("cpuQuotaUs", limit(env, s.cpu_quota_us));
  o.Set("cpuPeriodUs", s.cpu_period_us ? num(env, s.cpu_period_us) : env.Null());
  o.Set("memoryUsage", num(env, s.memory_usage));
  o.Set("memoryWorkingSet", num(env, s.memory_working_set));
  o.Set("memoryRss", num(env, s.memory_rss));
  o.Set("memoryCache", num(env, s.memory_cache));
  o.Set("memoryFailcnt", num(env, s.memory_failcnt));
  o.Set("memoryLimit", limit(env, s.memory_limit));
  o.Set("pidsCurrent", num(env, s.pids_current));
  o.Set("pidsLimit", limit(env, s.pids_limit));
  o.Set("processes", num(env, s.processes));
  o.Set("threads", num(env, s.threads));
  o.Set("oomKills", num(env, s.oom_kills));
  return o;
}

Napi::Array interfaces_to_js(Napi::Env env, const std::vector<InterfaceStats>& list) {
  Napi::Array a = Napi::Array::New(env, list.size());
  for (uint32_t i = 0; i < list.size(); i++) {
    const InterfaceStats& n = list[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", n.name);
    o.Set("rxBytes", num(env, n.rx_bytes));
    o.Set("rxPackets", num(env, n.rx_packets));
    o.Set("rxErrors", num(env, n.rx_errors));
    o.Set("rxDropped", num(env, n.rx_dropped));
    o.Set("txBytes", num(env, n.tx_bytes));
    o.Set("txPackets", num(env, n.tx_packets));
    o.Set("txErrors", num(env, n.tx_errors));
    o.Set("txDropped", num(env, n.tx_dropped));
    a.Set(i, o);
  }
  return a;
}

CgroupStats read_cgroup(const CgroupLayout& layout, const std::string& path) {
  try {
    Cgroup cg(layout, path);
    // Missing files read as zero: a typo must not look like an idle cgroup.
    if (!cg.exists()) throw Error("no such cgroup", ENOENT);
    return cg.stats();
  } catch (const Error& e) {
    throw e.wrap("cgroupStats(" + path + ")");
  }
}

struct Target {
  std::string cgroups_path;
  pid_t pid = 0;  // > 0: read its network namespace's interfaces too
};

// One target's outcome: its statistics, or why there are none (gone meanwhile, usually).
struct Sample {
  bool ok = false;
  CgroupStats cgroup;
  bool network = false;
  std::vector<InterfaceStats> interfaces;
  std::string error;
  int code = 0;
};

}  // namespace

void register_cgroups(Napi::Env env, Napi::Object exports) {
  exports.Set(
      "cgroupStats", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
        std::string path = string_arg(info[0], "cgroupStats: cgroupsPath");
        return PromiseWorker<CgroupStats>::start(
            info.Env(), "conductor.cgroupStats",
            [path]() { return read_cgroup(CgroupLayout::detect(), path); },
            [](Napi::Env env, const CgroupStats& s) -> Napi::Value { return to_js(env, s); });
      }));
  exports.Set(
      "containerStats", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
        Napi::Env env = info.Env();
        if (info.Length() < 1 || !info[0].IsArray())
          throw Napi::TypeError::New(env, "containerStats: targets must be an array");
        Napi::Array arr = info[0].As<Napi::Array>();
        auto targets = std::make_shared<std::vector<Target>>();
        for (uint32_t i = 0; i < arr.Length(); i++) {
          Napi::Value v = arr.Get(i);
          std::string at = "containerStats: targets[" + std::to_string(i) + "]";
          if (!v.IsObject()) throw Napi::TypeError::New(env, at + " must be an object");
          Napi::Object o = v.As<Napi::Object>();
          Target t;
          t.cgroups_path = string_arg(o.Get("cgroupsPath"), at + ".cgroupsPath");
          Napi::Value pid = o.Get("pid");
          if (!pid.IsUndefined() && !pid.IsNull()) {
            double d = pid.IsNumber() ? pid.As<Napi::Number>().DoubleValue() : 0;
            if (!(d >= 1 && d <= 0x7fffffff && static_cast<double>(static_cast<pid_t>(d)) == d))
              throw Napi::TypeError::New(env, at + ".pid must be a positive integer");
            t.pid = static_cast<pid_t>(d);
          }
          targets->push_back(std::move(t));
        }
        return PromiseWorker<std::vector<Sample>>::start(
            env, "conductor.containerStats",
            [targets]() {
              CgroupLayout layout = CgroupLayout::detect();
              std::vector<Sample> out(targets->size());
              for (size_t i = 0; i < targets->size(); i++) {
                const Target& t = (*targets)[i];
                Sample& s = out[i];
                try {
                  s.cgroup = read_cgroup(layout, t.cgroups_path);
                  if (t.pid > 0) {
                    s.interfaces = net_dev_stats(t.pid);
                    s.network = true;
                  }
                  s.ok = true;
                } catch (const Error& e) {
                  s.error = e.what();
                  s.code = e.code();
                }
              }
              return out;
            },
            [](Napi::Env env, const std::vector<Sample>& samples) -> Napi::Value {
              Napi::Array a = Napi::Array::New(env, samples.size());
              for (uint32_t i = 0; i < samples.size(); i++) {
                const Sample& s = samples[i];
                Napi::Object o = Napi::Object::New(env);
                if (s.ok) {
                  o.Set("cgroup", to_js(env, s.cgroup));
                  if (s.network) o.Set("interfaces", interfaces_to_js(env, s.interfaces));
                } else {
                  o.Set("error", s.error);
                  if (s.code) o.Set("code", errno_name(s.code));
                }
                a.Set(i, o);
              }
              return a;
            });
      }));
}

}  // namespace conductor::addon
