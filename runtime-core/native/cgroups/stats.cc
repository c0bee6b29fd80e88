// Statistics of a container's cgroup, as cAdvisor, the kubelet and docker stats report them:
// cpu (usage, user/system, CFS throttling, quota), memory (usage, working set, rss, cache,
// failcnt, limit), pids, processes and threads, OOM kills. One reader per backend, each file read
// once. Network counters come from the container's namespace, /proc/PID/net/dev.
#include <unistd.h>

#include <cstring>
#include <sstream>

#include "cgroups/backend.h"
#include "cgroups/cgroups.h"
#include "common/error.h"
#include "common/fs.h"

namespace conductor {

namespace cgroup_backend {

uint64_t read_keyed(const std::string& path, const std::string& key, uint64_t dflt) {
  auto s = read_file_if_exists(path);
  if (!s) return dflt;
  std::istringstream in(*s);
  std::string k;
  uint64_t v;
  while (in >> k >> v) {
    if (k == key) return v;
  }
  return dflt;
}

}  // namespace cgroup_backend

namespace {

// A "key value" file (cpu.stat, memory.stat, memory.events) read once; missing keys read 0.
class Keyed {
 public:
  explicit Keyed(const std::string& path) : text_(read_file_if_exists(path).value_or("")) {}
  uint64_t operator[](const char* key) const {
    size_t len = std::strlen(key);
    for (size_t pos = 0; pos < text_.size();) {
      size_t end = text_.find('\n', pos);
      if (end == std::string::npos) end = text_.size();
      if (end - pos > len && text_.compare(pos, len, key) == 0 && text_[pos + len] == ' ')
        return std::strtoull(text_.c_str() + pos + len + 1, nullptr, 10);
      pos = end + 1;
    }
    return 0;
  }

