// What the container's process is allowed to do: rlimits, user and groups, capabilities,
// no_new_privs and the seccomp filter. The seccomp program is compiled by the runtime before
// the container exists (so errors surface at `create`) and cached by profile under --root.
#pragma once

#include <linux/filter.h>

#include <string>
#include <vector>

#include "runtime/spec.h"

namespace conductor {

struct SeccompProgram {
  std::vector<sock_filter> filter;
  unsigned flags = 0;
  bool empty() const { return filter.empty(); }
};

SeccompProgram compile_seccomp(const SeccompSpec& spec, const std::string& cache_dir);
void load_seccomp(const SeccompProgram& prog);

// The seccomp actions, operators and flags compile_seccomp takes (for `features`).
struct SeccompFeatures {
  std::vector<std::string> actions, operators, flags;
};
SeccompFeatures seccomp_features();

void apply_rlimits(const Process& p);
// Drops what the bounding set does not list (needs CAP_SETPCAP: call before set_user).
void drop_bounding(const Capabilities& caps);
// setgroups/setgid/setuid keeping capabilities across the uid change.
void set_user(const Process& p);
// Effective, permitted, inheritable and ambient sets (after set_user).
void apply_capabilities(const Capabilities& caps);
// args[0] resolved through the process's PATH, as execvp would, in the current root.
std::string find_executable(const Process& p);

}  // namespace conductor
