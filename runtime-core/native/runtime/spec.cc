#include "runtime/spec.h"

#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <set>

#include "common/error.h"
#include "common/fs.h"

namespace conductor {

using json = nlohmann::json;

namespace {

// Every access goes through these so a wrong type names the field: "process.args[2]: must be a
// string".
const json& field(const json& obj, const char* key, const std::string& where) {
  static const json null_json;
  if (!obj.is_object()) throw Error(where + ": must be an object");
  auto it = obj.find(key);
  return it == obj.end() ? null_json : *it;
}

std::string as_string(const json& v, const std::string& where) {
  if (!v.is_string()) throw Error(where + ": must be a string");
  return v.get<std::string>();
}

bool as_bool(const json& v, const std::string& where) {
  if (!v.is_boolean()) throw Error(where + ": must be true or false");
  return v.get<bool>();
}

int64_t as_int(const json& v, const std::string& where) {
  if (!v.is_number_integer()) throw Error(where + ": must be an integer");
  return v.get<int64_t>();
}

uint64_t as_uint(const json& v, const std::string& where) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0)
    return static_cast<uint64_t>(v.get<int64_t>());
  throw Error(where + ": must be a non-negative integer");
}

std::vector<std::string> as_strings(const json& v, const std::string& where) {
  std::vector<std::string> out;
  if (v.is_null()) return out;
  if (!v.is_array()) throw Error(where + ": must be an array of strings");
  for (size_t i = 0; i < v.size(); ++i)
    out.push_back(as_string(v[i], where + "[" + std::to_string(i) + "]"));
  return out;
}

const std::map<std::string, int> kCaps = {
    {"CAP_CHOWN", 0},
    {"CAP_DAC_OVERRIDE", 1},
    {"CAP_DAC_READ_SEARCH", 2},
    {"CAP_FOWNER", 3},
    {"CAP_FSETID", 4},
    {"CAP_KILL", 5},
    {"CAP_SETGID", 6},
    {"CAP_SETUID", 7},
    {"CAP_SETPCAP", 8},
    {"CAP_LINUX_IMMUTABLE", 9},
    {"CAP_NET_BIND_SERVICE", 10},
    {"CAP_NET_BROADCAST", 11},
    {"CAP_NET_ADMIN", 12},
    {"CAP_NET_RAW", 13},
    {"CAP_IPC_LOCK", 14},
    {"CAP_IPC_OWNER", 15},
    {"CAP_SYS_MODULE", 16},
    {"CAP_SYS_RAWIO", 17},
    {"CAP_SYS_CHROOT", 18},
    {"CAP_SYS_PTRACE", 19},
    {"CAP_SYS_PACCT", 20},
    {"CAP_SYS_ADMIN", 21},
    {"CAP_SYS_BOOT", 22},
    {"CAP_SYS_NICE", 23},
    {"CAP_SYS_RESOURCE", 24},
    {"CAP_SYS_TIME", 25},
    {"CAP_SYS_TTY_CONFIG", 26},
    {"CAP_MKNOD", 27},
    {"CAP_LEASE", 28},
    {"CAP_AUDIT_WRITE", 29},
    {"CAP_AUDIT_CONTROL", 30},
    {"CAP_SETFCAP", 31},
    {"CAP_MAC_OVERRIDE", 32},
    {"CAP_MAC_ADMIN", 33},
    {"CAP_SYSLOG", 34},
    {"CAP_WAKE_ALARM", 35},
    {"CAP_BLOCK_SUSPEND", 36},
    {"CAP_AUDIT_READ", 37},
    {"CAP_PERFMON", 38},
    {"CAP_BPF", 39},
    {"CAP_CHECKPOINT_RESTORE", 40},
};

const std::map<std::string, int> kRlimits = {
    {"RLIMIT_CPU", RLIMIT_CPU},           {"RLIMIT_FSIZE", RLIMIT_FSIZE},
    {"RLIMIT_DATA", RLIMIT_DATA},         {"RLIMIT_STACK", RLIMIT_STACK},
    {"RLIMIT_CORE", RLIMIT_CORE},         {"RLIMIT_RSS", RLIMIT_RSS},
    {"RLIMIT_NPROC", RLIMIT_NPROC},       {"RLIMIT_NOFILE", RLIMIT_NOFILE},
    {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK},   {"RLIMIT_AS", RLIMIT_AS},
    {"RLIMIT_LOCKS", RLIMIT_LOCKS},       {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING},
    {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE}, {"RLIMIT_NICE", RLIMIT_NICE},
    {"RLIMIT_RTPRIO", RLIMIT_RTPRIO},     {"RLIMIT_RTTIME", RLIMIT_RTTIME},
};

const std::map<std::string, int> kNamespaces = {
    {"pid", CLONE_NEWPID},   {"network", CLONE_NEWNET}, {"mount", CLONE_NEWNS},
    {"ipc", CLONE_NEWIPC},   {"uts", CLONE_NEWUTS},     {"cgroup", CLONE_NEWCGROUP},
    {"user", CLONE_NEWUSER}, {"time", CLONE_NEWTIME},
};

