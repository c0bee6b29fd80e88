#!/usr/bin/env bash
# Runs everything CI runs: host set-up, npm ci (builds the native core), type check, lint, and
# the jest suites (as root: the integration suites use the real kernel; run as a user, it
# re-runs itself with sudo). Extra arguments go to jest, e.g.
# `hack/test.sh test/integration/fixtures.test.ts`. Jest's results also land in
# test-results.json (jest --json), which .ci/run summarises.
#
# A failing step does not hide the others: jest runs even when the build, type check or lint
# failed (as long as jest is installed), and the exit code is non-zero if any step failed.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"
require_root "$0" "$@"
cd "$CONDUCTOR_REPO"

failed=()
step() {
  local name="$1"
  shift
  echo "== $name"
  if ! "$@"; then
    echo "== $name: FAILED" >&2
    failed+=("$name")
  fi
}

hack/install-deps.sh
# CI, and a checkout whose `npm ci` never finished or whose lock file changed since, installs
# from scratch (hack/lib.sh: npm_ci_needed); otherwise the incremental builds are enough.
step "npm ci when needed (builds build/Release and dist/)" ensure_node_modules
step "native build and dist/ when stale" ensure_built
step "conductor on PATH (npm link)" link_cli
if [ ! -x node_modules/.bin/jest ]; then
  echo "test: npm ci did not install jest; nothing more can run" >&2
  exit 1
fi
# Go-built binaries the Kubernetes suites run (cached under /var/cache/conductor/tools; the first
# build takes about 7 minutes): built here so no suite waits for it, or skips.
step "control-plane binaries (hack/control-plane.sh build)" hack/control-plane.sh build
step "third-party CRDs (hack/control-plane.sh crds)" hack/control-plane.sh crds
step typecheck npm run --silent typecheck
step lint npm run --silent lint
rm -f test-results.json
step jest npm test -- --json --outputFile=test-results.json "$@"

if [ "${#failed[@]}" -gt 0 ]; then
  printf 'test: failed: %s\n' "${failed[@]}" >&2
  exit 1
fi
