// The two backends behind conductor::Cgroup. Internal to cgroups/.
#pragma once

#include <string>

#include "cgroups/cgroups.h"

namespace conductor::cgroup_backend {

// v1: one directory per hierarchy; `dir_of(controller)` is "" when that controller is not
// mounted.
void apply_v1(const Cgroup& cg, const CgroupResources& res);
// v2: one directory; controllers must have been enabled in the parents (enable_v2_controllers).
void apply_v2(const std::string& dir, const CgroupResources& res);
// Enables the controllers Conductor uses in cgroup.subtree_control from `root` down to the
// parent of `dir`. Controllers the hierarchy does not offer are skipped (apply_v2 reports them
// if a limit needs one).
void enable_v2_controllers(const std::string& root, const std::string& dir);
// Devices rules on v2 are an eBPF program attached to the cgroup (devices_ebpf.cc).
void apply_v2_devices(const std::string& dir, const std::vector<CgroupResources::Device>& rules);

uint64_t shares_to_weight(uint64_t shares);

// "major:minor", as blkio and io files name a device.
inline std::string device_number(int64_t major, int64_t minor) {
  return std::to_string(major) + ":" + std::to_string(minor);
}

// Reads "key value" lines (memory.stat, cpu.stat, memory.events, memory.oom_control).
uint64_t read_keyed(const std::string& path, const std::string& key, uint64_t dflt = 0);

}  // namespace conductor::cgroup_backend