struct MountOpt {
  unsigned long flag;
  bool clear;
};
const std::map<std::string, MountOpt> kMountFlags = {
    {"ro", {MS_RDONLY, false}},
    {"rw", {MS_RDONLY, true}},
    {"nosuid", {MS_NOSUID, false}},
    {"suid", {MS_NOSUID, true}},
    {"nodev", {MS_NODEV, false}},
    {"dev", {MS_NODEV, true}},
    {"noexec", {MS_NOEXEC, false}},
    {"exec", {MS_NOEXEC, true}},
    {"sync", {MS_SYNCHRONOUS, false}},
    {"async", {MS_SYNCHRONOUS, true}},
    {"dirsync", {MS_DIRSYNC, false}},
    {"remount", {MS_REMOUNT, false}},
    {"mand", {MS_MANDLOCK, false}},
    {"nomand", {MS_MANDLOCK, true}},
    {"atime", {MS_NOATIME, true}},
    {"noatime", {MS_NOATIME, false}},
    {"diratime", {MS_NODIRATIME, true}},
    {"nodiratime", {MS_NODIRATIME, false}},
    {"relatime", {MS_RELATIME, false}},
    {"norelatime", {MS_RELATIME, true}},
    {"strictatime", {MS_STRICTATIME, false}},
    {"nostrictatime", {MS_STRICTATIME, true}},
    {"defaults", {0, false}},
};
const std::map<std::string, unsigned long> kPropagation = {
    {"private", MS_PRIVATE},       {"rprivate", MS_PRIVATE | MS_REC},
    {"slave", MS_SLAVE},           {"rslave", MS_SLAVE | MS_REC},
    {"shared", MS_SHARED},         {"rshared", MS_SHARED | MS_REC},
    {"unbindable", MS_UNBINDABLE}, {"runbindable", MS_UNBINDABLE | MS_REC},
};

// The runtime-spec's hook stages, in the order they run, and where Hooks keeps each.
const std::pair<const char*, std::vector<Hook> Hooks::*> kHookStages[] = {
    {"prestart", &Hooks::prestart},
    {"createRuntime", &Hooks::create_runtime},
    {"createContainer", &Hooks::create_container},
    {"startContainer", &Hooks::start_container},
    {"poststart", &Hooks::poststart},
    {"poststop", &Hooks::poststop}};

bool selinux_enabled() { return path_exists("/sys/fs/selinux/enforce"); }

std::string abs_path(const std::string& p, const std::string& base) {
  if (!p.empty() && p[0] == '/') return p;
  return base + "/" + p;
}

void check_container_path(const std::string& p, const std::string& where) {
  if (p.empty() || p[0] != '/') throw Error(where + ": `" + p + "` must be an absolute path");
  if (p.find('\0') != std::string::npos) throw Error(where + ": contains a NUL byte");
}

Capabilities parse_caps(const json& v, const std::string& where) {
  Capabilities c;
  auto set = [&](const char* key, std::vector<int>& out) {
    for (const auto& name : as_strings(field(v, key, where), where + "." + key)) {
      try {
        out.push_back(capability_from_name(name));
      } catch (const Error& e) {
        throw e.wrap(where + "." + key);
      }
    }
  };
  set("bounding", c.bounding);
  set("effective", c.effective);
  set("permitted", c.permitted);
  set("inheritable", c.inheritable);
  set("ambient", c.ambient);
  return c;
}

Process parse_process_json(const json& p, const std::string& where) {
  Process out;
  if (!p.is_object()) throw Error(where + ": must be an object");
  if (field(p, "terminal", where).is_boolean() && field(p, "terminal", where).get<bool>())
    throw Error(where + ".terminal: true is not supported (stdio is inherited or redirected)");
  for (const char* unsupported : {"apparmorProfile", "selinuxLabel", "ioPriority", "scheduler",
                                  "execCPUAffinity", "consoleSize"}) {
    if (!field(p, unsupported, where).is_null())
      throw Error(where + "." + unsupported + ": not supported by conductor-runtime");
  }
  out.args = as_strings(field(p, "args", where), where + ".args");
  if (out.args.empty()) throw Error(where + ".args: must name a program to run");
  out.env = as_strings(field(p, "env", where), where + ".env");
  for (size_t i = 0; i < out.env.size(); ++i) {
    if (out.env[i].find('=') == std::string::npos || out.env[i][0] == '=')
      throw Error(where + ".env[" + std::to_string(i) + "]: `" + out.env[i] +
                  "` is not NAME=VALUE");
  }
  const json& cwd = field(p, "cwd", where);
  if (!cwd.is_null()) out.cwd = as_string(cwd, where + ".cwd");
  check_container_path(out.cwd, where + ".cwd");
  const json& user = field(p, "user", where);
  if (!user.is_null()) {
    std::string w = where + ".user";
    if (!field(user, "username", w).is_null())
      throw Error(w + ".username: not supported on Linux (use uid/gid)");
    out.uid = static_cast<uid_t>(as_uint(field(user, "uid", w), w + ".uid"));
    out.gid = static_cast<gid_t>(as_uint(field(user, "gid", w), w + ".gid"));
    const json& add = field(user, "additionalGids", w);
    if (!add.is_null()) {
      if (!add.is_array()) throw Error(w + ".additionalGids: must be an array");
      for (size_t i = 0; i < add.size(); ++i)
        out.additional_gids.push_back(
            static_cast<gid_t>(as_uint(add[i], w + ".additionalGids[" + std::to_string(i) + "]")));
    }
    if (!field(user, "umask", w).is_null())
      out.umask = static_cast<mode_t>(as_uint(field(user, "umask", w), w + ".umask"));
  }
  const json& caps = field(p, "capabilities", where);
  if (!caps.is_null()) out.capabilities = parse_caps(caps, where + ".capabilities");
  const json& rl = field(p, "rlimits", where);
  if (!rl.is_null()) {
    if (!rl.is_array()) throw Error(where + ".rlimits: must be an array");
    for (size_t i = 0; i < rl.size(); ++i) {
      std::string w = where + ".rlimits[" + std::to_string(i) + "]";
      std::string type = as_string(field(rl[i], "type", w), w + ".type");
      auto it = kRlimits.find(type);
      if (it == kRlimits.end()) throw Error(w + ".type: unknown rlimit `" + type + "`");
      uint64_t soft = as_uint(field(rl[i], "soft", w), w + ".soft");
      uint64_t hard = as_uint(field(rl[i], "hard", w), w + ".hard");
      if (soft > hard)
        throw Error(w + ": soft limit " + std::to_string(soft) + " exceeds hard " +
                    std::to_string(hard));
      out.rlimits.push_back({it->second, type, soft, hard});
    }
  }
  const json& nnp = field(p, "noNewPrivileges", where);
  if (!nnp.is_null()) out.no_new_privileges = as_bool(nnp, where + ".noNewPrivileges");
  const json& oom = field(p, "oomScoreAdj", where);
  if (!oom.is_null()) {
    int64_t v = as_int(oom, where + ".oomScoreAdj");
    if (v < -1000 || v > 1000) throw Error(where + ".oomScoreAdj: must be within -1000..1000");
    out.oom_score_adj = static_cast<int>(v);
  }
  return out;
}

