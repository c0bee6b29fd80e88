#!/usr/bin/env bash
# A real Kubernetes control plane for development and tests, where kind cannot run (no Docker
# engine): etcd and kube-apiserver on 127.0.0.1, built from the Go module proxy at one pinned
# release, with generated certificates, service-account keys and RBAC on.
#
#   hack/control-plane.sh build        # build when missing (~7 min cold), print the bin dir
#   hack/control-plane.sh up DIR       # start (builds first if needed), print DIR/kubeconfig
#   hack/control-plane.sh up DIR -- FLAG...  # the same, with more kube-apiserver flags
#   hack/control-plane.sh status DIR   # what runs, and whether /readyz answers
#   hack/control-plane.sh down DIR     # stop both, remove their data and DIR
#   hack/control-plane.sh crds         # third-party CRDs the cluster manifests use, print their dir
#
# Build: k8s.io/kubernetes is used as a module by a throwaway module of our own: its staging
# modules (k8s.io/api, apimachinery, client-go, ...) are required at v0.0.0 in its go.mod and
# resolved there by directory replaces that do not apply to a dependency, so each gets a
# `replace` to its published v0.<minor>.<patch>; the list comes from kubernetes' own go.mod, as
# do the `go` line and the versions of the other k8s.io modules (kube-openapi, utils, klog).
# etcd (go.etcd.io/etcd/server/v3, which has a main package) is built in a module of its own so
# that neither changes the other's dependency versions. The binaries land in
# $CONDUCTOR_TOOLS_CACHE (default /var/cache/conductor/tools) under both pins, so they are reused
# until a pin changes; Go's module and build caches (~0.8 GB + ~3 GB) go to a temporary
# directory that is removed after. The build runs under `nice -n 19`: it takes both cores for
# minutes.
#
# DIR holds everything one control plane has: pki/ (an EC P-256 CA, the serving certificate for
# 127.0.0.1/localhost, an admin client certificate in group system:masters, the ES256
# service-account signing key), etcd/ (its data), ports, pids (pid and start time of each
# process, so `down` signals only the processes `up` started), kubeconfig, env (source it for
# KUBECONFIG and kubectl on PATH), apiserver-flags (the extra kube-apiserver flags given after
# `--`, one a line) and the logs (*.log). `up` on a DIR that is up says so; on a DIR whose
# processes are gone (a reboot, a kill) it starts them again on the same data, ports,
# certificates and extra flags.
#
# Traps (see /work/shared/HOST-COMPONENTS.md): kube-apiserver refuses a loopback advertise
# address with the endpoint reconciler (hence --endpoint-reconciler-type none), and /readyz can
# answer ok before namespace `default` exists (hence the second wait).
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"

K8S_MODULE=k8s.io/kubernetes
K8S_VERSION=v1.37.2
ETCD_MODULE=go.etcd.io/etcd/server/v3
ETCD_VERSION=v3.7.3
CACHE="${CONDUCTOR_TOOLS_CACHE:-/var/cache/conductor/tools}"
BIN="$CACHE/kubernetes-$K8S_VERSION-etcd-$ETCD_VERSION"
# The ServiceMonitor of manifests/observability/: prometheus-operator's CRD, from its module's
# example/.
PROM_OPERATOR_MODULE=github.com/prometheus-operator/prometheus-operator
PROM_OPERATOR_VERSION=v0.86.1
CRDS="$CACHE/prometheus-operator-$PROM_OPERATOR_VERSION-crds"
# Disjoint from the container range (10.77.0.0/16) and the node slices (10.78.0.0/16).
SERVICE_CIDR=10.96.0.0/16
SERVICE_IP=10.96.0.1 # the `kubernetes` Service's address: the first of SERVICE_CIDR
READY_TIMEOUT=90     # seconds for etcd, then kube-apiserver and namespace `default`
STOP_GRACE=10        # seconds between SIGTERM and SIGKILL
MARKER=.conductor-control-plane
PROG=control-plane

