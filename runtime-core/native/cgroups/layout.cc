#include <cstdlib>
#include <set>
#include <sstream>

#include "cgroups/cgroups.h"
#include "common/error.h"
#include "common/fs.h"

namespace conductor {

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) out.push_back(cur);
  return out;
}

// mountinfo escapes spaces and a few others as \040 etc.
std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = (s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0');
      out.push_back(static_cast<char>(v));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

const std::set<std::string> kKnownControllers = {
    "cpu",   "cpuacct", "cpuset",  "memory",   "pids",       "devices", "freezer",
    "blkio", "hugetlb", "net_cls", "net_prio", "perf_event", "rdma",    "misc"};

CgroupLayout fake_layout(const std::string& root, const std::string& mode) {
  CgroupLayout l;
  if (mode == "v2") {
    l.mode = CgroupMode::V2;
    l.unified = root;
    return l;
  }
  if (mode != "v1" && mode != "hybrid")
    throw Error("CONDUCTOR_CGROUP_MODE must be v1, hybrid or v2, not `" + mode + "`");
  for (const auto& name : list_dir(root)) {
    if (name == "unified") continue;
    for (const auto& c : split(name, ',')) {
      if (kKnownControllers.count(c)) l.v1[c] = root + "/" + name;
    }
  }
  l.mode = CgroupMode::V1;
  if (mode == "hybrid") {
    l.mode = CgroupMode::Hybrid;
    l.unified = root + "/unified";
  }
  return l;
}

}  // namespace

CgroupLayout CgroupLayout::detect() {
  const char* fake_root = std::getenv("CONDUCTOR_CGROUP_ROOT");
  if (fake_root && *fake_root) {
    const char* mode = std::getenv("CONDUCTOR_CGROUP_MODE");
    return fake_layout(fake_root, mode ? mode : "v2");
  }
  CgroupLayout l;
  std::istringstream in(read_file("/proc/self/mountinfo"));
  std::string line;
  while (std::getline(in, line)) {
    // id parent maj:min root mountpoint opts [optional...] - fstype source superopts
    auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    auto left = split(line.substr(0, dash), ' ');
    auto right = split(line.substr(dash + 3), ' ');
    if (left.size() < 5 || right.size() < 3) continue;
    const std::string mountpoint = unescape(left[4]);
    const std::string& fstype = right[0];
    // Only hierarchies mounted at their root: a bind of a sub-cgroup is not where we manage.
    if (left[3] != "/") continue;
    if (fstype == "cgroup2") {
      if (l.unified.empty()) l.unified = mountpoint;
    } else if (fstype == "cgroup") {
      for (const auto& opt : split(right[2], ',')) {
        if (kKnownControllers.count(opt) && !l.v1.count(opt)) l.v1[opt] = mountpoint;
      }
    }
  }
  if (!l.v1.empty()) {
    l.mode = l.unified.empty() ? CgroupMode::V1 : CgroupMode::Hybrid;
  } else if (!l.unified.empty()) {
    l.mode = CgroupMode::V2;
  } else {
    throw Error("no cgroup hierarchy is mounted (looked for cgroup and cgroup2 in mountinfo)");
  }
  return l;
}

std::string CgroupLayout::describe() const {
  switch (mode) {
    case CgroupMode::V1:
      return "v1";
    case CgroupMode::V2:
      return "v2";
    case CgroupMode::Hybrid:
      return "hybrid";
  }
  return "?";
}

void validate_cgroup_path(const std::string& path) {
  if (path.empty() || path[0] != '/')
    throw Error("linux.cgroupsPath `" + path + "` must be an absolute path like /conductor/ID");
  for (const auto& part : split(path.substr(1), '/')) {
    if (part.empty() || part == "." || part == "..")
      throw Error("linux.cgroupsPath `" + path + "` must be normalized, without `.`, `..` or //");
  }
}

}  // namespace conductor