std::vector<IdMapping> parse_id_mappings(const json& v, const std::string& where);

Mount parse_mount(const json& m, const std::string& where) {
  Mount out;
  out.destination = as_string(field(m, "destination", where), where + ".destination");
  check_container_path(out.destination, where + ".destination");
  const json& type = field(m, "type", where);
  if (!type.is_null()) out.type = as_string(type, where + ".type");
  const json& src = field(m, "source", where);
  if (!src.is_null()) out.source = as_string(src, where + ".source");
  out.uid_mappings = parse_id_mappings(field(m, "uidMappings", where), where + ".uidMappings");
  out.gid_mappings = parse_id_mappings(field(m, "gidMappings", where), where + ".gidMappings");
  if (out.uid_mappings.empty() != out.gid_mappings.empty())
    throw Error(where + ": an idmapped mount needs both uidMappings and gidMappings");
  out.idmap = !out.uid_mappings.empty();
  std::string data;
  for (const auto& opt : as_strings(field(m, "options", where), where + ".options")) {
    if (opt == "bind" || opt == "rbind") {
      out.bind = true;
      out.recursive = out.recursive || opt == "rbind";
    } else if (auto f = kMountFlags.find(opt); f != kMountFlags.end()) {
      if (f->second.clear) {
        out.flags &= ~f->second.flag;
        out.clear_flags |= f->second.flag;
      } else {
        out.flags |= f->second.flag;
        out.clear_flags &= ~f->second.flag;
      }
    } else if (auto p = kPropagation.find(opt); p != kPropagation.end()) {
      out.propagation = p->second;
    } else if (opt == "idmap" || opt == "ridmap") {
      out.idmap = true;
      out.idmap_recursive = opt == "ridmap";
    } else if (opt == "tmpcopyup" || opt.rfind("idmap", 0) == 0) {
      throw Error(where + ".options: `" + opt + "` is not supported");
    } else {
      data += (data.empty() ? "" : ",") + opt;
    }
  }
  out.data = data;
  if (out.type == "bind") out.bind = true;
  if (out.bind && out.source.empty()) throw Error(where + ".source: a bind mount needs a source");
  if (!out.bind && out.type.empty()) throw Error(where + ".type: required for a non-bind mount");
  if (out.idmap && !out.bind) throw Error(where + ": idmapped mounts are bind mounts only");
  return out;
}

uint16_t blkio_weight(const json& v, const std::string& where) {
  uint64_t w = as_uint(v, where);
  if (w < 10 || w > 1000) throw Error(where + ": must be within 10..1000");
  return static_cast<uint16_t>(w);
}

