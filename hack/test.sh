#!/usr/bin/env bash
# Runs everything CI runs: host set-up, npm ci (builds the native core), type check, lint, and
# the jest suites (as root: the integration suites use the real kernel). Extra arguments go to
# jest, e.g. `hack/test.sh test/integration/fixtures.test.ts`. Jest's results also land in
# test-results.json (jest --json), which .ci/run summarises.
#
# A failing step does not hide the others: jest runs even when the build, type check or lint
# failed (as long as jest is installed), and the exit code is non-zero if any step failed.
set -euo pipefail
cd "$(dirname "$0")/.."

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
# CI, and any checkout whose node_modules is missing or older than the lock file, installs
# from scratch; otherwise an incremental native build is enough (and much faster).
if [ "${CI:-}" = true ] || [ ! node_modules/.package-lock.json -nt package-lock.json ]; then
  step "npm ci (builds build/Release: conductor-runtime, conductor-shim, addon)" \
    npm ci --no-audit --no-fund
else
  step "native build (build/Release)" npm run --silent build:native
fi
if [ ! -x node_modules/.bin/jest ]; then
  echo "test: npm ci did not install jest; nothing more can run" >&2
  exit 1
fi
step typecheck npm run --silent typecheck
step lint npm run --silent lint
rm -f test-results.json
step jest npm test -- --json --outputFile=test-results.json "$@"

if [ "${#failed[@]}" -gt 0 ]; then
  printf 'test: failed: %s\n' "${failed[@]}" >&2
  exit 1
fi