usage() {
  cat <<EOF
usage: $0 build [--rebuild]
       $0 up DIR [-- KUBE-APISERVER-FLAG...]
       $0 status DIR
       $0 down DIR
       $0 crds

build   builds kube-apiserver and kubectl ($K8S_MODULE $K8S_VERSION) and etcd
        ($ETCD_MODULE $ETCD_VERSION) into $BIN when missing
        (about 7 minutes on 2 cores, more when they are busy), and prints that directory.
up      starts etcd and kube-apiserver on 127.0.0.1 with their state in DIR (building first if
        needed) and prints the path of DIR/kubeconfig. '. DIR/env' sets KUBECONFIG and puts
        kubectl on PATH. Flags after '--' are added to kube-apiserver's (e.g.
        --watch-cache=false), kept in DIR and used again when 'up DIR' restarts it.
status  says which of the two runs and whether the API server is ready (exit 1 if not).
down    stops what 'up DIR' started (SIGTERM, SIGKILL after ${STOP_GRACE} s) and removes DIR.
EOF
}

die() {
  echo "$PROG: $*" >&2
  exit 1
}

# ---------------------------------------------------------------------------------------------
# build

built() { [ -f "$BIN/.complete" ]; }

# The go.mod of MODULE@VERSION, downloaded (with the module) into the temporary module cache.
module_gomod() {
  local gomod
  gomod="$(nice -n 19 go mod download -json "$1" 2>>"$log" |
    sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')"
  if [ -z "$gomod" ] || [ ! -f "$gomod" ]; then
    die "go mod download $1 gave no go.mod"
  fi
  echo "$gomod"
}

# The requirements of GOMOD, one `path version` a line, from blocks and one-line forms alike.
requirements() {
  awk '/^require \($/ { inblock = 1; next }
       inblock && /^\)/ { inblock = 0; next }
       inblock && NF >= 2 { print $1, $2 }
       /^require [^(]/ { print $2, $3 }' "$1"
}

# The `go` line and the `godebug` settings of GOMOD (of module WHAT), for a module that builds
# WHAT's programs with the language version and GODEBUG defaults WHAT's own build has.
go_lines() {
  grep -m1 '^go [0-9]' "$1" || die "no go line in $2's go.mod"
  awk '/^godebug \($/ { inblock = 1; next }
       inblock && /^\)/ { inblock = 0; next }
       inblock && NF { print "godebug", $1 }
       /^godebug [^(]/ { print }' "$1"
}