void parse_block_io(const json& b, const std::string& where, CgroupResources& out) {
  if (!b.is_object()) throw Error(where + ": must be an object");
  for (const auto& [k, v] : b.items()) {
    if (k != "weight" && k != "leafWeight" && k != "weightDevice" && k != "throttleReadBpsDevice" &&
        k != "throttleWriteBpsDevice" && k != "throttleReadIOPSDevice" &&
        k != "throttleWriteIOPSDevice")
      throw Error(where + "." + k + ": not supported by conductor-runtime");
    (void)v;
  }
  if (!field(b, "weight", where).is_null())
    out.blkio_weight = blkio_weight(field(b, "weight", where), where + ".weight");
  if (!field(b, "leafWeight", where).is_null())
    out.blkio_leaf_weight = blkio_weight(field(b, "leafWeight", where), where + ".leafWeight");
  auto device = [&](const json& d, const std::string& w, int64_t& major, int64_t& minor) {
    major = as_int(field(d, "major", w), w + ".major");
    minor = as_int(field(d, "minor", w), w + ".minor");
    if (major < 0 || minor < 0) throw Error(w + ": major and minor must not be negative");
  };
  const json& wd = field(b, "weightDevice", where);
  if (!wd.is_null()) {
    if (!wd.is_array()) throw Error(where + ".weightDevice: must be an array");
    for (size_t i = 0; i < wd.size(); ++i) {
      std::string w = where + ".weightDevice[" + std::to_string(i) + "]";
      CgroupResources::BlkioWeightDevice d;
      device(wd[i], w, d.major, d.minor);
      if (!field(wd[i], "weight", w).is_null())
        d.weight = blkio_weight(field(wd[i], "weight", w), w + ".weight");
      if (!field(wd[i], "leafWeight", w).is_null())
        d.leaf_weight = blkio_weight(field(wd[i], "leafWeight", w), w + ".leafWeight");
      out.blkio_weight_devices.push_back(d);
    }
  }
  const std::pair<const char*, std::vector<CgroupResources::BlkioThrottle>*> throttles[] = {
      {"throttleReadBpsDevice", &out.blkio_read_bps},
      {"throttleWriteBpsDevice", &out.blkio_write_bps},
      {"throttleReadIOPSDevice", &out.blkio_read_iops},
      {"throttleWriteIOPSDevice", &out.blkio_write_iops}};
  for (const auto& [key, list] : throttles) {
    const json& t = field(b, key, where);
    if (t.is_null()) continue;
    if (!t.is_array()) throw Error(where + "." + key + ": must be an array");
    for (size_t i = 0; i < t.size(); ++i) {
      std::string w = where + "." + key + "[" + std::to_string(i) + "]";
      CgroupResources::BlkioThrottle x;
      device(t[i], w, x.major, x.minor);
      x.rate = as_uint(field(t[i], "rate", w), w + ".rate");
      list->push_back(x);
    }
  }
}

void parse_resources(const json& r, const std::string& where, CgroupResources& out,
                     std::vector<std::string>& warnings) {
  if (r.is_null()) return;
  for (const char* unsupported : {"hugepageLimits", "network", "rdma", "unified", "intelRdt"}) {
    if (!field(r, unsupported, where).is_null())
      throw Error(where + "." + unsupported + ": not supported by conductor-runtime");
  }
  const json& mem = field(r, "memory", where);
  if (!mem.is_null()) {
    std::string w = where + ".memory";
    for (const auto& [k, v] : mem.items()) {
      // Deprecated by the runtime-spec (1.1) and gone from the kernel (5.16): warned about and
      // ignored, as runc and crun do, not a reason to refuse the rest of the config.
      if (k == "kernel" || k == "kernelTCP") {
        warnings.push_back(w + "." + k + " ignored: deprecated by the runtime-spec");
        continue;
      }
      if (k != "limit" && k != "swap" && k != "reservation" && k != "disableOOMKiller" &&
          k != "swappiness")
        throw Error(w + "." + k + ": not supported by conductor-runtime");
      (void)v;
    }
    if (!field(mem, "limit", w).is_null())
      out.memory_limit = as_int(field(mem, "limit", w), w + ".limit");
    if (!field(mem, "swap", w).is_null())
      out.memory_swap = as_int(field(mem, "swap", w), w + ".swap");
    if (!field(mem, "reservation", w).is_null())
      out.memory_reservation = as_int(field(mem, "reservation", w), w + ".reservation");
    if (!field(mem, "swappiness", w).is_null()) {
      uint64_t v = as_uint(field(mem, "swappiness", w), w + ".swappiness");
      if (v > 100) throw Error(w + ".swappiness: must be within 0..100");
      out.memory_swappiness = v;
    }
    if (!field(mem, "disableOOMKiller", w).is_null())
      out.memory_disable_oom_killer =
          as_bool(field(mem, "disableOOMKiller", w), w + ".disableOOMKiller");
    if (out.memory_limit && *out.memory_limit == 0) out.memory_limit.reset();
  }
  const json& bio = field(r, "blockIO", where);
  if (!bio.is_null()) parse_block_io(bio, where + ".blockIO", out);
  const json& cpu = field(r, "cpu", where);
  if (!cpu.is_null()) {
    std::string w = where + ".cpu";
    for (const auto& [k, v] : cpu.items()) {
      if (k != "shares" && k != "quota" && k != "period" && k != "cpus" && k != "mems")
        throw Error(w + "." + k + ": not supported by conductor-runtime");
      (void)v;
    }
    if (!field(cpu, "shares", w).is_null())
      out.cpu_shares = as_uint(field(cpu, "shares", w), w + ".shares");
    if (!field(cpu, "quota", w).is_null())
      out.cpu_quota = as_int(field(cpu, "quota", w), w + ".quota");
    if (!field(cpu, "period", w).is_null())
      out.cpu_period = as_uint(field(cpu, "period", w), w + ".period");
    if (!field(cpu, "cpus", w).is_null())
      out.cpuset_cpus = as_string(field(cpu, "cpus", w), w + ".cpus");
    if (!field(cpu, "mems", w).is_null())
      out.cpuset_mems = as_string(field(cpu, "mems", w), w + ".mems");
    if (out.cpu_period && (*out.cpu_period < 1000 || *out.cpu_period > 1000000))
      throw Error(w + ".period: must be within 1000..1000000 µs");
    if (out.cpu_quota && *out.cpu_quota > 0 && *out.cpu_quota < 1000)
      throw Error(w + ".quota: must be at least 1000 µs (or -1 for no limit)");
  }
  const json& pids = field(r, "pids", where);
  if (!pids.is_null())
    out.pids_limit = as_int(field(pids, "limit", where + ".pids"), where + ".pids.limit");
  const json& devs = field(r, "devices", where);
  if (!devs.is_null()) {
    if (!devs.is_array()) throw Error(where + ".devices: must be an array");
    for (size_t i = 0; i < devs.size(); ++i) {
      std::string w = where + ".devices[" + std::to_string(i) + "]";
      CgroupResources::Device d;
      d.allow = as_bool(field(devs[i], "allow", w), w + ".allow");
      const json& t = field(devs[i], "type", w);
      std::string type = t.is_null() ? "a" : as_string(t, w + ".type");
      if (type != "a" && type != "c" && type != "b") throw Error(w + ".type: must be a, c or b");
      d.type = type[0];
      if (!field(devs[i], "major", w).is_null())
        d.major = as_int(field(devs[i], "major", w), w + ".major");
      if (!field(devs[i], "minor", w).is_null())
        d.minor = as_int(field(devs[i], "minor", w), w + ".minor");
      const json& acc = field(devs[i], "access", w);
      d.access = acc.is_null() ? "rwm" : as_string(acc, w + ".access");
      if (d.access.empty() || d.access.find_first_not_of("rwm") != std::string::npos)
        throw Error(w + ".access: must be a combination of r, w and m");
      out.devices.push_back(d);
    }
  }
}

