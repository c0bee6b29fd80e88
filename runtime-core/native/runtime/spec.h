// The OCI runtime-spec config.json, the subset conductor-runtime honours, parsed and validated.
// A field that is present but not supported, where ignoring it would weaken isolation, is an
// error naming the field (spec.cc, reject_unsupported).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cgroups/cgroups.h"

namespace conductor {

struct Rlimit {
  int resource;
  std::string name;
  uint64_t soft, hard;
};

struct Capabilities {
  std::vector<int> bounding, effective, permitted, inheritable, ambient;
};

struct Process {
  std::vector<std::string> args;
  std::vector<std::string> env;
  std::string cwd = "/";
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> additional_gids;
  std::optional<Capabilities> capabilities;
  std::vector<Rlimit> rlimits;
  bool no_new_privileges = false;
  std::optional<int> oom_score_adj;
  std::optional<mode_t> umask;
};

// linux.uidMappings / gidMappings: `size` ids from `container_id` map to `host_id` on.
struct IdMapping {
  uint32_t container_id, host_id, size;
};

struct Mount {
  std::string destination, type, source;
  unsigned long flags = 0;        // MS_* set
  unsigned long clear_flags = 0;  // MS_* explicitly cleared (rw, suid, dev, exec ...)
  unsigned long propagation = 0;  // MS_PRIVATE / MS_SLAVE / MS_SHARED [| MS_REC]
  bool bind = false, recursive = false;
  std::string data;  // filesystem options ("mode=755,size=65536k")
  // An idmapped bind mount (`idmap`/`ridmap`, or uidMappings/gidMappings given): ids on disk are
  // shown through these maps, the container's own when the mount names none.
  bool idmap = false, idmap_recursive = false;
  std::vector<IdMapping> uid_mappings, gid_mappings;
};

struct NamespaceSpec {
  int flag;                // CLONE_NEW*
  std::string type, path;  // path empty = a new namespace
};

struct DeviceNode {
  std::string path;
  char type;  // c, b, u, p
  int64_t major = 0, minor = 0;
  mode_t file_mode = 0666;
  uid_t uid = 0;
  gid_t gid = 0;
};

struct SeccompSpec {
  std::string json;  // canonical dump of linux.seccomp, the cache key
  std::string default_action;
  std::optional<int> default_errno;
  std::vector<std::string> architectures;
  std::vector<std::string> flags;
  struct Arg {
    unsigned index;
    uint64_t value, value_two;
    std::string op;
  };
  struct Rule {
    std::vector<std::string> names;
    std::string action;
    std::optional<int> errno_ret;
    std::vector<Arg> args;
  };
  std::vector<Rule> syscalls;
};

// One entry of config.json's `hooks`: a program the runtime runs at a lifecycle stage, with the
// container's state on its stdin.
struct Hook {
  std::string path;
  std::vector<std::string> args, env;
  std::optional<int> timeout;  // seconds
};

struct Hooks {
  std::vector<Hook> prestart, create_runtime, create_container, start_container, poststart,
      poststop;
  // prestart and createRuntime: run by the runtime while the init waits before pivot_root.
  bool run_by_runtime_at_create() const { return !prestart.empty() || !create_runtime.empty(); }
  // Any stage of create (the three above): after a failed create, poststop undoes them.
  bool run_at_create() const { return run_by_runtime_at_create() || !create_container.empty(); }
};

struct Spec {
  std::string bundle;     // absolute
  std::string root_path;  // absolute (resolved against the bundle)
  bool root_readonly = false;
  std::optional<std::string> hostname;
  Process process;
  std::vector<Mount> mounts;
  std::vector<NamespaceSpec> namespaces;
  std::string cgroups_path;
  CgroupResources resources;
  std::vector<DeviceNode> devices;
  std::vector<std::string> masked_paths, readonly_paths;
  unsigned long rootfs_propagation = 0;
  std::map<std::string, std::string> sysctl;
  std::optional<SeccompSpec> seccomp;
  std::map<std::string, std::string> annotations;
  Hooks hooks;
  std::vector<IdMapping> uid_mappings, gid_mappings;
  // What the config asks for that this host or runtime ignores, each naming its field (the
  // runtime logs them as warnings): deprecated fields, a mountLabel without SELinux.
  std::vector<std::string> warnings;

  bool has_new_ns(int flag) const;
  const NamespaceSpec* ns(int flag) const;
};

// Reads and validates BUNDLE/config.json. `id` fills a default cgroupsPath.
Spec load_spec(const std::string& bundle, const std::string& id);
// Parses a runtime-spec "process" object (also used by `exec --process FILE`).
Process parse_process(const std::string& json_text, const std::string& where);

// What `features` reports: the names load_spec accepts.
std::vector<std::string> known_capabilities();
std::vector<std::string> known_mount_options();
std::vector<std::string> known_namespaces();
std::vector<std::string> known_hook_stages();

int capability_from_name(const std::string& name);  // "CAP_SYS_ADMIN" → 21; throws if unknown
int signal_from_name(const std::string& name);      // "TERM", "SIGTERM", "15" → 15; throws
std::string signal_name(int sig);                   // 9 → "SIGKILL"

}  // namespace conductor