cmd_build() {
  local rebuild=false
  case "${1:-}" in
    "") ;;
    --rebuild) rebuild=true ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
  if [ "$rebuild" = false ] && built; then
    echo "$BIN"
    return 0
  fi
  local again=(build)
  [ "$rebuild" = false ] || again+=(--rebuild)
  require_root "$0" "${again[@]}" # the cache is a system directory

  # One build at a time per pin (a test and someone's `up` may start one together): the second
  # waits, then finds the first one's result.
  mkdir -p "$CACHE"
  exec 9>"$BIN.lock"
  if ! flock -n 9; then
    echo "$PROG: another build of $BIN is running; waiting for it" >&2
    flock 9
    if [ "$rebuild" = false ] && built; then
      echo "$BIN"
      return 0
    fi
  fi

  # Go's tarball install is often not on root's PATH (sudo's secure_path, a CI shell).
  command -v go >/dev/null 2>&1 || [ ! -x /usr/local/go/bin/go ] || PATH="$PATH:/usr/local/go/bin"
  command -v go >/dev/null 2>&1 || die "needs Go on PATH to build (https://go.dev/dl/)"

  work="$(mktemp -d /tmp/conductor-control-plane-build.XXXXXX)"
  export GOPATH="$work/gopath" GOCACHE="$work/gocache" GOFLAGS=-mod=mod CGO_ENABLED=0
  export GOTOOLCHAIN=local
  local start=$SECONDS
  echo "$PROG: building kube-apiserver, kubectl ($K8S_MODULE@$K8S_VERSION) and etcd" \
    "($ETCD_MODULE@$ETCD_VERSION) under nice; about 7 minutes on 2 cores, more when busy" >&2
  # Go's download and build chatter goes to a log, shown when something fails. The module
  # cache is read-only: make it writable so that it can be removed.
  log="$work/go.log"
  trap 'rc=$?; [ "$rc" -eq 0 ] || { tail -n 40 "$log" >&2; echo "$PROG: build failed" >&2; }
    chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

  # kubernetes' own go.mod: the `go` and `godebug` lines, its staging modules, its other k8s.io
  # pins; etcd's for its `go` and `godebug` lines.
  local gomod etcd_gomod
  gomod="$(module_gomod "$K8S_MODULE@$K8S_VERSION")"
  etcd_gomod="$(module_gomod "$ETCD_MODULE@$ETCD_VERSION")"
  local staging pinned
  staging="$(requirements "$gomod" |
    awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" { print $1 }' | sort -u)"
  pinned="$(requirements "$gomod" |
    awk '$1 ~ /^k8s\.io\// && $2 != "v0.0.0" { print $1, $2 }' | sort -u)"
  [ -n "$staging" ] ||
    die "no staging modules (k8s.io/* v0.0.0) in $K8S_MODULE@$K8S_VERSION's go.mod"
  local published="v0.${K8S_VERSION#v1.}" # v1.37.2 -> v0.37.2

  mkdir -p "$work/k8s" "$work/etcd" "$work/bin"
  {
    echo "module conductor.dev/hack/kubernetes"
    echo
    go_lines "$gomod" "$K8S_MODULE@$K8S_VERSION"
    echo
    echo "require $K8S_MODULE $K8S_VERSION"
    while read -r path version; do
      echo "require $path $version"
    done <<<"$pinned"
    echo
    while read -r path; do
      echo "replace $path v0.0.0 => $path $published"
    done <<<"$staging"
  } >"$work/k8s/go.mod"
  {
    echo "module conductor.dev/hack/etcd"
    echo
    go_lines "$etcd_gomod" "$ETCD_MODULE@$ETCD_VERSION"
    echo
    echo "require $ETCD_MODULE $ETCD_VERSION"
  } >"$work/etcd/go.mod"
  echo "$PROG: $(wc -l <<<"$staging") staging modules replaced by their $published" >&2

  # What kubernetes' release build stamps in (hack/lib/version.sh), so that `kubectl version`
  # and /version say v1.37.2 instead of v0.0.0-master.
  local minor="${K8S_VERSION#v1.}" x ldflags="-s -w"
  minor="${minor%%.*}"
  for x in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $x.gitVersion=$K8S_VERSION -X $x.gitMajor=1 -X $x.gitMinor=$minor"
    ldflags+=" -X $x.gitTreeState=clean"
  done
  (
    cd "$work/k8s"
    nice -n 19 go get "$K8S_MODULE/cmd/kube-apiserver@$K8S_VERSION" \
      "$K8S_MODULE/cmd/kubectl@$K8S_VERSION"
    nice -n 19 go build -trimpath -ldflags "$ldflags" -o "$work/bin/" \
      "$K8S_MODULE/cmd/kube-apiserver" "$K8S_MODULE/cmd/kubectl"
    cd "$work/etcd"
    nice -n 19 go get "$ETCD_MODULE@$ETCD_VERSION"
    nice -n 19 go build -trimpath -ldflags "-s -w" -o "$work/bin/etcd" "$ETCD_MODULE"
  ) >>"$log" 2>&1

  rm -rf "$BIN.tmp"
  mkdir -p "$BIN.tmp"
  cp "$work"/bin/{kube-apiserver,kubectl,etcd} "$BIN.tmp/"
  cp "$work/k8s/go.mod" "$work/k8s/go.sum" "$BIN.tmp/" # what was built, for the curious
  printf '%s@%s %s@%s\n' "$K8S_MODULE" "$K8S_VERSION" "$ETCD_MODULE" "$ETCD_VERSION" \
    >"$BIN.tmp/.complete"
  rm -rf "$BIN"
  mv "$BIN.tmp" "$BIN"
  echo "$PROG: built kube-apiserver, kubectl and etcd in $((SECONDS - start)) s" \
    "($(du -sh "$BIN" | cut -f1) in $BIN)" >&2
  echo "$BIN"
}

