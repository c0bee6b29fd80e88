#!/usr/bin/env bash
# Builds the agent's image, conductor-agent:latest (what manifests/deploy/daemonset.yaml runs),
# with Conductor itself, and exports it as an archive that `kind load image-archive` and
# `docker load` read (as root; run as a user, it re-runs itself with sudo):
#
#   hack/agent-image.sh [FILE]            FILE default ./conductor-agent.tar
#     --format docker-archive|oci-archive default docker-archive
#     --tag REF                           default conductor-agent:latest
#     --state-dir DIR                     where layers are built and cached (default
#                                         /var/lib/conductor, as conductor build's)
#     --base-cache DIR                    where the Debian base is built and shared
#
# The Image is manifests/deploy/agent-image/agent-image.yaml: Debian bookworm (debootstrap), the
# packages the agent runs on a node, this host's node binary (the native addon is built for its
# ABI; its debug symbols stripped) and this checkout's built tree. An Image copies only from its manifest's directory, so
# the tree is staged in a directory of its own (removed afterwards) beside a copy of the
# manifest: bin/, crds/, package.json, dist/ (without type declarations), the addon and
# executables of build/Release, and the production node_modules (`npm ci --omit=dev
# --ignore-scripts` from npm's cache, without source maps and type declarations). Then
# `conductor build -f` (progress shown; a second run finds the unchanged layers cached, a code
# change rebuilds the last two steps) and `conductor image export`.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"
require_root "$0" "$@"

# usage CODE: the options (from the comment above), on stdout for --help, else on stderr.
usage() {
  if [ "$1" -eq 0 ]; then
    sed -n '6,11p' "$0" | sed 's/^# \{0,1\}//'
  else
    sed -n '6,11p' "$0" | sed 's/^# \{0,1\}//' >&2
  fi
  exit "$1"
}

out=""
format=docker-archive
tag=conductor-agent:latest
state=/var/lib/conductor
base_cache=""
while [ $# -gt 0 ]; do
  case "$1" in
  --format) format="${2:?--format needs a value}" && shift 2 ;;
  --tag) tag="${2:?--tag needs a value}" && shift 2 ;;
  --state-dir) state="${2:?--state-dir needs a value}" && shift 2 ;;
  --base-cache) base_cache="${2:?--base-cache needs a value}" && shift 2 ;;
  -h | --help) usage 0 ;;
  -*) echo "agent-image: unknown option $1" >&2 && usage 2 ;;
  *)
    [ -z "$out" ] || usage 2
    out="$1" && shift
    ;;
  esac
done
case "$format" in
docker-archive | oci-archive) ;;
*) echo "agent-image: --format must be docker-archive or oci-archive" >&2 && usage 2 ;;
esac
# Relative paths are the caller's, before this script moves to the checkout.
out="$(realpath -m -- "${out:-conductor-agent.tar}")"
state="$(realpath -m -- "$state")"
[ -z "$base_cache" ] || base_cache="$(realpath -m -- "$base_cache")"

say() { printf '== %s\n' "$*"; }

"$CONDUCTOR_REPO/hack/install-deps.sh"
# An installed checkout is used as it is (CI installed it before the tests); one that is not
# gets `npm ci`; then the native core and dist/ when a source changed.
if npm_ci_needed; then ensure_node_modules; fi
ensure_built
cd "$CONDUCTOR_REPO"

ctx="$(mktemp -d "${TMPDIR:-/tmp}/conductor-agent-image.XXXXXX")"
trap 'rm -rf "$ctx"' EXIT
chmod 755 "$ctx"

say "staging the build context in $ctx"
cp manifests/deploy/agent-image/agent-image.yaml "$ctx/"
node="$(readlink -f "$(command -v node)")"
# Without its debug symbols (12 MB); the dynamic symbols addons link against stay.
strip --strip-all -o "$ctx/node" "$node"
chmod 0755 "$ctx/node"
tree="$ctx/conductor"
mkdir -p "$tree/build/Release"
cp -a bin crds package.json package-lock.json "$tree/"
cp -a dist "$tree/dist"
rm -f "$tree/dist/.build-stamp"
find "$tree/dist" -type f -name '*.d.ts' -delete
for f in conductor_native.node conductor-runtime conductor-shim conductor-probe; do
  cp -a "build/Release/$f" "$tree/build/Release/"
done
log="$ctx.npm.log"
if ! (cd "$tree" && npm ci --omit=dev --ignore-scripts --prefer-offline --no-audit --no-fund) >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  echo "agent-image: npm ci --omit=dev failed; its output is in $log" >&2
  exit 1
fi
rm -f "$log"
# What only development reads: source maps and type declarations, npm's lock copies.
find "$tree/node_modules" -type f \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' \) -delete
rm -f "$tree/package-lock.json" "$tree/node_modules/.package-lock.json"
say "staged node $("$node" --version) ($(du -sh "$ctx/node" | cut -f1)) and the tree ($(du -sh "$tree" | cut -f1))"

conductor=("$node" "$CONDUCTOR_REPO/bin/conductor.js")
build=("${conductor[@]}" build -f "$ctx/agent-image.yaml" --state-dir "$state")
[ -z "$base_cache" ] || build+=(--base-cache "$base_cache")
say "conductor build -f agent-image.yaml --state-dir $state (debootstrap and apt-get the first time: a minute or two)"
"${build[@]}"
say "conductor image export conductor-agent -o $out --format $format --tag $tag"
"${conductor[@]}" image export conductor-agent -o "$out" --format "$format" --tag "$tag" \
  --state-dir "$state"

cat <<EOF
== $out holds $tag ($format, $(du -h "$out" | cut -f1)). Load it where the agent runs:
   kind load image-archive $out        # onto every node of a kind cluster
   docker load -i $out                 # into a Docker engine (docker-archive)
   then: kubectl apply -f crds/ && kubectl apply -f manifests/deploy/
EOF