SeccompSpec parse_seccomp(const json& s, const std::string& where) {
  SeccompSpec out;
  out.json = s.dump();
  out.default_action = as_string(field(s, "defaultAction", where), where + ".defaultAction");
  if (!field(s, "defaultErrnoRet", where).is_null())
    out.default_errno =
        static_cast<int>(as_uint(field(s, "defaultErrnoRet", where), where + ".defaultErrnoRet"));
  out.architectures = as_strings(field(s, "architectures", where), where + ".architectures");
  out.flags = as_strings(field(s, "flags", where), where + ".flags");
  if (!field(s, "listenerPath", where).is_null())
    throw Error(where + ".listenerPath: seccomp notify is not supported");
  const json& sys = field(s, "syscalls", where);
  if (!sys.is_null()) {
    if (!sys.is_array()) throw Error(where + ".syscalls: must be an array");
    for (size_t i = 0; i < sys.size(); ++i) {
      std::string w = where + ".syscalls[" + std::to_string(i) + "]";
      SeccompSpec::Rule rule;
      rule.names = as_strings(field(sys[i], "names", w), w + ".names");
      rule.action = as_string(field(sys[i], "action", w), w + ".action");
      if (!field(sys[i], "errnoRet", w).is_null())
        rule.errno_ret = static_cast<int>(as_uint(field(sys[i], "errnoRet", w), w + ".errnoRet"));
      const json& args = field(sys[i], "args", w);
      if (!args.is_null()) {
        for (size_t j = 0; j < args.size(); ++j) {
          std::string wa = w + ".args[" + std::to_string(j) + "]";
          SeccompSpec::Arg a;
          a.index = static_cast<unsigned>(as_uint(field(args[j], "index", wa), wa + ".index"));
          a.value = as_uint(field(args[j], "value", wa), wa + ".value");
          const json& v2 = field(args[j], "valueTwo", wa);
          a.value_two = v2.is_null() ? 0 : as_uint(v2, wa + ".valueTwo");
          a.op = as_string(field(args[j], "op", wa), wa + ".op");
          rule.args.push_back(a);
        }
      }
      out.syscalls.push_back(std::move(rule));
    }
  }
  return out;
}

Hook parse_hook(const json& h, const std::string& where) {
  Hook out;
  out.path = as_string(field(h, "path", where), where + ".path");
  check_container_path(out.path, where + ".path");
  out.args = as_strings(field(h, "args", where), where + ".args");
  out.env = as_strings(field(h, "env", where), where + ".env");
  const json& t = field(h, "timeout", where);
  if (!t.is_null()) {
    int64_t v = as_int(t, where + ".timeout");
    if (v <= 0) throw Error(where + ".timeout: must be a positive number of seconds");
    out.timeout = static_cast<int>(std::min<int64_t>(v, INT_MAX));
  }
  return out;
}