# The CRDs of other projects that the cluster manifests use (prometheus-operator's ServiceMonitor,
# for manifests/observability/servicemonitor.yaml), as their releases ship them: taken from the
# module zip on the Go module proxy (its example/ directory), cached in $CRDS; prints the
# directory.
cmd_crds() {
  [ $# -eq 0 ] || {
    usage >&2
    exit 2
  }
  if [ -f "$CRDS/.complete" ]; then
    echo "$CRDS"
    return 0
  fi
  require_root "$0" crds # the cache is a system directory
  command -v go >/dev/null 2>&1 || [ ! -x /usr/local/go/bin/go ] || PATH="$PATH:/usr/local/go/bin"
  command -v go >/dev/null 2>&1 || die "needs Go on PATH to fetch $PROM_OPERATOR_MODULE"
  mkdir -p "$CACHE"
  local dir
  # Global, as the EXIT trap runs after this function has returned.
  work="$(mktemp -d /tmp/conductor-crds.XXXXXX)"
  # The module cache is read-only: made writable so that it can be removed.
  trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
  dir="$(cd "$work" && GOPATH="$work/gopath" GOFLAGS=-mod=mod GOTOOLCHAIN=local \
    go mod download -json "$PROM_OPERATOR_MODULE@$PROM_OPERATOR_VERSION" |
    node -e 'let t="";process.stdin.on("data",(d)=>(t+=d)).on("end",()=>console.log(JSON.parse(t).Dir??""))')" ||
    die "go mod download $PROM_OPERATOR_MODULE@$PROM_OPERATOR_VERSION failed"
  local crd="$dir/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"
  [ -f "$crd" ] || die "$PROM_OPERATOR_MODULE@$PROM_OPERATOR_VERSION has no $crd"
  rm -rf "$CRDS.tmp"
  mkdir -p "$CRDS.tmp"
  cp "$crd" "$CRDS.tmp/"
  echo "$PROM_OPERATOR_MODULE@$PROM_OPERATOR_VERSION" >"$CRDS.tmp/.complete"
  rm -rf "$CRDS"
  mv "$CRDS.tmp" "$CRDS"
  echo "$CRDS"
}

# ---------------------------------------------------------------------------------------------
# processes: DIR/pids has one `name pid starttime` a line; starttime (field 22 of
# /proc/PID/stat, clock ticks after boot) tells our process from a later one given the same pid.

COMPONENTS=(etcd kube-apiserver) # the order they start in; they stop in the reverse one
declare -A PID=() START=()

# The start time of PID, or failure when it is gone (a zombie counts as gone).
proc_start() {
  local stat fields
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  read -r -a fields <<<"${stat##*) }" # after the command name, which may hold spaces
  [ "${fields[0]}" != Z ] || return 1
  echo "${fields[19]}"
}

# Whether component NAME, as recorded, still runs.
running() {
  local name="$1" now
  [ -n "${PID[$name]:-}" ] || return 1
  now="$(proc_start "${PID[$name]}")" && [ "$now" = "${START[$name]}" ]
}

read_pids() {
  PID=() START=()
  [ -f "$DIR/pids" ] || return 0
  local name pid start
  while read -r name pid start; do
    [ -n "$start" ] || continue
    PID[$name]="$pid"
    START[$name]="$start"
  done <"$DIR/pids"
}

