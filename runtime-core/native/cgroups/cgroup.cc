// conductor::Cgroup: the directories, membership and removal; limits are in the backends.
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <set>
#include <sstream>

#include "cgroups/backend.h"
#include "cgroups/cgroups.h"
#include "common/error.h"
#include "common/fs.h"

namespace conductor {

using cgroup_backend::apply_v1;
using cgroup_backend::apply_v2;

namespace {

// Waits between retries start short (a cgroup usually empties within a millisecond of its last
// task exiting) and grow to 10 ms; `attempt` counts from 0.
void backoff(int attempt) {
  long us = attempt < 7 ? 100L << attempt : 10000L;
  timespec ts{0, us * 1000L};
  nanosleep(&ts, nullptr);
}

std::vector<pid_t> read_procs(const std::string& dir) {
  std::vector<pid_t> out;
  auto s = read_file_if_exists(dir + "/cgroup.procs");
  if (!s) return out;
  std::istringstream in(*s);
  long p;
  while (in >> p) out.push_back(static_cast<pid_t>(p));
  return out;
}

// Who holds a cgroup a new container was to have: its first processes (pid and command), and
// what usually causes it, so the person reading it knows where to look.
std::string occupied_message(const std::string& dir, const std::vector<pid_t>& procs) {
  std::string who;
  for (size_t i = 0; i < procs.size() && i < 3; i++) {
    auto comm = read_file_if_exists("/proc/" + std::to_string(procs[i]) + "/comm");
    std::string name = comm ? *comm : "?";
    while (!name.empty() && name.back() == '\n') name.pop_back();
    who += (i ? ", " : "") + std::to_string(procs[i]) + " (" + name + ")";
  }
  if (procs.size() > 3) who += ", ...";
  return "cgroup `" + dir + "` already holds processes: pid " + who +
         ". Another container has this cgroups path: one with the same id under another runtime "
         "root, or another Conductor installation using the same cgroup parent (give each state "
         "dir its own --installation)";
}

// In a v1 cpuset hierarchy a new cgroup starts with empty cpus/mems and refuses tasks until
// they are set: copy them down from the nearest parent that has them (runc does the same).
void init_cpuset_v1(const std::string& mount, const std::string& path) {
  std::string dir = mount;
  std::string cpus = trim(read_file(mount + "/cpuset.cpus"));
  std::string mems = trim(read_file(mount + "/cpuset.mems"));
  std::istringstream in(path.substr(1));
  std::string part;
  while (std::getline(in, part, '/')) {
    dir += "/" + part;
    if (trim(read_file(dir + "/cpuset.cpus")).empty()) write_file(dir + "/cpuset.cpus", cpus);
    if (trim(read_file(dir + "/cpuset.mems")).empty()) write_file(dir + "/cpuset.mems", mems);
    cpus = trim(read_file(dir + "/cpuset.cpus"));
    mems = trim(read_file(dir + "/cpuset.mems"));
  }
}

// mkdir of the leaf, falling back to mkdir -p when a parent is missing. The fallback tolerates a
// concurrent remove of an empty shared parent (another container's destroy() removing
// /conductor just as we create /conductor/ID): it retries a few times.
void mkdir_cgroup(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) == 0) return;
  if (errno != ENOENT && errno != EEXIST) throw_errno("mkdir `" + dir + "`");
  for (int attempt = 0;; ++attempt) {
    try {
      mkdir_p(dir, 0755);
      return;
    } catch (const Error& e) {
      if (e.code() != ENOENT || attempt >= 5) throw;
    }
  }
}

}  // namespace

Cgroup::Cgroup(CgroupLayout layout, std::string path)
    : layout_(std::move(layout)), path_(std::move(path)) {
  validate_cgroup_path(path_);
}

std::string Cgroup::dir_for(const std::string& controller) const {
  if (layout_.mode == CgroupMode::V2) return layout_.unified + path_;
  auto it = layout_.v1.find(controller);
  if (it == layout_.v1.end()) return "";
  return it->second + path_;
}

std::vector<std::string> Cgroup::dirs() const {
  std::vector<std::string> out;
  std::set<std::string> seen;
  if (layout_.mode != CgroupMode::V2) {
    for (const auto& [ctrl, mount] : layout_.v1) {
      if (seen.insert(mount).second) out.push_back(mount + path_);
    }
  }
  if (!layout_.unified.empty()) out.push_back(layout_.unified + path_);
  return out;
}

bool Cgroup::exists() const {
  for (const auto& d : dirs())
    if (path_exists(d)) return true;
  return false;
}

