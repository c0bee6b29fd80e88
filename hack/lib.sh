# Shared by the hack/ scripts people run (sourced, not executed): becoming root, the one rule for
# "is this checkout installed", building what is stale, and putting `conductor` on PATH.
# shellcheck shell=bash

# The checkout this file belongs to.
CONDUCTOR_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Re-runs the calling script as root through sudo when it is not root already, so the same
# command works as root (Debian's root has no sudo) and as a user with sudo. PATH is kept: Node
# may live where sudo's secure_path does not look (nvm, a tarball in ~/.local).
#   require_root "$0" "$@"
require_root() {
  [ "$(id -u)" -eq 0 ] && return 0
  local script="$1"
  shift
  if ! command -v sudo >/dev/null 2>&1; then
    echo "$(basename "$script"): needs root (it installs packages, mounts, makes cgroups): run it as root" >&2
    exit 1
  fi
  exec sudo env "PATH=$PATH" "$script" "$@"
}

# What an installed node_modules was installed from: the lock file, and the Node ABI the native
# addon was built against (a Node upgrade needs a rebuild too).
install_fingerprint() {
  local dir="$1"
  printf '%s node-abi-%s\n' "$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)" \
    "$(node -p process.versions.modules)"
}

# Written last by ensure_node_modules, only after `npm ci` (its native build and `prepare` too)
# succeeded: a node_modules without it, or with another fingerprint, is incomplete or stale —
# e.g. an `npm ci` interrupted by Ctrl-C, which leaves a node_modules that exists but lacks
# packages, or a native build that never finished.
INSTALL_STAMP=node_modules/.conductor-installed

# Succeeds (returns 0) when DIR (default: this checkout) needs `npm ci`.
npm_ci_needed() {
  local dir="${1:-$CONDUCTOR_REPO}"
  [ -f "$dir/$INSTALL_STAMP" ] || return 0
  [ "$(cat "$dir/$INSTALL_STAMP")" != "$(install_fingerprint "$dir")" ]
}

# npm ci when needed (with CI=true, once per run: the first script of a CI run does it and
# exports CONDUCTOR_NPM_CI_DONE, so a script the tests start — hack/demo.sh, agent-image.sh —
# does not install node_modules again under the running tests), then the stamp.
ensure_node_modules() {
  cd "$CONDUCTOR_REPO" || return 1
  local ci_forced=false
  if [ "${CI:-}" = true ] && [ "${CONDUCTOR_NPM_CI_DONE:-}" != "$CONDUCTOR_REPO" ]; then
    ci_forced=true
  fi
  if [ "$ci_forced" = true ] || npm_ci_needed; then
    rm -f "$INSTALL_STAMP"
    # Builds build/Release (the root package's install script) and dist/ (prepare). Its output
    # (hundreds of node-gyp lines) is kept in a log, shown if it fails.
    local log
    log="$(mktemp /tmp/conductor-npm-ci.XXXXXX.log)"
    echo "npm ci: installing dependencies, building the native core and dist/ (about a minute)" >&2
    if ! npm ci --no-audit --no-fund >"$log" 2>&1; then
      tail -n 40 "$log" >&2
      echo "npm ci failed; its whole output is in $log" >&2
      return 1
    fi
    rm -f "$log"
    install_fingerprint . >"$INSTALL_STAMP"
    touch dist/.build-stamp
  fi
  if [ "${CI:-}" = true ]; then
    export CONDUCTOR_NPM_CI_DONE="$CONDUCTOR_REPO"
  fi
}

# The native core (incremental: make rebuilds what changed) and dist/ when a source is newer
# than the last build. Both are no-ops on an up-to-date checkout.
ensure_built() {
  cd "$CONDUCTOR_REPO" || return 1
  npm run --silent build:native >/dev/null || return 1
  local stamp=dist/.build-stamp
  if [ ! -f "$stamp" ] ||
    [ -n "$(find controller runtime-core/src crds bin package.json tsconfig.json tsconfig.build.json \
      -newer "$stamp" -print -quit)" ]; then
    npm run --silent build >/dev/null || return 1
    touch "$stamp"
  fi
}

# `conductor` on PATH, as `npm link` puts a package's command there (npm's global bin directory,
# /usr/bin or /usr/local/bin): a symlink to this checkout's bin/conductor.js. Nothing is
# installed or built by it (--ignore-scripts). `npm rm -g conductor` removes it.
link_cli() {
  cd "$CONDUCTOR_REPO" || return 1
  local want="$CONDUCTOR_REPO/bin/conductor.js" have
  have="$(command -v conductor 2>/dev/null || true)"
  if [ -n "$have" ] && [ "$(readlink -f "$have")" = "$(readlink -f "$want")" ]; then
    return 0
  fi
  npm link --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null || return 1
  hash -r
  have="$(command -v conductor 2>/dev/null || true)"
  if [ -z "$have" ] || [ "$(readlink -f "$have")" != "$(readlink -f "$want")" ]; then
    echo "warning: npm linked conductor into $(npm prefix -g)/bin, which is not first on PATH;" \
      "run $want instead" >&2
  fi
}
