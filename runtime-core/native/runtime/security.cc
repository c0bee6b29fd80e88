#include "runtime/security.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "common/error.h"
#include "common/fd.h"
#include "common/fs.h"

namespace conductor {

namespace {

uint32_t action_of(const std::string& name, std::optional<int> errno_ret,
                   const std::string& where) {
  int e = errno_ret.value_or(EPERM);
  if (name == "SCMP_ACT_ALLOW") return SCMP_ACT_ALLOW;
  if (name == "SCMP_ACT_ERRNO") return SCMP_ACT_ERRNO(static_cast<uint16_t>(e));
  if (name == "SCMP_ACT_KILL" || name == "SCMP_ACT_KILL_THREAD") return SCMP_ACT_KILL_THREAD;
  if (name == "SCMP_ACT_KILL_PROCESS") return SCMP_ACT_KILL_PROCESS;
  if (name == "SCMP_ACT_TRAP") return SCMP_ACT_TRAP;
  if (name == "SCMP_ACT_TRACE") return SCMP_ACT_TRACE(static_cast<uint16_t>(e));
  if (name == "SCMP_ACT_LOG") return SCMP_ACT_LOG;
  throw Error(where + ": action `" + name + "` is not supported");
}

const std::map<std::string, scmp_compare> kSeccompOps = {
    {"SCMP_CMP_NE", SCMP_CMP_NE},
    {"SCMP_CMP_LT", SCMP_CMP_LT},
    {"SCMP_CMP_LE", SCMP_CMP_LE},
    {"SCMP_CMP_EQ", SCMP_CMP_EQ},
    {"SCMP_CMP_GE", SCMP_CMP_GE},
    {"SCMP_CMP_GT", SCMP_CMP_GT},
    {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ}};

const std::map<std::string, unsigned> kSeccompFlags = {
    {"SECCOMP_FILTER_FLAG_LOG", SECCOMP_FILTER_FLAG_LOG},
    {"SECCOMP_FILTER_FLAG_SPEC_ALLOW", SECCOMP_FILTER_FLAG_SPEC_ALLOW},
    {"SECCOMP_FILTER_FLAG_TSYNC", SECCOMP_FILTER_FLAG_TSYNC}};

scmp_compare op_of(const std::string& op, const std::string& where) {
  auto it = kSeccompOps.find(op);
  if (it == kSeccompOps.end()) throw Error(where + ": unknown op `" + op + "`");
  return it->second;
}

uint32_t arch_of(const std::string& name) {
  std::string n = name.rfind("SCMP_ARCH_", 0) == 0 ? name.substr(10) : name;
  std::transform(n.begin(), n.end(), n.begin(), ::tolower);
  if (n == "x86_64") n = "x86_64";
  uint32_t a = seccomp_arch_resolve_name(n.c_str());
  if (a == 0) throw Error("linux.seccomp.architectures: unknown architecture `" + name + "`");
  return a;
}

unsigned flags_of(const std::vector<std::string>& flags) {
  unsigned out = 0;
  for (const auto& f : flags) {
    auto it = kSeccompFlags.find(f);
    if (it == kSeccompFlags.end()) throw Error("linux.seccomp.flags: `" + f + "` is not supported");
    out |= it->second;
  }
  return out;
}

std::string cache_key(const SeccompSpec& spec) {
  // FNV-1a over the profile; the file also stores the full profile, compared on load, so a
  // hash collision can never hand a container someone else's filter.
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : spec.json) h = (h ^ c) * 1099511628211ULL;
  char buf[32];
  snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::vector<sock_filter> compile(const SeccompSpec& spec) {
  uint32_t def = action_of(spec.default_action, spec.default_errno, "linux.seccomp.defaultAction");
  scmp_filter_ctx ctx = seccomp_init(def);
  if (!ctx) throw Error("seccomp_init failed");
  struct Guard {
    scmp_filter_ctx c;
    ~Guard() { seccomp_release(c); }
  } guard{ctx};
  // We set no_new_privs ourselves, as the spec says, not libseccomp.
  seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
  for (const auto& a : spec.architectures) {
    int rc = seccomp_arch_add(ctx, arch_of(a));
    if (rc < 0 && rc != -EEXIST) throw Error("seccomp_arch_add `" + a + "`", -rc);
  }
  for (size_t i = 0; i < spec.syscalls.size(); ++i) {
    const auto& rule = spec.syscalls[i];
    std::string where = "linux.seccomp.syscalls[" + std::to_string(i) + "]";
    uint32_t act = action_of(rule.action, rule.errno_ret, where);
    if (act == def) continue;  // libseccomp refuses rules that repeat the default
    std::vector<scmp_arg_cmp> args;
    bool repeated_index = false;
    for (const auto& a : rule.args) {
      for (const auto& b : args) repeated_index = repeated_index || b.arg == a.index;
      if (a.index > 5) throw Error(where + ".args: index must be 0..5");
      args.push_back(scmp_arg_cmp{a.index, op_of(a.op, where), a.value, a.value_two});
    }
    for (const auto& name : rule.names) {
      int nr = seccomp_syscall_resolve_name(name.c_str());
      if (nr == __NR_SCMP_ERROR) continue;  // not a syscall on this architecture: as runc
      int rc;
      if (repeated_index) {
        // libseccomp cannot AND two conditions on one argument: one rule each (as runc).
        for (const auto& a : args) {
          rc = seccomp_rule_add_array(ctx, act, nr, 1, &a);
          if (rc < 0) throw Error(where + ": add rule for `" + name + "`", -rc);
        }
        continue;
      }
      rc = seccomp_rule_add_array(ctx, act, nr, static_cast<unsigned>(args.size()), args.data());
      if (rc < 0) throw Error(where + ": add rule for `" + name + "`", -rc);
    }
  }
  UniqueFd mem(static_cast<int>(::syscall(SYS_memfd_create, "seccomp-bpf", MFD_CLOEXEC)));
  if (!mem) throw_errno("memfd_create");
  int rc = seccomp_export_bpf(ctx, mem.get());
  if (rc < 0) throw Error("seccomp_export_bpf", -rc);
  std::string bytes = read_file("/proc/self/fd/" + std::to_string(mem.get()));
  std::vector<sock_filter> out(bytes.size() / sizeof(sock_filter));
  std::memcpy(out.data(), bytes.data(), out.size() * sizeof(sock_filter));
  return out;
}

}  // namespace

SeccompProgram compile_seccomp(const SeccompSpec& spec, const std::string& cache_dir) {
  SeccompProgram prog;
  prog.flags = flags_of(spec.flags);
  std::string file = cache_dir + "/" + cache_key(spec) + ".bpf";
  if (auto cached = read_file_if_exists(file)) {
    uint64_t klen = 0;
    if (cached->size() >= sizeof klen) std::memcpy(&klen, cached->data(), sizeof klen);
    size_t off = sizeof klen + klen;
    if (off <= cached->size() && cached->compare(sizeof klen, klen, spec.json) == 0 &&
        (cached->size() - off) % sizeof(sock_filter) == 0) {
      prog.filter.resize((cached->size() - off) / sizeof(sock_filter));
      std::memcpy(prog.filter.data(), cached->data() + off, cached->size() - off);
      return prog;
    }
  }
  prog.filter = compile(spec);
  try {
    mkdir_p(cache_dir, 0700);
    uint64_t klen = spec.json.size();
    std::string blob(reinterpret_cast<const char*>(&klen), sizeof klen);
    blob += spec.json;
    blob.append(reinterpret_cast<const char*>(prog.filter.data()),
                prog.filter.size() * sizeof(sock_filter));
    write_file_atomic(file, blob, 0600);
  } catch (const Error&) {
    // A cache that cannot be written only costs time.
  }
  return prog;
}

void load_seccomp(const SeccompProgram& prog) {
  if (prog.empty()) return;
  sock_fprog fprog{static_cast<unsigned short>(prog.filter.size()),
                   const_cast<sock_filter*>(prog.filter.data())};
  if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, prog.flags, &fprog) < 0)
    throw_errno("load the seccomp filter");
}

