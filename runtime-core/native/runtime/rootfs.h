// The container's filesystem view, built inside its new mount namespace by the init process:
// mounts from the spec, /dev with the default devices, pivot_root into the rootfs (never
// chroot), then masked and read-only paths. All paths inside the rootfs are resolved with
// openat2(RESOLVE_IN_ROOT), so a symlink in an image cannot aim a mount at the host.
#pragma once

#include <functional>
#include <map>

#include "common/fd.h"
#include "runtime/channel.h"
#include "runtime/spec.h"

namespace conductor {

// Everything up to and including pivot_root; the caller's cwd is "/" of the container after.
// `before_pivot` runs once the mounts are made (the hooks of that moment).
// `idmapped` holds, by index into spec.mounts, the detached idmapped trees that
// send_idmapped_trees sent (received by the init before GO).
void setup_rootfs(const Spec& spec, const CgroupLayout& layout,
                  const std::function<void()>& before_pivot,
                  const std::map<size_t, UniqueFd>& idmapped);

// Idmapped bind mounts. Setting an idmap needs CAP_SYS_ADMIN over the source's filesystem (the
// host's), which an init in its own user namespace does not have, and a detached tree can only
// be moved into the mount namespace it was cloned in. So a helper forked from the runtime joins
// the init's mount namespace, clones each source (open_tree), applies the mount's maps through a
// throwaway user namespace, and sends the trees to the init (IDMAPPED, before GO), which moves
// them into place. Nothing is sent when the spec has no idmapped mount.
void send_idmapped_trees(const Spec& spec, pid_t init, Channel& channel);
// Writes /proc/PID/uid_map and gid_map (errors name `<field_prefix>uidMappings`/gidMappings).
void write_id_maps(pid_t pid, const std::vector<IdMapping>& uids,
                   const std::vector<IdMapping>& gids, const std::string& field_prefix);

// After pivot_root: sysctls, masked and read-only paths, a read-only root.
void finish_rootfs(const Spec& spec);

}  // namespace conductor
