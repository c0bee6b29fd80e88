#!/usr/bin/env bash
# Builds the OCI runtime validation suite (github.com/opencontainers/runtime-tools: one TAP
# program per runtime-spec area, validation/*/*.go, plus `runtimetest`, which runs inside the
# containers it makes) from the Go module proxy, and prints the directory that holds it:
#
#   hack/oci-validation.sh                    # build when missing (about 30 s), print the dir
#   hack/oci-validation.sh --suite spec-1.0   # the older pin (below)
#   hack/oci-validation.sh --rebuild          # build again
#
# Two pins, as pseudo-versions of runtime-tools' master (its latest tag, v0.9.0, is from 2019
# and predates most of what the suite checks):
#   current   master of 2025-11-14: runtime-spec 1.3.0. What CI runs.
#   spec-1.0  master of 2022-11-07: runtime-spec 1.0.2-dev. crun 1.8.1 (Debian 12's) refuses
#             every config of the current suite ("unknown version specified": it reads only
#             1.0.x), so the comparison with crun runs this one (bench/oci-validation.ts).
# The build lands in
# $CONDUCTOR_TOOLS_CACHE (default /var/cache/conductor/tools) under the pin, so it is reused
# until the pin changes; Go's own caches go to a temporary directory that is removed after.
#
# The directory has the programs as <test>.t (the names the suite's Makefile gives them),
# runtimetest and rootfs-amd64.tar.gz (the suite's busybox rootfs): the .t programs expect both
# in their working directory and take the runtime from $RUNTIME. The test that runs them is
# test/conformance/oci-validation.test.ts; bench/oci-validation.ts prints them for
# conductor-runtime beside crun and runc.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"

MODULE=github.com/opencontainers/runtime-tools
rebuild=false
suite=current
while [ $# -gt 0 ]; do
  case "$1" in
    --rebuild) rebuild=true ;;
    --suite)
      suite="${2:-}"
      shift
      ;;
    *)
      echo "usage: $0 [--suite current|spec-1.0] [--rebuild]" >&2
      exit 2
      ;;
  esac
  shift
done
case "$suite" in
  current) VERSION=v0.9.1-0.20251114084447-edf4cb3d2116 ;;
  spec-1.0) VERSION=v0.9.1-0.20221107090550-2e043c6bd626 ;;
  *)
    echo "oci-validation: unknown --suite '$suite' (current or spec-1.0)" >&2
    exit 2
    ;;
esac
CACHE="${CONDUCTOR_TOOLS_CACHE:-/var/cache/conductor/tools}"
OUT="$CACHE/runtime-tools-$VERSION"

if [ "$rebuild" = false ] && [ -f "$OUT/.complete" ]; then
  echo "$OUT"
  exit 0
fi
again=(--suite "$suite")
[ "$rebuild" = false ] || again+=(--rebuild)
require_root "$0" "${again[@]}" # the cache is a system directory

# Go's tarball install is often not on root's PATH (sudo's secure_path, a CI shell).
command -v go >/dev/null 2>&1 || [ ! -x /usr/local/go/bin/go ] || PATH="$PATH:/usr/local/go/bin"
if ! command -v go >/dev/null 2>&1; then
  echo "oci-validation: needs Go 1.22 or newer on PATH (https://go.dev/dl/)" >&2
  exit 1
fi

work="$(mktemp -d /tmp/conductor-runtime-tools.XXXXXX)"
export GOPATH="$work/gopath" GOCACHE="$work/gocache" GOFLAGS=-mod=mod CGO_ENABLED=0
export GOTOOLCHAIN=local
start=$SECONDS
echo "oci-validation: building $MODULE@$VERSION (about 30 s)" >&2
# Go's download and build chatter goes to a log, shown when something fails.
log="$work/go.log"
trap 'rc=$?; [ "$rc" -eq 0 ] || tail -n 30 "$log" >&2; chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
src="$(go mod download -json "$MODULE@$VERSION" 2>>"$log" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
[ -n "$src" ] || {
  echo "oci-validation: go mod download $MODULE@$VERSION gave no directory" >&2
  exit 1
}
# The module cache is read-only and its zip has no vendor/: build a writable copy against the
# module proxy (the go.sum it ships pins every dependency).
cp -r "$src" "$work/src"
chmod -R u+w "$work/src"
rm -rf "$work/src/vendor"
mkdir -p "$work/bin"
(
  cd "$work/src"
  go build -trimpath -ldflags "-s -w" -o "$work/bin/" ./validation/...
  # runtimetest is copied into the suite's busybox containers: static, as the Makefile builds it.
  go build -trimpath -ldflags "-s -w" -tags "netgo osusergo" -o "$work/bin/runtimetest" \
    ./cmd/runtimetest
) 2>>"$log"

rm -rf "$OUT.tmp"
mkdir -p "$OUT.tmp"
for bin in "$work"/bin/*; do
  name="$(basename "$bin")"
  if [ "$name" = runtimetest ]; then
    cp "$bin" "$OUT.tmp/runtimetest"
  else
    cp "$bin" "$OUT.tmp/$name.t"
  fi
done
cp "$work/src/rootfs-amd64.tar.gz" "$OUT.tmp/"
echo "$MODULE@$VERSION" >"$OUT.tmp/.complete"
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
echo "oci-validation: built $(find "$OUT" -name '*.t' | wc -l) test programs in $((SECONDS - start)) s" >&2
echo "$OUT"