SeccompFeatures seccomp_features() {
  SeccompFeatures f;
  f.actions = {"SCMP_ACT_ALLOW",        "SCMP_ACT_ERRNO", "SCMP_ACT_KILL",  "SCMP_ACT_KILL_THREAD",
               "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP",  "SCMP_ACT_TRACE", "SCMP_ACT_LOG"};
  for (const auto& a : f.actions) action_of(a, std::nullopt, "seccomp_features");  // in step
  for (const auto& [name, op] : kSeccompOps) f.operators.push_back(name);
  for (const auto& [name, flag] : kSeccompFlags) f.flags.push_back(name);
  return f;
}

void apply_rlimits(const Process& p) {
  for (const auto& r : p.rlimits) {
    rlimit lim{r.soft, r.hard};
    if (::setrlimit(r.resource, &lim) < 0) {
      rlimit cur{};
      ::getrlimit(r.resource, &cur);
      throw Error("process.rlimits " + r.name + " " + std::to_string(r.soft) + ":" +
                      std::to_string(r.hard) + " (the host's hard limit is " +
                      std::to_string(cur.rlim_max) + ")",
                  errno);
    }
  }
}

namespace {
int last_cap() {
  auto s = read_file_if_exists("/proc/sys/kernel/cap_last_cap");
  return s ? std::stoi(trim(*s)) : CAP_LAST_CAP;
}
}  // namespace