Hooks parse_hooks(const json& hooks) {
  Hooks out;
  if (hooks.is_null()) return out;
  if (!hooks.is_object()) throw Error("hooks: must be an object");
  for (const auto& [key, value] : hooks.items()) {
    bool known = false;
    for (const auto& [name, member] : kHookStages) known = known || key == name;
    if (!known) throw Error("hooks." + key + ": unknown hook stage");
    (void)value;
  }
  for (const auto& [name, member] : kHookStages) {
    const json& v = field(hooks, name, "hooks");
    if (v.is_null()) continue;
    std::string w = std::string("hooks.") + name;
    if (!v.is_array()) throw Error(w + ": must be an array");
    for (size_t i = 0; i < v.size(); ++i)
      (out.*member).push_back(parse_hook(v[i], w + "[" + std::to_string(i) + "]"));
  }
  return out;
}

std::vector<IdMapping> parse_id_mappings(const json& v, const std::string& where) {
  std::vector<IdMapping> out;
  if (v.is_null()) return out;
  if (!v.is_array()) throw Error(where + ": must be an array");
  for (size_t i = 0; i < v.size(); ++i) {
    std::string w = where + "[" + std::to_string(i) + "]";
    auto id = [&](const char* key) {
      uint64_t n = as_uint(field(v[i], key, w), w + "." + key);
      if (n > UINT32_MAX) throw Error(w + "." + key + ": must fit in 32 bits");
      return static_cast<uint32_t>(n);
    };
    IdMapping m{id("containerID"), id("hostID"), id("size")};
    if (m.size == 0) throw Error(w + ".size: must be at least 1");
    out.push_back(m);
  }
  // The kernel takes at most 340 lines (5 before Linux 4.15) per map.
  if (out.size() > 340) throw Error(where + ": more than 340 ranges");
  return out;
}

}  // namespace

bool Spec::has_new_ns(int flag) const {
  const NamespaceSpec* n = ns(flag);
  return n && n->path.empty();
}

const NamespaceSpec* Spec::ns(int flag) const {
  for (const auto& n : namespaces)
    if (n.flag == flag) return &n;
  return nullptr;
}

std::vector<std::string> known_capabilities() {
  std::vector<std::pair<int, std::string>> byNumber;
  for (const auto& [name, n] : kCaps) byNumber.emplace_back(n, name);
  std::sort(byNumber.begin(), byNumber.end());
  std::vector<std::string> out;
  for (const auto& [n, name] : byNumber) out.push_back(name);
  return out;
}

std::vector<std::string> known_mount_options() {
  std::vector<std::string> out = {"bind", "rbind", "idmap", "ridmap"};
  for (const auto& [name, f] : kMountFlags) out.push_back(name);
  for (const auto& [name, f] : kPropagation) out.push_back(name);
  return out;
}

std::vector<std::string> known_hook_stages() {
  std::vector<std::string> out;
  for (const auto& [name, member] : kHookStages) out.push_back(name);
  return out;
}

std::vector<std::string> known_namespaces() {
  std::vector<std::string> out;
  for (const auto& [name, flag] : kNamespaces)
    if (name != "time") out.push_back(name);
  return out;
}

int capability_from_name(const std::string& name) {
  auto it = kCaps.find(name);
  if (it == kCaps.end()) throw Error("unknown capability `" + name + "`");
  return it->second;
}

int signal_from_name(const std::string& raw) {
  if (!raw.empty() && std::isdigit(static_cast<unsigned char>(raw[0]))) {
    int n = std::stoi(raw);
    if (n <= 0 || n >= NSIG) throw Error("invalid signal `" + raw + "`");
    return n;
  }
  std::string name = raw.rfind("SIG", 0) == 0 ? raw.substr(3) : raw;
  for (int s = 1; s < NSIG; ++s) {
    const char* abbrev = sigabbrev_np(s);
    if (abbrev && name == abbrev) return s;
  }
  throw Error("invalid signal `" + raw + "`");
}

std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? std::string("SIG") + abbrev : "SIG" + std::to_string(sig);
}

Process parse_process(const std::string& text, const std::string& where) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    throw Error(where + ": invalid JSON: " + e.what());
  }
  return parse_process_json(j, "process");
}