 private:
  std::string text_;
};

std::optional<uint64_t> read_u64(const std::string& path) {
  auto s = read_file_if_exists(path);
  if (!s) return std::nullopt;
  std::string t = trim(*s);
  if (t.empty() || t == "max") return std::nullopt;
  return std::stoull(t);
}

// v1 reports "no limit" as PAGE_COUNTER_MAX rounded to pages (9223372036854771712).
int64_t limit_or_unlimited(std::optional<uint64_t> v) {
  if (!v || *v >= (1ULL << 62)) return -1;
  return static_cast<int64_t>(*v);
}

// Lines of cgroup.procs, tasks, cgroup.threads: one id each.
uint64_t count_lines(const std::string& path) {
  auto s = read_file_if_exists(path);
  if (!s) return 0;
  uint64_t n = 0;
  for (char c : *s) n += c == '\n';
  return n;
}

uint64_t saturating_sub(uint64_t a, uint64_t b) { return a > b ? a - b : 0; }

void stats_v2(const std::string& d, CgroupStats& s) {
  Keyed cpu(d + "/cpu.stat");
  s.cpu_usage_ns = cpu["usage_usec"] * 1000;
  s.cpu_user_ns = cpu["user_usec"] * 1000;
  s.cpu_system_ns = cpu["system_usec"] * 1000;
  s.cpu_periods = cpu["nr_periods"];
  s.cpu_throttled_periods = cpu["nr_throttled"];
  s.cpu_throttled_ns = cpu["throttled_usec"] * 1000;
  // cpu.max: "QUOTA PERIOD" or "max PERIOD".
  if (auto max = read_file_if_exists(d + "/cpu.max")) {
    std::istringstream in(*max);
    std::string quota;
    uint64_t period = 0;
    if (in >> quota >> period) {
      s.cpu_period_us = period;
      if (quota != "max") s.cpu_quota_us = static_cast<int64_t>(std::stoull(quota));
    }
  }
  Keyed mem(d + "/memory.stat");
  s.memory_usage = read_u64(d + "/memory.current").value_or(0);
  s.memory_working_set = saturating_sub(s.memory_usage, mem["inactive_file"]);
  s.memory_rss = mem["anon"];
  s.memory_cache = mem["file"];
  s.memory_limit = limit_or_unlimited(read_u64(d + "/memory.max"));
  Keyed events(d + "/memory.events");
  s.memory_failcnt = events["max"];
  s.oom_kills = events["oom_kill"];
  s.pids_current = read_u64(d + "/pids.current").value_or(0);
  s.pids_limit = limit_or_unlimited(read_u64(d + "/pids.max"));
  s.processes = count_lines(d + "/cgroup.procs");
  s.threads = count_lines(d + "/cgroup.threads");
}

}  // namespace

CgroupStats Cgroup::stats() const {
  CgroupStats s;
  if (layout_.mode == CgroupMode::V2) {
    stats_v2(layout_.unified + path_, s);
    return s;
  }
  std::string cpuacct = dir_for("cpuacct"), cpu = dir_for("cpu"), mem = dir_for("memory"),
              pids = dir_for("pids");
  if (!cpuacct.empty()) {
    s.cpu_usage_ns = read_u64(cpuacct + "/cpuacct.usage").value_or(0);
    // Nanoseconds where the kernel has them (4.7+), else cpuacct.stat's clock ticks.
    auto user = read_u64(cpuacct + "/cpuacct.usage_user");
    auto sys = read_u64(cpuacct + "/cpuacct.usage_sys");
    if (user && sys) {
      s.cpu_user_ns = *user;
      s.cpu_system_ns = *sys;
    } else {
      Keyed ticks(cpuacct + "/cpuacct.stat");
      uint64_t ns_per_tick = 1000000000ULL / static_cast<uint64_t>(sysconf(_SC_CLK_TCK));
      s.cpu_user_ns = ticks["user"] * ns_per_tick;
      s.cpu_system_ns = ticks["system"] * ns_per_tick;
    }
  }
  if (!cpu.empty()) {
    Keyed st(cpu + "/cpu.stat");
    s.cpu_periods = st["nr_periods"];
    s.cpu_throttled_periods = st["nr_throttled"];
    s.cpu_throttled_ns = st["throttled_time"];
    if (auto q = read_file_if_exists(cpu + "/cpu.cfs_quota_us")) {
      long long quota = std::strtoll(q->c_str(), nullptr, 10);
      s.cpu_quota_us = quota > 0 ? quota : -1;
    }
    s.cpu_period_us = read_u64(cpu + "/cpu.cfs_period_us").value_or(0);
  }
  if (!mem.empty()) {
    Keyed st(mem + "/memory.stat");
    s.memory_usage = read_u64(mem + "/memory.usage_in_bytes").value_or(0);
    s.memory_working_set = saturating_sub(s.memory_usage, st["total_inactive_file"]);
    s.memory_rss = st["total_rss"];
    s.memory_cache = st["total_cache"];
    s.memory_failcnt = read_u64(mem + "/memory.failcnt").value_or(0);
    s.memory_limit = limit_or_unlimited(read_u64(mem + "/memory.limit_in_bytes"));
    s.oom_kills = Keyed(mem + "/memory.oom_control")["oom_kill"];
  }
  if (!pids.empty()) {
    s.pids_current = read_u64(pids + "/pids.current").value_or(0);
    s.pids_limit = limit_or_unlimited(read_u64(pids + "/pids.max"));
  }
  // Every v1 hierarchy lists the same processes; the first one mounted will do.
  std::string any = !mem.empty() ? mem : !pids.empty() ? pids : !cpu.empty() ? cpu : cpuacct;
  if (!any.empty()) {
    s.processes = count_lines(any + "/cgroup.procs");
    s.threads = count_lines(any + "/tasks");
  }
  return s;
}

uint64_t Cgroup::oom_kills() const {
  if (layout_.mode == CgroupMode::V2)
    return Keyed(layout_.unified + path_ + "/memory.events")["oom_kill"];
  std::string mem = dir_for("memory");
  return mem.empty() ? 0 : Keyed(mem + "/memory.oom_control")["oom_kill"];
}

std::vector<InterfaceStats> net_dev_stats(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/net/dev";
  auto text = read_file_if_exists(path);
  if (!text) throw Error(path, ENOENT);
  // Two header lines, then "  NAME: rx_bytes rx_packets rx_errs rx_drop fifo frame compressed
  // multicast tx_bytes tx_packets tx_errs tx_drop ...".
  std::vector<InterfaceStats> out;
  std::istringstream in(*text);
  std::string line;
  for (int header = 0; header < 2 && std::getline(in, line); header++) {
  }
  while (std::getline(in, line)) {
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    InterfaceStats i;
    i.name = trim(line.substr(0, colon));
    if (i.name.empty() || i.name == "lo") continue;
    std::istringstream f(line.substr(colon + 1));
    uint64_t skip;
    f >> i.rx_bytes >> i.rx_packets >> i.rx_errors >> i.rx_dropped >> skip >> skip >> skip >>
        skip >> i.tx_bytes >> i.tx_packets >> i.tx_errors >> i.tx_dropped;
    if (f) out.push_back(std::move(i));
  }
  return out;
}

}  // namespace conductor
