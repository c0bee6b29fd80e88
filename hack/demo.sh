#!/usr/bin/env bash
# The demo (as root; run as a user, it re-runs itself with sudo): the two services of the
# original conductor.sh, from manifests/demo/ — `counter`, an HTTP service in C behind the
# Service `counter`, and `web`, a Flask page published on the node's port 3000 that counts its
# visits through http://counter:8080 (Conductor's DNS and service address).
#
#   hack/demo.sh        sets up the host, builds Conductor if needed, builds the two Images
#                       (progress shown; cached after the first run), starts the controller in
#                       the background, waits until web answers and prints two visits
#   hack/demo.sh down   stops that controller and removes everything the demo made
#
# It runs as its own installation (`demo`: bridge demo0, nftables table demo, cgroups under
# /demo) with its watch directory and state in /var/lib/conductor-demo/, so it never touches a
# Conductor of the host's own. hack/demo-runtime.sh shows the OCI runtime on its own.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"
require_root "$0" "$@"
cd "$CONDUCTOR_REPO"

DEMO_DIR="${CONDUCTOR_DEMO_DIR:-/var/lib/conductor-demo}"
watch="$DEMO_DIR/manifests"
state="$DEMO_DIR/state"
pidfile="$DEMO_DIR/controller.pid"
log="$DEMO_DIR/controller.log"
PORT=3000

say() { printf '== %s\n' "$*"; }

# The controller this script started, if it still runs (pid and start time recorded).
controller_pid() {
  [ -f "$pidfile" ] || return 1
  local pid start
  read -r pid start <"$pidfile" || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  [ "$(awk '{print $22}' "/proc/$pid/stat" 2>/dev/null)" = "$start" ] || return 1
  echo "$pid"
}

down() {
  local pid
  if pid="$(controller_pid)"; then
    say "stopping the controller (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 200); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  fi
  if [ -d "$state" ]; then
    say "conductor down --state-dir $state"
    conductor down --state-dir "$state"
  fi
  if grep -q " $DEMO_DIR/" /proc/self/mountinfo; then
    echo "demo: mounts left under $DEMO_DIR; not removing it" >&2
    exit 1
  fi
  rm -rf "$DEMO_DIR"
  say "removed $DEMO_DIR: nothing of the demo is left"
}

hack/install-deps.sh
ensure_node_modules # npm ci, unless this checkout's last one finished with this lock file
ensure_built        # the native core and dist/, if a source changed since
link_cli            # `conductor` on PATH

case "${1:-up}" in
down)
  down
  exit 0
  ;;
up) ;;
*)
  echo "usage: hack/demo.sh [up|down]" >&2
  exit 2
  ;;
esac

# dnsmasq reads the state dir's hosts files as nobody: the directories must be reachable.
mkdir -p "$DEMO_DIR" "$watch"
chmod 755 "$DEMO_DIR"
# The manifests and the files their Images copy, as the watch directory holds them.
rm -rf "$watch.new"
mkdir -p "$watch.new"
cp -r manifests/demo/demo.yaml manifests/demo/counter manifests/demo/web "$watch.new/"
rm -rf "$watch"
mv "$watch.new" "$watch"

# Built first, in the foreground, so the build's progress is on this terminal; the controller
# then finds every layer in the store (a second run: every step cached).
say "conductor build -f $watch/demo.yaml (debootstrap and apt-get the first time: about a minute)"
conductor build -f "$watch/demo.yaml" --state-dir "$state"
if ! controller_pid >/dev/null; then
  say "conductor up --watch $watch --state-dir $state --installation demo (log: $log)"
  setsid conductor up --watch "$watch" --state-dir "$state" --installation demo \
    --metrics-addr 127.0.0.1:0 >"$log" 2>&1 </dev/null &
  pid=$!
  echo "$pid $(awk '{print $22}' "/proc/$pid/stat")" >"$pidfile"
else
  say "the demo's controller is running (pid $(controller_pid)): the manifests were refreshed"
fi

say "waiting for web to be ready on localhost:$PORT"
ready=0
for _ in $(seq 600); do
  if ! controller_pid >/dev/null; then
    echo "demo: the controller exited; its log ($log):" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
  if conductor get containers web --state-dir "$state" -o json 2>/dev/null |
    jq -e '.status.conditions[]? | select(.type == "Ready" and .status == "True")' >/dev/null &&
    conductor get csvc counter --state-dir "$state" -o json 2>/dev/null |
    jq -e '.status.endpoints[]? | select(.ready)' >/dev/null &&
    curl -fsS "http://localhost:$PORT/healthz" >/dev/null 2>&1; then
    ready=1
    break
  fi
  sleep 0.2
done
if [ "$ready" -ne 1 ]; then
  echo "demo: web did not become ready in 2 minutes; see conductor describe container web --state-dir $state, and $log" >&2
  exit 1
fi
conductor get all --state-dir "$state"
for i in 1 2; do
  say "curl http://localhost:$PORT/?format=json   (visit $i)"
  curl -fsS "http://localhost:$PORT/?format=json"
done
cat <<EOF
== the demo runs on:
   open http://localhost:$PORT/ (or: curl http://localhost:$PORT/), each visit counts
   conductor get all --state-dir $state         conductor describe container web --state-dir $state
   conductor logs -f counter --state-dir $state   nft list table ip demo
== stop it and remove everything: hack/demo.sh down
EOF