Spec load_spec(const std::string& bundle_in, const std::string& id) {
  Spec spec;
  char real[PATH_MAX];
  if (!::realpath(bundle_in.c_str(), real)) throw_errno("bundle `" + bundle_in + "`");
  spec.bundle = real;
  const std::string file = spec.bundle + "/config.json";
  json j;
  try {
    j = json::parse(read_file(file));
  } catch (const json::parse_error& e) {
    throw Error(file + ": invalid JSON: " + e.what());
  }
  try {
    if (!j.is_object()) throw Error("must be a JSON object");
    std::string version = as_string(field(j, "ociVersion", ""), "ociVersion");
    if (version.rfind("1.", 0) != 0)
      throw Error("ociVersion: `" + version + "` is not a 1.x runtime-spec version");
    for (const char* unsupported : {"solaris", "windows", "vm", "zos"}) {
      const json& v = field(j, unsupported, "");
      if (!v.is_null() && !(v.is_object() && v.empty()))
        throw Error(std::string(unsupported) + ": not supported by conductor-runtime");
    }
    spec.hooks = parse_hooks(field(j, "hooks", ""));
    const json& root = field(j, "root", "");
    if (root.is_null()) throw Error("root: required (root.path names the container's rootfs)");
    spec.root_path = abs_path(as_string(field(root, "path", "root"), "root.path"), spec.bundle);
    struct stat st;
    if (::stat(spec.root_path.c_str(), &st) < 0)
      throw Error("root.path `" + spec.root_path + "`", errno);
    if (!S_ISDIR(st.st_mode)) throw Error("root.path `" + spec.root_path + "`: not a directory");
    if (!field(root, "readonly", "root").is_null())
      spec.root_readonly = as_bool(field(root, "readonly", "root"), "root.readonly");

    if (!field(j, "hostname", "").is_null())
      spec.hostname = as_string(field(j, "hostname", ""), "hostname");
    if (!field(j, "domainname", "").is_null()) throw Error("domainname: not supported");
    spec.process = parse_process_json(field(j, "process", ""), "process");

    const json& mounts = field(j, "mounts", "");
    if (!mounts.is_null()) {
      if (!mounts.is_array()) throw Error("mounts: must be an array");
      for (size_t i = 0; i < mounts.size(); ++i)
        spec.mounts.push_back(parse_mount(mounts[i], "mounts[" + std::to_string(i) + "]"));
    }
    const json& ann = field(j, "annotations", "");
    if (!ann.is_null()) {
      for (const auto& [k, v] : ann.items()) spec.annotations[k] = as_string(v, "annotations." + k);
    }

    const json& linux = field(j, "linux", "");
    if (linux.is_null()) throw Error("linux: required on Linux");
    for (const char* unsupported : {"intelRdt", "personality", "timeOffsets"}) {
      if (!field(linux, unsupported, "linux").is_null())
        throw Error(std::string("linux.") + unsupported + ": not supported by conductor-runtime");
    }
    const json& nss = field(linux, "namespaces", "linux");
    std::set<int> seen;
    if (!nss.is_null()) {
      if (!nss.is_array()) throw Error("linux.namespaces: must be an array");
      for (size_t i = 0; i < nss.size(); ++i) {
        std::string w = "linux.namespaces[" + std::to_string(i) + "]";
        NamespaceSpec n;
        n.type = as_string(field(nss[i], "type", w), w + ".type");
        auto it = kNamespaces.find(n.type);
        if (it == kNamespaces.end()) throw Error(w + ".type: unknown namespace `" + n.type + "`");
        if (n.type == "time")
          throw Error(w + ".type: `" + n.type +
                      "` namespaces are not supported by conductor-runtime");
        n.flag = it->second;
        if (!seen.insert(n.flag).second)
          throw Error(w + ": namespace `" + n.type + "` listed twice");
        if (!field(nss[i], "path", w).is_null()) {
          n.path = as_string(field(nss[i], "path", w), w + ".path");
          check_container_path(n.path, w + ".path");
        }
        spec.namespaces.push_back(n);
      }
    }
    // A hostname is set in the container's uts namespace, its own or one it joins by path (as
    // runc does); never in the runtime's.
    if (spec.hostname && !spec.ns(CLONE_NEWUTS))
      throw Error("hostname: setting a hostname needs a uts namespace in linux.namespaces");
    spec.uid_mappings =
        parse_id_mappings(field(linux, "uidMappings", "linux"), "linux.uidMappings");
    spec.gid_mappings =
        parse_id_mappings(field(linux, "gidMappings", "linux"), "linux.gidMappings");
    if (spec.has_new_ns(CLONE_NEWUSER)) {
      if (spec.uid_mappings.empty() || spec.gid_mappings.empty())
        throw Error(
            "linux.namespaces: a new user namespace needs linux.uidMappings and linux.gidMappings");
    } else if (!spec.uid_mappings.empty() || !spec.gid_mappings.empty()) {
      throw Error("linux.uidMappings: id mappings need a new user namespace in linux.namespaces");
    }
    for (size_t i = 0; i < spec.mounts.size(); ++i) {
      Mount& m = spec.mounts[i];
      if (!m.idmap || !m.uid_mappings.empty()) continue;
      if (!spec.has_new_ns(CLONE_NEWUSER))
        throw Error("mounts[" + std::to_string(i) +
                    "]: `idmap` without uidMappings takes the container's user namespace "
                    "mappings, and it has none");
      m.uid_mappings = spec.uid_mappings;
      m.gid_mappings = spec.gid_mappings;
    }
    const json& label = field(linux, "mountLabel", "linux");
    if (!label.is_null()) {
      std::string l = as_string(label, "linux.mountLabel");
      if (selinux_enabled())
        throw Error("linux.mountLabel: SELinux labels are not supported by conductor-runtime");
      if (!l.empty())
        spec.warnings.push_back("linux.mountLabel `" + l +
                                "` ignored: SELinux is not enabled on this host");
    }

    const json& cg = field(linux, "cgroupsPath", "linux");
    spec.cgroups_path = cg.is_null() ? "/conductor/" + id : as_string(cg, "linux.cgroupsPath");
    // A relative path is taken from the root of each hierarchy, as crun's cgroupfs manager does
    // (runc starts from its own cgroup, which on a v1/hybrid host differs per hierarchy).
    if (!spec.cgroups_path.empty() && spec.cgroups_path[0] != '/')
      spec.cgroups_path = "/" + spec.cgroups_path;
    if (spec.cgroups_path.find(':') != std::string::npos)
      throw Error(
          "linux.cgroupsPath: systemd slice:prefix:name paths are not supported (no systemd)");
    try {
      validate_cgroup_path(spec.cgroups_path);
    } catch (const Error& e) {
      throw Error(e.what());
    }
    parse_resources(field(linux, "resources", "linux"), "linux.resources", spec.resources,
                    spec.warnings);
    if (auto f = spec.annotations.find("conductor.dev/device-filter");
        f != spec.annotations.end()) {
      if (f->second != "ebpf")
        throw Error("annotations.conductor.dev/device-filter: only `ebpf` is known, not `" +
                    f->second + "`");
      spec.resources.ebpf_devices_on_hybrid = true;
    }

    const json& devs = field(linux, "devices", "linux");
    if (!devs.is_null()) {
      for (size_t i = 0; i < devs.size(); ++i) {
        std::string w = "linux.devices[" + std::to_string(i) + "]";
        DeviceNode d;
        d.path = as_string(field(devs[i], "path", w), w + ".path");
        check_container_path(d.path, w + ".path");
        if (d.path.rfind("/dev/", 0) != 0) throw Error(w + ".path: must be under /dev");
        std::string t = as_string(field(devs[i], "type", w), w + ".type");
        if (t != "c" && t != "b" && t != "u" && t != "p")
          throw Error(w + ".type: must be c, b, u or p");
        d.type = t[0];
        if (d.type != 'p') {
          d.major = as_int(field(devs[i], "major", w), w + ".major");
          d.minor = as_int(field(devs[i], "minor", w), w + ".minor");
        }
        if (!field(devs[i], "fileMode", w).is_null())
          d.file_mode =
              static_cast<mode_t>(as_uint(field(devs[i], "fileMode", w), w + ".fileMode"));
        if (!field(devs[i], "uid", w).is_null())
          d.uid = static_cast<uid_t>(as_uint(field(devs[i], "uid", w), w + ".uid"));
        if (!field(devs[i], "gid", w).is_null())
          d.gid = static_cast<gid_t>(as_uint(field(devs[i], "gid", w), w + ".gid"));
        spec.devices.push_back(d);
      }
    }
    spec.masked_paths = as_strings(field(linux, "maskedPaths", "linux"), "linux.maskedPaths");
    spec.readonly_paths = as_strings(field(linux, "readonlyPaths", "linux"), "linux.readonlyPaths");
    for (const auto& p : spec.masked_paths) check_container_path(p, "linux.maskedPaths");
    for (const auto& p : spec.readonly_paths) check_container_path(p, "linux.readonlyPaths");
    const json& prop = field(linux, "rootfsPropagation", "linux");
    if (!prop.is_null()) {
      std::string p = as_string(prop, "linux.rootfsPropagation");
      auto it = kPropagation.find(p);
      if (it == kPropagation.end())
        throw Error("linux.rootfsPropagation: unknown value `" + p + "`");
      spec.rootfs_propagation = it->second;
    }
    const json& sysctl = field(linux, "sysctl", "linux");
    if (!sysctl.is_null()) {
      for (const auto& [k, v] : sysctl.items()) {
        std::string key = k;
        bool namespaced = key.rfind("net.", 0) == 0 || key.rfind("fs.mqueue.", 0) == 0 ||
                          key == "kernel.msgmax" || key == "kernel.msgmnb" ||
                          key == "kernel.msgmni" || key == "kernel.sem" || key == "kernel.shmall" ||
                          key == "kernel.shmmax" || key == "kernel.shmmni" ||
                          key == "kernel.shm_rmid_forced";
        if (!namespaced)
          throw Error("linux.sysctl." + key +
                      ": not a namespaced sysctl; it would change the host");
        if (key.rfind("net.", 0) == 0 && !spec.has_new_ns(CLONE_NEWNET))
          throw Error("linux.sysctl." + key + ": needs a new network namespace");
        if (key.find("..") != std::string::npos || key.find('/') != std::string::npos)
          throw Error("linux.sysctl." + key + ": invalid name");
        spec.sysctl[key] = as_string(v, "linux.sysctl." + key);
      }
    }
    const json& sec = field(linux, "seccomp", "linux");
    if (!sec.is_null()) spec.seccomp = parse_seccomp(sec, "linux.seccomp");
    // Without a mount namespace of its own the container shares the runtime's: anything that
    // mounts would mount on the host and stay there. Refused (runc mounts them there); the
    // rootfs is only chroot'ed into.
    if (!spec.ns(CLONE_NEWNS)) {
      const char* needs = !spec.mounts.empty()           ? "mounts"
                          : !spec.devices.empty()        ? "linux.devices"
                          : !spec.masked_paths.empty()   ? "linux.maskedPaths"
                          : !spec.readonly_paths.empty() ? "linux.readonlyPaths"
                          : spec.root_readonly           ? "root.readonly"
                          : spec.rootfs_propagation != 0 ? "linux.rootfsPropagation"
                                                         : nullptr;
      if (needs)
        throw Error(std::string(needs) +
                    ": needs a mount namespace of the container's own (add {\"type\": "
                    "\"mount\"} to linux.namespaces); without one it would mount on the host");
    }
  } catch (const Error& e) {
    throw e.wrap(file);
  }
  return spec;
}

}  // namespace conductor