# DIR/pids from PID/START, keeping only what runs.
write_pids() {
  local name
  for name in "${COMPONENTS[@]}"; do
    ! running "$name" || echo "$name ${PID[$name]} ${START[$name]}"
  done >"$DIR/pids.tmp"
  mv "$DIR/pids.tmp" "$DIR/pids"
}

# SIGTERM to the recorded process NAME, SIGKILL after STOP_GRACE seconds; waits until it is gone.
stop_component() {
  local name="$1" i
  running "$name" || return 0
  kill -TERM "${PID[$name]}" 2>/dev/null || true
  for ((i = 0; i < STOP_GRACE * 10; i++)); do
    running "$name" || return 0
    sleep 0.1
  done
  echo "$PROG: $name (pid ${PID[$name]}) ignored SIGTERM for ${STOP_GRACE} s: SIGKILL" >&2
  kill -KILL "${PID[$name]}" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    running "$name" || return 0
    sleep 0.1
  done
  echo "$PROG: $name (pid ${PID[$name]}) still there after SIGKILL" >&2
  return 1
}

# Starts NAME as CMD... in a session of its own (a Ctrl-C meant for the shell does not reach it),
# output to DIR/NAME.log, and records it. Not a process group leader (no job control here), so
# setsid execs in place and $! is the component's own pid. It gets no descriptor but those
# three: one inherited from our caller (the pipe a test reads our output from) and held open by
# a daemon would keep that caller waiting for an end of file that never comes.
start_component() {
  local name="$1" start
  shift
  echo "--- $(date -Is) $PROG up" >>"$DIR/$name.log"
  (
    for fd in /proc/"$BASHPID"/fd/*; do
      fd="${fd##*/}"
      [ "$fd" -le 2 ] || eval "exec $fd>&-" 2>/dev/null || true
    done
    exec setsid "$@" </dev/null >>"$DIR/$name.log" 2>&1
  ) &
  PID[$name]=$!
  start="$(proc_start "${PID[$name]}")" || fail_log "$name" "exited at once"
  START[$name]="$start"
  STARTED+=("$name")
  write_pids
}

fail_log() {
  local name="$1"
  shift
  echo "$PROG: $name $*; the end of $DIR/$name.log:" >&2
  tail -n 20 "$DIR/$name.log" | sed 's/^/  /' >&2
  exit 1
}

# Waits until CMD... succeeds, failing early when component NAME exits. CMD is quiet on stderr
# by itself: a redirection here would also swallow the messages of up_cleanup when a signal's
# trap runs during CMD.
wait_for() {
  local name="$1" what="$2" deadline=$((SECONDS + READY_TIMEOUT))
  shift 2
  until "$@" >/dev/null; do
    running "$name" || fail_log "$name" "exited before $what"
    [ "$SECONDS" -lt "$deadline" ] || fail_log "$name" "not $what within ${READY_TIMEOUT} s"
    sleep 0.2
  done
}

# ---------------------------------------------------------------------------------------------
# up: certificates, ports, etcd, kube-apiserver, kubeconfig

# DIR as an absolute path; it may not exist yet.
set_dir() {
  [ -n "${1:-}" ] || {
    usage >&2
    exit 2
  }
  DIR="$(realpath -m -- "$1")"
}

is_ours() { [ -f "$DIR/$MARKER" ]; }

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }

# A certificate NAME.crt for a new key NAME.key, signed by the CA: SUBJECT, extended key
# usage EKU, and subjectAltName SAN when given.
leaf() {
  local name="$1" subject="$2" eku="$3" san="${4:-}"
  key "$PKI/$name.key"
  {
    echo "basicConstraints = critical, CA:FALSE"
    echo "keyUsage = critical, digitalSignature"
    echo "extendedKeyUsage = $eku"
    [ -z "$san" ] || echo "subjectAltName = $san"
  } >"$PKI/$name.ext"
  # openssl x509 -req says "Certificate request self-signature ok" on stderr: keep it for errors.
  if ! openssl req -new -key "$PKI/$name.key" -subj "$subject" |
    openssl x509 -req -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -days 365 -sha256 \
      -set_serial "0x$(openssl rand -hex 16)" -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" \
      2>"$PKI/$name.err"; then
    cat "$PKI/$name.err" >&2
    die "openssl could not sign the $name certificate"
  fi
  rm -f "$PKI/$name.ext" "$PKI/$name.err"
}

