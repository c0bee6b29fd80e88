// Statistics the facade reports (docker stats, the kubelet's summary): cpu, memory, pids, OOM.
#include <sstream>

#include "cgroups/backend.h"
#include "cgroups/cgroups.h"
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

using cgroup_backend::read_keyed;

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

}  // namespace

CgroupStats Cgroup::stats() const {
  CgroupStats s;
  if (layout_.mode == CgroupMode::V2) {
    std::string d = layout_.unified + path_;
    s.cpu_usage_ns = read_keyed(d + "/cpu.stat", "usage_usec") * 1000;
    s.memory_usage = read_u64(d + "/memory.current").value_or(0);
    uint64_t inactive = read_keyed(d + "/memory.stat", "inactive_file");
    s.memory_limit = limit_or_unlimited(read_u64(d + "/memory.max"));
    s.pids_current = read_u64(d + "/pids.current").value_or(0);
    s.pids_limit = limit_or_unlimited(read_u64(d + "/pids.max"));
    s.memory_working_set = s.memory_usage > inactive ? s.memory_usage - inactive : 0;
  } else {
    std::string cpuacct = dir_for("cpuacct"), mem = dir_for("memory"), pids = dir_for("pids");
    if (!cpuacct.empty()) s.cpu_usage_ns = read_u64(cpuacct + "/cpuacct.usage").value_or(0);
    if (!mem.empty()) {
      s.memory_usage = read_u64(mem + "/memory.usage_in_bytes").value_or(0);
      uint64_t inactive = read_keyed(mem + "/memory.stat", "total_inactive_file");
      s.memory_working_set = s.memory_usage > inactive ? s.memory_usage - inactive : 0;
      s.memory_limit = limit_or_unlimited(read_u64(mem + "/memory.limit_in_bytes"));
    }
    if (!pids.empty()) {
      s.pids_current = read_u64(pids + "/pids.current").value_or(0);
      s.pids_limit = limit_or_unlimited(read_u64(pids + "/pids.max"));
    }
  }
  s.oom_kills = oom_kills();
  return s;
}

uint64_t Cgroup::oom_kills() const {
  if (layout_.mode == CgroupMode::V2)
    return read_keyed(layout_.unified + path_ + "/memory.events", "oom_kill");
  std::string mem = dir_for("memory");
  return mem.empty() ? 0 : read_keyed(mem + "/memory.oom_control", "oom_kill");
}

}  // namespace conductor
