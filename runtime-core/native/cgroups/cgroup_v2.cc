// cgroup v2 backend: one unified hierarchy; limits in memory.max, cpu.max, cpu.weight, pids.max.
#include <set>
#include <sstream>

#include "cgroups/backend.h"
#include "common/error.h"
#include "common/fs.h"

namespace conductor::cgroup_backend {

namespace {

const char* const kWanted[] = {"cpuset", "cpu", "io", "memory", "pids"};

std::set<std::string> words(const std::string& s) {
  std::set<std::string> out;
  std::istringstream in(s);
  std::string w;
  while (in >> w) out.insert(w);
  return out;
}

void write_limit(const std::string& dir, const std::string& file, const std::string& value,
                 const std::string& field, const std::string& controller) {
  std::string path = dir + "/" + file;
  if (!path_exists(path)) {
    throw Error("cannot apply " + field + ": the cgroup v2 `" + controller +
                    "` controller is not enabled for `" + dir + "` (cgroup.controllers: `" +
                    trim(read_file_if_exists(dir + "/cgroup.controllers").value_or("")) + "`)",
                ENOTSUP);
  }
  write_file(path, value);
}

// blkio weight (10..1000) to io.weight (1..10000), the conversion runc and crun use.
uint64_t blkio_to_io_weight(uint16_t w) { return 1 + (static_cast<uint64_t>(w) - 10) * 9999 / 990; }

// blockIO on the io controller: weights in io.weight (or io.bfq.weight, in blkio's range, when
// only BFQ has weights), throttles in io.max.
void apply_v2_io(const std::string& dir, const CgroupResources& res) {
  const std::string f = "linux.resources.blockIO";
  bool weights = res.blkio_weight || !res.blkio_weight_devices.empty();
  if (weights) {
    bool io_weight = path_exists(dir + "/io.weight");
    bool bfq = !io_weight && path_exists(dir + "/io.bfq.weight");
    std::string file = bfq ? "io.bfq.weight" : "io.weight";
    auto value = [&](uint16_t w) {
      return std::to_string(bfq ? uint64_t{w} : blkio_to_io_weight(w));
    };
    if (res.blkio_weight)
      write_limit(dir, file, "default " + value(*res.blkio_weight), f + ".weight", "io");
    for (const auto& w : res.blkio_weight_devices)
      if (w.weight)
        write_limit(dir, file, device_number(w.major, w.minor) + " " + value(*w.weight),
                    f + ".weightDevice", "io");
  }
  const std::pair<const std::vector<CgroupResources::BlkioThrottle>*, const char*> throttle[] = {
      {&res.blkio_read_bps, "rbps"},
      {&res.blkio_write_bps, "wbps"},
      {&res.blkio_read_iops, "riops"},
      {&res.blkio_write_iops, "wiops"}};
  for (const auto& [list, key] : throttle)
    for (const auto& t : *list)
      write_limit(dir, "io.max",
                  device_number(t.major, t.minor) + " " + key + "=" + std::to_string(t.rate),
                  f + " " + device_number(t.major, t.minor) + " (" + key + ")", "io");
}

}  // namespace

// cpu.shares (2..262144) to cpu.weight (1..10000), the conversion runc and crun use.
uint64_t shares_to_weight(uint64_t shares) {
  if (shares == 0) return 0;
  if (shares < 2) shares = 2;
  if (shares > 262144) shares = 262144;
  return 1 + ((shares - 2) * 9999) / 262142;
}

void enable_v2_controllers(const std::string& root, const std::string& dir) {
  // Walk root → parent of dir; at each level enable what the level offers and we use.
  std::string rel = dir.substr(root.size());
  std::string cur = root;
  std::istringstream in(rel.substr(1));
  std::string part;
  std::vector<std::string> levels{root};
  while (std::getline(in, part, '/')) {
    cur += "/" + part;
    levels.push_back(cur);
  }
  levels.pop_back();  // the container's own cgroup holds processes: no subtree_control there
  for (const auto& level : levels) {
    auto offered = words(read_file_if_exists(level + "/cgroup.controllers").value_or(""));
    auto enabled = words(read_file_if_exists(level + "/cgroup.subtree_control").value_or(""));
    for (const char* c : kWanted) {
      if (!offered.count(c) || enabled.count(c)) continue;
      try {
        write_file(level + "/cgroup.subtree_control", std::string("+") + c);
      } catch (const Error& e) {
        throw e.wrap("enable the `" + std::string(c) + "` controller");
      }
    }
  }
}

void apply_v2(const std::string& dir, const CgroupResources& res) {
  if (res.memory_limit) {
    int64_t v = *res.memory_limit;
    write_limit(dir, "memory.max", v < 0 ? "max" : std::to_string(v),
                "linux.resources.memory.limit", "memory");
  }
  if (res.memory_swap) {
    // OCI's swap is memory+swap (v1 semantics); v2's memory.swap.max is swap alone.
    int64_t swap = *res.memory_swap;
    std::string v = "max";
    if (swap >= 0) {
      int64_t mem = res.memory_limit.value_or(-1);
      if (mem < 0)
        throw Error("linux.resources.memory.swap needs memory.limit on cgroup v2", EINVAL);
      if (swap < mem)
        throw Error("linux.resources.memory.swap must be >= memory.limit (it counts both)", EINVAL);
      v = std::to_string(swap - mem);
    }
    write_limit(dir, "memory.swap.max", v, "linux.resources.memory.swap", "memory");
  }
  if (res.memory_reservation) {
    int64_t v = *res.memory_reservation;
    write_limit(dir, "memory.low", v < 0 ? "max" : std::to_string(v),
                "linux.resources.memory.reservation", "memory");
  }
  // swappiness, disableOOMKiller and blockIO leaf weights have no cgroup v2 file:
  // container_create warns and drops them before they get here.
  apply_v2_io(dir, res);
  if (res.cpu_shares) {
    write_limit(dir, "cpu.weight", std::to_string(shares_to_weight(*res.cpu_shares)),
                "linux.resources.cpu.shares", "cpu");
  }
  if (res.cpu_quota || res.cpu_period) {
    int64_t quota = res.cpu_quota.value_or(-1);
    uint64_t period = res.cpu_period.value_or(100000);
    write_limit(
        dir, "cpu.max",
        (quota < 0 ? std::string("max") : std::to_string(quota)) + " " + std::to_string(period),
        "linux.resources.cpu.quota", "cpu");
  }
  if (res.cpuset_cpus)
    write_limit(dir, "cpuset.cpus", *res.cpuset_cpus, "linux.resources.cpu.cpus", "cpuset");
  if (res.cpuset_mems)
    write_limit(dir, "cpuset.mems", *res.cpuset_mems, "linux.resources.cpu.mems", "cpuset");
  if (res.pids_limit) {
    int64_t v = *res.pids_limit;
    write_limit(dir, "pids.max", v <= 0 ? "max" : std::to_string(v), "linux.resources.pids.limit",
                "pids");
  }
  if (!res.devices.empty()) apply_v2_devices(dir, res.devices);
}

}  // namespace conductor::cgroup_backend