# EC P-256 throughout: an RSA-2048 key takes ~1.3 s to generate here, P-256 ~0.04 s.
make_pki() {
  [ ! -f "$PKI/.complete" ] || return 0
  rm -rf "$PKI"
  mkdir -p "$PKI"
  key "$PKI/ca.key"
  openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=conductor-control-plane-ca" -days 3650 \
    -sha256 -addext "basicConstraints = critical, CA:TRUE" \
    -addext "keyUsage = critical, keyCertSign, cRLSign" -out "$PKI/ca.crt"
  local local_san="IP:127.0.0.1, DNS:localhost"
  leaf apiserver "/CN=kube-apiserver" serverAuth "$local_san, IP:$SERVICE_IP, DNS:kubernetes, \
DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local"
  leaf admin "/O=system:masters/CN=conductor-admin" clientAuth
  # etcd serves clients and its (single) peer over TLS and wants client certificates on both.
  leaf etcd "/CN=etcd" "serverAuth, clientAuth" "$local_san"
  leaf apiserver-etcd-client "/CN=kube-apiserver-etcd-client" clientAuth
  key "$PKI/sa.key" # ES256 service-account tokens
  openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
  touch "$PKI/.complete"
}

port_taken() { [ -n "$(ss -Htan "( sport = :$1 )")" ]; }

# Three ports nobody listens on or connects from, below Linux's ephemeral range (32768-60999)
# so that outgoing connections are unlikely to take them meanwhile; kept in DIR/ports so that a
# restart keeps the kubeconfig valid.
pick_ports() {
  [ ! -f "$DIR/ports" ] || return 0
  local picked=() p tries=0
  while [ "${#picked[@]}" -lt 3 ]; do
    [ $((tries += 1)) -le 200 ] || die "found no free port in 20000-32767"
    p=$((20000 + RANDOM % 12768))
    port_taken "$p" || [[ " ${picked[*]} " == *" $p "* ]] || picked+=("$p")
  done
  printf 'ETCD_CLIENT_PORT=%s\nETCD_PEER_PORT=%s\nAPISERVER_PORT=%s\n' "${picked[@]}" \
    >"$DIR/ports"
}

write_kubeconfig() {
  local b64=(base64 -w0)
  cat >"$DIR/kubeconfig.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: conductor-dev
    cluster:
      server: https://127.0.0.1:$APISERVER_PORT
      certificate-authority-data: $("${b64[@]}" "$PKI/ca.crt")
users:
  - name: conductor-admin
    user:
      client-certificate-data: $("${b64[@]}" "$PKI/admin.crt")
      client-key-data: $("${b64[@]}" "$PKI/admin.key")
contexts:
  - name: conductor-dev
    context: { cluster: conductor-dev, user: conductor-admin }
current-context: conductor-dev
EOF
  mv "$DIR/kubeconfig.tmp" "$DIR/kubeconfig"
  # shellcheck disable=SC2016 # $PATH is for the shell that sources it
  printf 'export KUBECONFIG=%q\nexport PATH=%q:"$PATH"\n' "$DIR/kubeconfig" "$BIN" >"$DIR/env"
}

# curl as the admin user against the API server (PATH under https://127.0.0.1:PORT).
api() {
  curl -sf --max-time 2 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$APISERVER_PORT$1"
}

# shellcheck disable=SC2317 # run by wait_for
etcd_healthy() {
  curl -sf --max-time 2 --cacert "$PKI/ca.crt" --cert "$PKI/apiserver-etcd-client.crt" \
    --key "$PKI/apiserver-etcd-client.key" "https://127.0.0.1:$ETCD_CLIENT_PORT/health" |
    grep -q '"health":"true"'
}