void drop_bounding(const Capabilities& caps) {
  int last = last_cap();
  for (int c = 0; c <= last; ++c) {
    if (std::find(caps.bounding.begin(), caps.bounding.end(), c) != caps.bounding.end()) continue;
    if (::prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
      throw_errno("drop capability " + std::to_string(c) + " from the bounding set");
  }
}

void set_user(const Process& p) {
  if (::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) throw_errno("prctl(PR_SET_KEEPCAPS)");
  if (::setgroups(p.additional_gids.size(), p.additional_gids.data()) < 0)
    throw_errno("process.user.additionalGids: setgroups");
  if (::setresgid(p.gid, p.gid, p.gid) < 0)
    throw_errno("process.user.gid: setgid " + std::to_string(p.gid));
  if (::setresuid(p.uid, p.uid, p.uid) < 0)
    throw_errno("process.user.uid: setuid " + std::to_string(p.uid));
  if (::prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0) throw_errno("prctl(PR_SET_KEEPCAPS)");
}

void apply_capabilities(const Capabilities& caps) {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  auto fill = [](const std::vector<int>& set, uint32_t __user_cap_data_struct::*member,
                 __user_cap_data_struct* d) {
    for (int c : set) d[c / 32].*member |= 1u << (c % 32);
  };
  fill(caps.effective, &__user_cap_data_struct::effective, data);
  fill(caps.permitted, &__user_cap_data_struct::permitted, data);
  fill(caps.inheritable, &__user_cap_data_struct::inheritable, data);
  if (::syscall(SYS_capset, &hdr, data) < 0) throw_errno("process.capabilities: capset");
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
    throw_errno("clear ambient capabilities");
  for (int c : caps.ambient) {
    // The kernel only allows ambient capabilities that are permitted and inheritable; runc
    // skips the others rather than failing (they would only have added privilege).
    auto in = [c](const std::vector<int>& v) {
      return std::find(v.begin(), v.end(), c) != v.end();
    };
    if (!in(caps.permitted) || !in(caps.inheritable)) continue;
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) < 0)
      throw_errno("process.capabilities.ambient: raise " + std::to_string(c) +
                  " (it must also be permitted and inheritable)");
  }
}

std::string find_executable(const Process& p) {
  const std::string& name = p.args[0];
  auto executable = [](const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111);
  };
  if (name.find('/') != std::string::npos) {
    if (!executable(name)) throw Error("exec `" + name + "`", errno ? errno : EACCES);
    return name;
  }
  std::string path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (const auto& e : p.env)
    if (e.rfind("PATH=", 0) == 0) path = e.substr(5);
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(start, end - start);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (executable(candidate)) return candidate;
    start = end + 1;
  }
  throw Error("exec `" + name + "`: executable file not found in $PATH (" + path + ")", ENOENT);
}

}  // namespace conductor
