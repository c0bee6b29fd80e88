// The runtime-spec's hooks: programs the runtime runs at lifecycle stages, each with the
// container's state (state.md) on its stdin. Where each stage runs:
//   prestart, createRuntime  create, the runtime's namespaces, after the container's namespaces
//                            and mounts exist and before pivot_root (the init waits)
//   createContainer          create, in the container's namespaces, before pivot_root
//   startContainer           start, in the container (after pivot_root), before its execve
//   poststart                start, the runtime's namespaces, once the process was started
//   poststop                 delete, the runtime's namespaces, once the container is gone
// A failing hook of the first four stages fails the operation; poststart and poststop
// failures are warnings and the remaining hooks still run, as the spec requires.
#pragma once

#include <sys/types.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/spec.h"

namespace conductor {

// The runtime-spec's state document (state.md): ociVersion, id, status, pid, bundle,
// annotations. `state` prints it (with extras); hooks receive it on stdin (hook_state).
nlohmann::json oci_state(const std::string& id, const std::string& status, pid_t pid,
                         const std::string& bundle,
                         const std::map<std::string, std::string>& annotations);
std::string hook_state(const std::string& id, const std::string& status, pid_t pid,
                       const std::string& bundle,
                       const std::map<std::string, std::string>& annotations);

// Runs `hooks` (stage named as in config.json, e.g. "createRuntime") in order. The first one
// that fails — cannot start, exits non-zero, is killed, outlives its timeout — throws an Error
// naming hooks.<stage>[i], its path, and the tail of what it printed.
void run_hooks(const std::vector<Hook>& hooks, const std::string& stage, const std::string& state);

// The same, but a failure is returned as a message per failing hook and the rest still run
// (poststart, poststop).
std::vector<std::string> run_hooks_warning(const std::vector<Hook>& hooks, const std::string& stage,
                                           const std::string& state);

nlohmann::json hooks_to_json(const std::vector<Hook>& hooks);
std::vector<Hook> hooks_from_json(const nlohmann::json& j);

}  // namespace conductor
