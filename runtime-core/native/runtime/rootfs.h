// The container's filesystem view, built inside its new mount namespace by the init process:
// mounts from the spec, /dev with the default devices, pivot_root into the rootfs (never
// chroot), then masked and read-only paths. All paths inside the rootfs are resolved with
// openat2(RESOLVE_IN_ROOT), so a symlink in an image cannot aim a mount at the host.
#pragma once

#include <functional>

#include "runtime/spec.h"

namespace conductor {

// Everything up to and including pivot_root; the caller's cwd is "/" of the container after.
// `before_pivot` runs once the mounts are made (the hooks of that moment).
void setup_rootfs(const Spec& spec, const CgroupLayout& layout,
                  const std::function<void()>& before_pivot);
// After pivot_root: sysctls, masked and read-only paths, a read-only root.
void finish_rootfs(const Spec& spec);

}  // namespace conductor
