// cgroup v1 backend: one hierarchy per controller (or co-mounted group).
#include "cgroups/backend.h"
#include "common/error.h"
#include "common/fs.h"

namespace conductor::cgroup_backend {

namespace {

std::string need(const Cgroup& cg, const std::string& controller, const std::string& field) {
  std::string d = cg.dir_for(controller);
  if (d.empty())
    throw Error(
        "cannot apply " + field + ": the cgroup v1 `" + controller + "` controller is not mounted",
        ENOTSUP);
  return d;
}

std::string device_rule(const CgroupResources::Device& d) {
  if (d.type == 'a') return "a";
  auto num = [](int64_t v) { return v < 0 ? std::string("*") : std::to_string(v); };
  return std::string(1, d.type) + " " + num(d.major) + ":" + num(d.minor) + " " + d.access;
}

// blkio: weights through blkio.weight (CFQ) or blkio.bfq.weight (BFQ, newer kernels), whichever
// the host has; throttles through blkio.throttle.*.
void apply_v1_blkio(const Cgroup& cg, const CgroupResources& res) {
  const std::string f = "linux.resources.blockIO";
  bool weights = res.blkio_weight || res.blkio_leaf_weight || !res.blkio_weight_devices.empty();
  bool throttles = !res.blkio_read_bps.empty() || !res.blkio_write_bps.empty() ||
                   !res.blkio_read_iops.empty() || !res.blkio_write_iops.empty();
  if (!weights && !throttles) return;
  std::string d = need(cg, "blkio", f);
  auto weight_file = [&](const std::string& field, const char* base) {
    for (const std::string prefix : {"/blkio.", "/blkio.bfq."}) {
      std::string path = d + prefix + base;
      if (path_exists(path)) return path;
    }
    std::string why = std::string(base).find("leaf") != std::string::npos
                          ? "leaf weights were CFQ's, gone since Linux 5.0"
                          : "it needs an I/O scheduler with weights, BFQ";
    throw Error("cannot apply " + f + "." + field + ": this host's blkio controller has no `" +
                    base + "` (" + why + ")",
                ENOTSUP);
  };
  if (res.blkio_weight)
    write_file(weight_file("weight", "weight"), std::to_string(*res.blkio_weight));
  if (res.blkio_leaf_weight)
    write_file(weight_file("leafWeight", "leaf_weight"), std::to_string(*res.blkio_leaf_weight));
  for (const auto& w : res.blkio_weight_devices) {
    if (w.weight)
      write_file(weight_file("weightDevice", "weight_device"),
                 device_number(w.major, w.minor) + " " + std::to_string(*w.weight));
    if (w.leaf_weight)
      write_file(weight_file("weightDevice", "leaf_weight_device"),
                 device_number(w.major, w.minor) + " " + std::to_string(*w.leaf_weight));
  }
  const std::pair<const std::vector<CgroupResources::BlkioThrottle>*, const char*> throttle[] = {
      {&res.blkio_read_bps, "read_bps_device"},
      {&res.blkio_write_bps, "write_bps_device"},
      {&res.blkio_read_iops, "read_iops_device"},
      {&res.blkio_write_iops, "write_iops_device"}};
  for (const auto& [list, file] : throttle) {
    for (const auto& t : *list) {
      try {
        write_file(d + "/blkio.throttle." + file,
                   device_number(t.major, t.minor) + " " + std::to_string(t.rate));
      } catch (const Error& e) {
        throw e.wrap(f + " " + device_number(t.major, t.minor) + " (" + file + ")");
      }
    }
  }
}

}  // namespace

void apply_v1(const Cgroup& cg, const CgroupResources& res) {
  if (res.memory_limit) {
    std::string d = need(cg, "memory", "linux.resources.memory.limit");
    write_file(d + "/memory.limit_in_bytes", std::to_string(*res.memory_limit));
  }
  if (res.memory_swap) {
    std::string d = need(cg, "memory", "linux.resources.memory.swap");
    if (path_exists(d + "/memory.memsw.limit_in_bytes")) {
      write_file(d + "/memory.memsw.limit_in_bytes", std::to_string(*res.memory_swap));
    } else if (*res.memory_swap != -1 && res.memory_limit &&
               *res.memory_swap != *res.memory_limit) {
      throw Error("cannot apply linux.resources.memory.swap: swap accounting is off on this host",
                  ENOTSUP);
    }
  }
  if (res.memory_reservation) {
    std::string d = need(cg, "memory", "linux.resources.memory.reservation");
    write_file(d + "/memory.soft_limit_in_bytes", std::to_string(*res.memory_reservation));
  }
  if (res.memory_swappiness) {
    std::string d = need(cg, "memory", "linux.resources.memory.swappiness");
    write_file(d + "/memory.swappiness", std::to_string(*res.memory_swappiness));
  }
  if (res.memory_disable_oom_killer) {
    std::string d = need(cg, "memory", "linux.resources.memory.disableOOMKiller");
    write_file(d + "/memory.oom_control", "1");
  }
  apply_v1_blkio(cg, res);
  if (res.cpu_shares) {
    write_file(need(cg, "cpu", "linux.resources.cpu.shares") + "/cpu.shares",
               std::to_string(*res.cpu_shares));
  }
  if (res.cpu_period) {
    write_file(need(cg, "cpu", "linux.resources.cpu.period") + "/cpu.cfs_period_us",
               std::to_string(*res.cpu_period));
  }
  if (res.cpu_quota) {
    write_file(need(cg, "cpu", "linux.resources.cpu.quota") + "/cpu.cfs_quota_us",
               std::to_string(*res.cpu_quota));
  }
  if (res.cpuset_cpus)
    write_file(need(cg, "cpuset", "linux.resources.cpu.cpus") + "/cpuset.cpus", *res.cpuset_cpus);
  if (res.cpuset_mems)
    write_file(need(cg, "cpuset", "linux.resources.cpu.mems") + "/cpuset.mems", *res.cpuset_mems);
  if (res.pids_limit) {
    int64_t v = *res.pids_limit;
    write_file(need(cg, "pids", "linux.resources.pids.limit") + "/pids.max",
               v <= 0 ? "max" : std::to_string(v));
  }
  if (!res.devices.empty()) {
    std::string d = need(cg, "devices", "linux.resources.devices");
    for (const auto& rule : res.devices) {
      try {
        write_file(d + (rule.allow ? "/devices.allow" : "/devices.deny"), device_rule(rule));
      } catch (const Error& e) {
        throw e.wrap("linux.resources.devices");
      }
    }
  }
}

}  // namespace conductor::cgroup_backend