start_etcd() {
  local url_c="https://127.0.0.1:$ETCD_CLIENT_PORT" url_p="https://127.0.0.1:$ETCD_PEER_PORT"
  # The --initial-* flags are ignored when etcd/ already has data (a restart).
  start_component etcd "$BIN/etcd" --name conductor --data-dir "$DIR/etcd" \
    --listen-client-urls "$url_c" --advertise-client-urls "$url_c" \
    --listen-peer-urls "$url_p" --initial-advertise-peer-urls "$url_p" \
    --initial-cluster "conductor=$url_p" --initial-cluster-state new \
    --cert-file "$PKI/etcd.crt" --key-file "$PKI/etcd.key" \
    --trusted-ca-file "$PKI/ca.crt" --client-cert-auth \
    --peer-cert-file "$PKI/etcd.crt" --peer-key-file "$PKI/etcd.key" \
    --peer-trusted-ca-file "$PKI/ca.crt" --peer-client-cert-auth
  wait_for etcd healthy etcd_healthy
}

start_apiserver() {
  # --endpoint-reconciler-type none: the default reconciler refuses a loopback advertise
  # address. --allow-privileged: the agent's DaemonSet (manifests/deploy/) is privileged.
  start_component kube-apiserver "$BIN/kube-apiserver" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
    --endpoint-reconciler-type none \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --cert-dir "$PKI" --client-ca-file "$PKI/ca.crt" \
    --etcd-servers "https://127.0.0.1:$ETCD_CLIENT_PORT" --etcd-cafile "$PKI/ca.crt" \
    --etcd-certfile "$PKI/apiserver-etcd-client.crt" \
    --etcd-keyfile "$PKI/apiserver-etcd-client.key" \
    --authorization-mode Node,RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --allow-privileged=true \
    "${APISERVER_FLAGS[@]}"
  wait_for kube-apiserver ready api /readyz
  # /readyz can say ok before the bootstrap controller has made namespace `default`.
  wait_for kube-apiserver "serving namespace default" api /api/v1/namespaces/default
}

# Stops what this `up` started when it fails or is interrupted; DIR and its logs stay.
# shellcheck disable=SC2317 # a trap
up_cleanup() {
  local rc=$? name i
  [ "$rc" -ne 0 ] || return 0
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
    name="${STARTED[i]}"
    stop_component "$name" || true
  done
  [ "${#STARTED[@]}" -eq 0 ] || write_pids
  echo "$PROG: up did not finish (exit $rc); the logs stay in $DIR ('$0 down $DIR' removes it)" >&2
  exit "$rc"
}

