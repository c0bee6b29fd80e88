#!/usr/bin/env bash
# Installs what Conductor needs on the host (Debian 12 / Ubuntu 24.04, as root), and only what is
# missing: running it again does nothing. Quiet unless it installs something. -v: list each check.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"
require_root "$0" "$@"

verbose=0
[ "${1:-}" = -v ] && verbose=1

say() { echo "install-deps: $*" >&2; }

# Each entry is one requirement: alternatives separated by '|' (first one apt knows wins), for
# packages named differently across Debian and Ubuntu releases.
required=(
  build-essential g++ make python3 pkg-config # native build (node-gyp)
  libseccomp-dev nlohmann-json3-dev            # runtime core
  busybox-static                               # test and demo rootfs
  crun runc podman                             # peers for benchmarks and tests
  'golang-github-containers-common|containers-common' # /usr/share/containers/seccomp.json
  prometheus                                   # promtool lints /metrics in tests
  bpftool                                      # tests check the eBPF device filter
  containernetworking-plugins                  # CNI: bridge, host-local, portmap, loopback
  nftables dnsmasq-base conntrack              # service virtual IPs (UDP flows of a gone endpoint), DNS
  wrk                                          # bench: data path through services
  clang-format hyperfine iproute2 util-linux jq
  openssl curl                                 # hack/control-plane.sh: certificates, /readyz
  zlib1g-dev libzstd-dev zstd                  # layer unpacking (gzip, zstd); zstd for tests
  skopeo debootstrap                           # image pulls, archive imports, distribution bases
  umoci docker-registry apache2-utils          # tests: images, a real registry (htpasswd for auth)
)

installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

# Runs apt quietly; shows its output only when it fails.
quietly() {
  local log
  log="$(mktemp)"
  if ! DEBIAN_FRONTEND=noninteractive "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    say "failed: $*"
    exit 1
  fi
  rm -f "$log"
}

updated=0
apt_update_once() {
  if [ "$updated" -eq 0 ]; then
    say "apt-get update"
    quietly apt-get update
    updated=1
  fi
}

# apt-cache knows a package only after an update on a fresh machine.
known() {
  apt-cache show "$1" >/dev/null 2>&1
}

missing=()
for req in "${required[@]}"; do
  IFS='|' read -r -a alts <<<"$req"
  ok=0
  for pkg in "${alts[@]}"; do
    if installed "$pkg"; then
      ok=1
      [ "$verbose" -eq 1 ] && say "ok: $pkg"
      break
    fi
  done
  [ "$ok" -eq 1 ] && continue
  apt_update_once
  pick=""
  for pkg in "${alts[@]}"; do
    if known "$pkg"; then
      pick="$pkg"
      break
    fi
  done
  if [ -z "$pick" ]; then
    say "no package available for: ${alts[*]}"
    exit 1
  fi
  missing+=("$pick")
done

# Node.js with npm: install Debian's if there is none; never replace one that exists.
if ! command -v node >/dev/null 2>&1; then
  apt_update_once
  missing+=(nodejs)
  # NodeSource's nodejs bundles npm; Debian's and Ubuntu's ship it separately.
  known npm && missing+=(npm)
elif ! command -v npm >/dev/null 2>&1; then
  apt_update_once
  missing+=(npm)
fi

if [ "${#missing[@]}" -gt 0 ]; then
  say "installing: ${missing[*]}"
  quietly apt-get install -y "${missing[@]}"
fi

# package.json says node >= 20.19 (chokidar 5, @kubernetes/client-node 2 with undici 7).
version="$(node -p 'process.versions.node')"
if ! node -e '
  const [a, b] = process.versions.node.split(".").map(Number);
  process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1);'; then
  say "Node.js $version is too old: Conductor needs >= 20.19 (e.g. NodeSource's nodejs 20 or 22)"
  exit 1
fi
[ "$verbose" -eq 1 ] && say "ok: node $version, npm $(npm --version)"
exit 0
