// Cgroups for containers on cgroup v1, v2 and hybrid hosts (v1 controllers plus a cgroup2
// mount, as on this machine). Split as crun does: layout detection here, the v1 and v2
// backends side by side (cgroup_v1.cc, cgroup_v2.cc), statistics in stats.cc.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace conductor {

enum class CgroupMode { V1, V2, Hybrid };

struct CgroupLayout {
  CgroupMode mode = CgroupMode::V2;
  // v1 (and hybrid): controller name → its hierarchy's mount point. Co-mounted controllers
  // ("cpu,cpuacct") map each name to the same mount. Named hierarchies ("name=systemd") skipped.
  std::map<std::string, std::string> v1;
  // The cgroup2 mount: the only hierarchy on v2, the extra one on hybrid hosts ("" if none).
  std::string unified;

  // Reads /proc/self/mountinfo. CONDUCTOR_CGROUP_ROOT and CONDUCTOR_CGROUP_MODE (v1|v2) override
  // it for tests that exercise a backend this host does not have (a fake tree on tmpfs).
  static CgroupLayout detect();
  std::string describe() const;
};

// linux.resources, the subset Conductor applies. Unset fields are left alone.
struct CgroupResources {
  std::optional<int64_t> memory_limit;        // bytes, -1 = unlimited
  std::optional<int64_t> memory_swap;         // memory+swap bytes (v1 semantics), -1 = unlimited
  std::optional<int64_t> memory_reservation;  // v1 soft limit, v2 memory.low
  std::optional<uint64_t> memory_swappiness;  // v1 only (0..100)
  bool memory_disable_oom_killer = false;     // v1 only (memory.oom_control)
  std::optional<uint64_t> cpu_shares;         // v1 shares; v2 weight = 1 + ((shares-2)*9999)/262142
  std::optional<int64_t> cpu_quota;           // µs per period, -1 = unlimited
  std::optional<uint64_t> cpu_period;         // µs
  std::optional<std::string> cpuset_cpus, cpuset_mems;
  std::optional<int64_t> pids_limit;  // -1 or 0 = unlimited (as runc)
  // linux.resources.blockIO. Weights 10..1000 (v2: converted to io.weight's 1..10000).
  struct BlkioWeightDevice {
    int64_t major = 0, minor = 0;
    std::optional<uint16_t> weight, leaf_weight;
  };
  struct BlkioThrottle {
    int64_t major = 0, minor = 0;
    uint64_t rate = 0;  // bytes or operations per second
  };
  std::optional<uint16_t> blkio_weight, blkio_leaf_weight;
  std::vector<BlkioWeightDevice> blkio_weight_devices;
  std::vector<BlkioThrottle> blkio_read_bps, blkio_write_bps, blkio_read_iops, blkio_write_iops;

  struct Device {
    bool allow = false;
    char type = 'a';                 // a, c, b
    int64_t major = -1, minor = -1;  // -1 = wildcard
    std::string access = "rwm";
  };
  std::vector<Device> devices;  // rules in order; empty = no device rules
  // On hybrid hosts the v1 devices controller enforces the rules, as runc does; this adds the
  // v2 eBPF filter on the unified hierarchy as well (annotation conductor.dev/device-filter=ebpf).
  bool ebpf_devices_on_hybrid = false;
};

// What cAdvisor and docker stats read from a container's cgroup, on v1, v2 and hybrid hosts
// (stats.cc). Counters are cumulative since the cgroup was made; a file a host lacks reads 0.
struct CgroupStats {
  uint64_t cpu_usage_ns = 0;
  uint64_t cpu_user_ns = 0;    // v1 cpuacct.usage_user (or cpuacct.stat ticks), v2 user_usec
  uint64_t cpu_system_ns = 0;  // v1 cpuacct.usage_sys (or cpuacct.stat ticks), v2 system_usec
  uint64_t cpu_periods = 0;    // CFS enforcement periods elapsed (cpu.stat nr_periods)
  uint64_t cpu_throttled_periods = 0;  // of which throttled (nr_throttled)
  uint64_t cpu_throttled_ns = 0;       // time throttled (throttled_time, throttled_usec)
  int64_t cpu_quota_us = -1;           // per period; -1 = no quota
  uint64_t cpu_period_us = 0;          // 0 = unknown
  uint64_t memory_usage = 0;           // bytes in use, page cache included
  uint64_t memory_working_set = 0;     // usage minus inactive file cache (as the kubelet reports)
  uint64_t memory_rss = 0;             // anonymous memory (v1 total_rss, v2 anon)
  uint64_t memory_cache = 0;           // page cache (v1 total_cache, v2 file)
  uint64_t memory_failcnt = 0;  // times usage hit the limit (v1 failcnt, v2 memory.events max)
  int64_t memory_limit = -1;    // -1 = unlimited
  uint64_t pids_current = 0;
  int64_t pids_limit = -1;
  uint64_t processes = 0;  // cgroup.procs
  uint64_t threads = 0;    // v1 tasks, v2 cgroup.threads
  uint64_t oom_kills = 0;
};

// One interface of a network namespace, as /proc/PID/net/dev counts it.
struct InterfaceStats {
  std::string name;
  uint64_t rx_bytes = 0, rx_packets = 0, rx_errors = 0, rx_dropped = 0;
  uint64_t tx_bytes = 0, tx_packets = 0, tx_errors = 0, tx_dropped = 0;
};

// The interfaces of process `pid`'s network namespace but `lo` (cAdvisor leaves it out too).
// Throws ENOENT/ESRCH when the process is gone.
std::vector<InterfaceStats> net_dev_stats(pid_t pid);

// One container's cgroup: `path` is linux.cgroupsPath (absolute, e.g. "/conductor/abc").
class Cgroup {
 public:
  Cgroup(CgroupLayout layout, std::string path);

  const std::string& path() const { return path_; }
  const CgroupLayout& layout() const { return layout_; }

  // Creates the directories (v2: enables the needed controllers in each parent's
  // cgroup.subtree_control), moves `pid` in (when > 0) and applies the limits. Throws if the
  // cgroup already holds processes; on failure removes what it made.
  void create(const CgroupResources& wanted, pid_t pid = 0);
  // Writes the limits; a limit the host cannot apply is an error naming the field.
  void apply(const CgroupResources& res);
  void add_process(pid_t pid);
  std::vector<pid_t> pids() const;
  // Kills every process left (SIGKILL, through the freezer on v1 / cgroup.kill on v2 when
  // available) and removes the directories. Missing directories are fine.
  void destroy();
  bool exists() const;
  CgroupStats stats() const;
  uint64_t oom_kills() const;

  // Directory of this cgroup in the hierarchy that holds `controller` (v2: the one directory).
  std::string dir_for(const std::string& controller) const;
  // Every directory that make up this cgroup (one per hierarchy).
  std::vector<std::string> dirs() const;

 private:
  CgroupLayout layout_;
  std::string path_;
};

// "/conductor/abc" must be absolute, normalized and free of "..".
void validate_cgroup_path(const std::string& path);

}  // namespace conductor