cmd_up() {
  [ $# -ge 1 ] && { [ $# -eq 1 ] || [ "$2" = -- ]; } || {
    usage >&2
    exit 2
  }
  set_dir "$1"
  local given=false
  APISERVER_FLAGS=()
  if [ $# -ge 2 ]; then
    given=true
    APISERVER_FLAGS=("${@:3}")
  fi
  local t0="$EPOCHREALTIME"
  local tool
  for tool in openssl curl ss setsid; do
    command -v "$tool" >/dev/null 2>&1 || die "needs $tool on PATH"
  done
  if [ -e "$DIR" ] && ! is_ours && { [ ! -d "$DIR" ] || [ -n "$(ls -A "$DIR")" ]; }; then
    die "$DIR exists and is not a control-plane directory (no $MARKER): give a new or empty one"
  fi
  if ! built; then
    "$0" build >/dev/null || die "the build failed"
  fi

  mkdir -p "$DIR"
  chmod 700 "$DIR" # private keys, and etcd's data
  touch "$DIR/$MARKER"
  PKI="$DIR/pki"
  # The extra flags: those given now, else those of the first `up` (a restart keeps them).
  if [ "$given" = true ]; then
    : >"$DIR/apiserver-flags"
    [ "${#APISERVER_FLAGS[@]}" -eq 0 ] || printf '%s\n' "${APISERVER_FLAGS[@]}" >"$DIR/apiserver-flags"
  elif [ -f "$DIR/apiserver-flags" ]; then
    mapfile -t APISERVER_FLAGS <"$DIR/apiserver-flags"
  fi
  read_pids
  local name all=true
  for name in "${COMPONENTS[@]}"; do running "$name" || all=false; done
  if [ "$all" = true ]; then
    echo "$PROG: $DIR is up already (etcd pid ${PID[etcd]}," \
      "kube-apiserver pid ${PID[kube-apiserver]})" >&2
    echo "$DIR/kubeconfig"
    return 0
  fi

  STARTED=()
  trap up_cleanup EXIT
  trap 'exit 130' INT TERM
  (
    umask 077
    make_pki
  )
  pick_ports
  # shellcheck source=/dev/null
  . "$DIR/ports"
  write_kubeconfig
  running etcd || start_etcd
  running kube-apiserver || start_apiserver
  trap - EXIT INT TERM

  local ms=$(((${EPOCHREALTIME/./} - ${t0/./}) / 1000))
  printf '%s: up in %d.%01d s: kube-apiserver https://127.0.0.1:%s (pid %s), etcd pid %s\n' \
    "$PROG" $((ms / 1000)) $((ms % 1000 / 100)) "$APISERVER_PORT" "${PID[kube-apiserver]}" \
    "${PID[etcd]}" >&2
  echo "$PROG: kubectl: '. $DIR/env' (KUBECONFIG and $BIN on PATH)" >&2
  echo "$DIR/kubeconfig"
}

# ---------------------------------------------------------------------------------------------
# status, down

cmd_status() {
  [ $# -eq 1 ] || {
    usage >&2
    exit 2
  }
  set_dir "$1"
  [ -e "$DIR" ] || die "$DIR does not exist"
  is_ours || die "$DIR is not a control-plane directory (no $MARKER)"
  PKI="$DIR/pki"
  read_pids
  # shellcheck source=/dev/null
  [ ! -f "$DIR/ports" ] || . "$DIR/ports"
  local name ok=true
  for name in "${COMPONENTS[@]}"; do
    if running "$name"; then
      echo "$name: running, pid ${PID[$name]}"
    else
      echo "$name: not running"
      ok=false
    fi
  done
  if [ "$ok" = true ] && [ "$(api /readyz)" = ok ]; then
    echo "kube-apiserver: ready at https://127.0.0.1:$APISERVER_PORT; kubeconfig $DIR/kubeconfig"
  else
    echo "kube-apiserver: not ready"
    return 1
  fi
}

cmd_down() {
  [ $# -eq 1 ] || {
    usage >&2
    exit 2
  }
  set_dir "$1"
  if [ ! -e "$DIR" ]; then
    echo "$PROG: $DIR does not exist: nothing to stop" >&2
    return 0
  fi
  is_ours || die "$DIR is not a control-plane directory (no $MARKER): not touching it"
  read_pids
  local i ok=true
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    stop_component "${COMPONENTS[i]}" || ok=false
  done
  [ "$ok" = true ] || die "could not stop everything; $DIR stays"
  rm -rf "$DIR"
  echo "$PROG: stopped, and removed $DIR" >&2
}

# ---------------------------------------------------------------------------------------------
# main

main() {
  case "${1:-}" in
    build)
      shift
      cmd_build "$@"
      ;;
    up)
      shift
      cmd_up "$@"
      ;;
    status)
      shift
      cmd_status "$@"
      ;;
    down)
      shift
      cmd_down "$@"
      ;;
    crds)
      shift
      cmd_crds "$@"
      ;;
    -h | --help | help) usage ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
}

# One line, so that bash has read the whole script before running any of it (an edit while it
# runs cannot change what it does).
main "$@"; exit $?