void Cgroup::create(const CgroupResources& wanted, pid_t pid) {
  for (const auto& d : dirs()) {
    auto procs = read_procs(d);
    if (!procs.empty()) throw Error(occupied_message(d, procs), EEXIST);
  }
  try {
    if (layout_.mode == CgroupMode::V2) {
      mkdir_cgroup(layout_.unified + path_);
      cgroup_backend::enable_v2_controllers(layout_.unified, layout_.unified + path_);
    } else {
      for (const auto& d : dirs()) mkdir_cgroup(d);
      auto cs = layout_.v1.find("cpuset");
      if (cs != layout_.v1.end()) init_cpuset_v1(cs->second, path_);
    }
    // Device rules go first: v1 applies them as "deny all" then one allow at a time, and a task
    // already inside would see the gap (the init is creating /dev nodes meanwhile). Then the
    // join, so the RCU grace period a v1 attach waits for passes while the other limits are
    // written; the joining task is the runtime's own init, which runs no container code until
    // GO, after all limits are in place.
    CgroupResources devices_only;
    devices_only.devices = wanted.devices;
    devices_only.ebpf_devices_on_hybrid = wanted.ebpf_devices_on_hybrid;
    apply(devices_only);
    if (pid > 0) add_process(pid);
    CgroupResources rest = wanted;
    rest.devices.clear();
    apply(rest);
  } catch (const Error& e) {
    try {
      destroy();
    } catch (const Error&) {
      // The creation error is the one to report; a leftover directory is named by the next run.
    }
    throw e.wrap("cgroup " + path_);
  }
}

void Cgroup::apply(const CgroupResources& res) {
  if (layout_.mode == CgroupMode::V2) {
    apply_v2(layout_.unified + path_, res);
  } else {
    apply_v1(*this, res);
    // On a hybrid host the unified hierarchy carries no resource controllers, but eBPF device
    // programs attached to it are enforced on top of the v1 devices controller. Not by default
    // (loading the program costs about a millisecond and v1 already enforces the rules); on
    // request, which also lets the v2 device filter be tested on hybrid hosts.
    if (layout_.mode == CgroupMode::Hybrid && res.ebpf_devices_on_hybrid && !res.devices.empty())
      cgroup_backend::apply_v2_devices(layout_.unified + path_, res.devices);
  }
}

void Cgroup::add_process(pid_t pid) {
  const std::string p = std::to_string(pid);
  for (const auto& d : dirs()) {
    try {
      write_file(d + "/cgroup.procs", p);
    } catch (const Error& e) {
      throw e.wrap("join cgroup");
    }
  }
}

std::vector<pid_t> Cgroup::pids() const {
  std::set<pid_t> all;
  for (const auto& d : dirs())
    for (pid_t p : read_procs(d)) all.insert(p);
  return {all.begin(), all.end()};
}

void Cgroup::destroy() {
  auto dirs_ = dirs();
  // Kill what is left. v2 has cgroup.kill (5.14+); v1 freezes first so nothing forks while we
  // kill, then thaws so the SIGKILLs are delivered.
  std::string unified_kill =
      layout_.unified.empty() ? "" : layout_.unified + path_ + "/cgroup.kill";
  std::string freezer = dir_for("freezer");
  for (int round = 0; round < 300; ++round) {
    auto left = pids();
    if (left.empty()) break;
    if (layout_.mode == CgroupMode::V2 && path_exists(unified_kill)) {
      write_file(unified_kill, "1");
    } else {
      bool frozen = !freezer.empty() && path_exists(freezer + "/freezer.state");
      if (frozen) write_file(freezer + "/freezer.state", "FROZEN");
      for (pid_t p : left) ::kill(p, SIGKILL);
      if (frozen) write_file(freezer + "/freezer.state", "THAWED");
    }
    backoff(round);
  }
  // rmdir each hierarchy's directory, then its parents while they are empty (leave the host as
  // it was: no empty /conductor left behind). EBUSY while dying tasks are released: retry.
  for (const auto& d : dirs_) {
    for (int i = 0;; ++i) {
      if (::rmdir(d.c_str()) == 0 || errno == ENOENT) break;
      if (errno != EBUSY || i == 300) throw_errno("rmdir `" + d + "`");
      backoff(i);
    }
  }
  std::string parent = path_.substr(0, path_.rfind('/'));
  while (!parent.empty()) {
    bool any = false;
    for (const auto& d : dirs_) {
      std::string hier = d.substr(0, d.size() - path_.size());
      if (::rmdir((hier + parent).c_str()) == 0) any = true;
    }
    (void)any;
    parent = parent.substr(0, parent.rfind('/'));
  }
}

}  // namespace conductor
