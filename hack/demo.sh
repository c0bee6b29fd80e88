#!/usr/bin/env bash
# The demo (as root; run as a user, it re-runs itself with sudo): sets up the host, builds
# Conductor if needed, puts the `conductor` command on PATH (npm link), runs the controller on a
# temporary watch directory and state directory, applies manifests/demo/ (a busybox Image, a
# Container with limits, a Service) and shows what Conductor made of them with the conductor
# CLI. Everything but the `conductor` link is removed at the end. hack/demo-runtime.sh shows
# the OCI runtime on its own.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"
require_root "$0" "$@"
cd "$CONDUCTOR_REPO"

hack/install-deps.sh
ensure_node_modules # npm ci, unless this checkout's last one finished with this lock file
ensure_built        # the native core and dist/, if a source changed since
link_cli            # `conductor` on PATH

work="$(mktemp -d /tmp/conductor-demo.XXXXXX)"
chmod 755 "$work"
watch="$work/manifests"
state="$work/state"
up_pid=
logs_pid=
cleanup() {
  [ -z "$logs_pid" ] || kill "$logs_pid" 2>/dev/null || true
  if [ -n "$up_pid" ]; then
    kill -TERM "$up_pid" 2>/dev/null || true
    wait "$up_pid" 2>/dev/null || true
  fi
  # Containers outlive the controller by design: remove what the demo made.
  node --input-type=module -e '
    const { ContainerRuntime } = await import(process.cwd() + "/dist/runtime-core/src/containers.js");
    const rt = new ContainerRuntime({ stateDir: process.argv[1] });
    for (const c of await rt.list()) await rt.remove(c.id, { force: true });
    process.exit(0);' "$state" || true
  if grep -q " $work/" /proc/self/mountinfo; then
    echo "demo: mounts left under $work; not removing it" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

# The image's root filesystem, next to the manifests: Debian's static busybox and its applets.
hack/busybox-rootfs.sh "$watch/rootfs"

echo "== conductor up --watch $watch --state-dir $state"
# `conductor` is bin/conductor.js itself (a node script): $! is the controller's pid.
conductor up --watch "$watch" --state-dir "$state" --metrics-addr 127.0.0.1:0 &
up_pid=$!
for _ in $(seq 100); do [ -f "$state/controller.json" ] && break; sleep 0.1; done

echo "== conductor apply -f manifests/demo/"
conductor apply -f manifests/demo/ --state-dir "$state"
for _ in $(seq 100); do
  conductor get containers hello --state-dir "$state" 2>/dev/null | grep -q Running && break
  sleep 0.1
done
sleep 1
echo "== conductor get all"
conductor get all --state-dir "$state"
echo "== conductor logs hello"
conductor logs hello --state-dir "$state"
echo "== conductor exec hello -- ps"
conductor exec hello --state-dir "$state" -- ps -o pid,user,args
echo "== conductor describe container hello"
conductor describe container hello --state-dir "$state"
echo "== curl /metrics (controller-runtime's names)"
addr="$(node -p 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).metricsAddr' "$state/controller.json")"
curl -s "http://$addr/metrics" | grep -E '^controller_runtime_reconcile_total' || true
echo "== conductor delete -f manifests/demo/ (and, meanwhile, conductor logs -f --tail 0 hello)"
# Following the log from now on shows what the container says to its SIGTERM.
conductor logs -f --tail 0 hello --state-dir "$state" &
logs_pid=$!
conductor delete -f manifests/demo/ --state-dir "$state"
wait "$logs_pid" || true
logs_pid=
for _ in $(seq 100); do
  conductor get containers --state-dir "$state" 2>/dev/null | grep -q hello || break
  sleep 0.1
done
echo "== done: the container stopped (SIGTERM: its trap said bye, above) and was removed"
