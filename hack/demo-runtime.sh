#!/usr/bin/env bash
# The runtime demo (as root; run as a user, it re-runs itself with sudo): sets up the host, builds the native core if needed, makes a busybox bundle
# and runs one container with Conductor's OCI runtime, build/Release/conductor-runtime.
# CONDUCTOR_RUNTIME=runc hack/demo-runtime.sh runs the same bundle with another OCI runtime.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"
require_root "$0" "$@"
cd "$CONDUCTOR_REPO"

hack/install-deps.sh
runtime="${CONDUCTOR_RUNTIME:-$PWD/build/Release/conductor-runtime}"
if [ -z "${CONDUCTOR_RUNTIME:-}" ]; then
  ensure_node_modules # builds the native core (hack/lib.sh: the same rule as the other scripts)
  ensure_built
fi

work="$(mktemp -d /tmp/conductor-demo.XXXXXX)"
chmod 755 "$work"
id="demo-$$"
cleanup() {
  "$runtime" --root "$work/state" delete --force "$id" >/dev/null 2>&1 || true
  # Never rm -rf through a mount a failed run may have left.
  if grep -q " $work/" /proc/self/mountinfo; then
    echo "demo: mounts left under $work; not removing it" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

# The root filesystem: Debian's static busybox and one symlink per applet.
rootfs="$work/bundle/rootfs"
hack/busybox-rootfs.sh "$rootfs"

# An OCI runtime-spec config.json, as `runc spec` writes it, minus the terminal.
caps='["CAP_AUDIT_WRITE","CAP_KILL","CAP_NET_BIND_SERVICE"]'
jq -n --argjson caps "$caps" --arg cgroup "/conductor/$id" '{
  ociVersion: "1.0.2",
  process: {
    terminal: false, user: {uid: 0, gid: 0}, cwd: "/",
    args: ["/bin/sh", "-c",
      "echo \"hello from $(hostname)\"; id; ps -o pid,user,args; grep -E \":(memory|pids):\" /proc/self/cgroup"],
    env: ["PATH=/bin", "HOME=/root"],
    capabilities: {bounding: $caps, effective: $caps, permitted: $caps},
    rlimits: [{type: "RLIMIT_NOFILE", hard: 1024, soft: 1024}],
    noNewPrivileges: true
  },
  root: {path: "rootfs", readonly: true},
  hostname: "conductor-demo",
  mounts: [
    {destination: "/proc", type: "proc", source: "proc"},
    {destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {destination: "/dev/pts", type: "devpts", source: "devpts", options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {destination: "/dev/shm", type: "tmpfs", source: "shm", options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"]}
  ],
  linux: {
    namespaces: [{type: "pid"}, {type: "ipc"}, {type: "uts"}, {type: "mount"}, {type: "network"}],
    cgroupsPath: $cgroup,
    resources: {memory: {limit: 67108864}, pids: {limit: 64}},
    maskedPaths: ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
    readonlyPaths: ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
  }
}' >"$work/bundle/config.json"

echo "demo: $runtime run --bundle $work/bundle $id"
echo
"$runtime" --root "$work/state" run --bundle "$work/bundle" "$id"
