#!/usr/bin/env bash
# Builds the native core (addon, runtime, shim) into build/Release with node-gyp.
# Serialised with a lock so concurrent builds in one checkout do not trample build/.
set -euo pipefail
cd "$(dirname "$0")/.."
nodedir="$(dirname "$(dirname "$(command -v node)")")"
gyp="$(dirname "$(command -v npm)")/../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js"
[ -f "$gyp" ] || gyp="$(npm prefix -g)/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js"
exec 9>"${TMPDIR:-/tmp}/conductor-native-build.lock"
flock 9
# configure every time (cheap): binding.gyp globs the source directories, so new files count.
if [ "${1:-}" = rebuild ]; then
  node "$gyp" rebuild -j 2 --nodedir="$nodedir"
else
  node "$gyp" configure --nodedir="$nodedir" >/dev/null
  node "$gyp" build -j 2 --nodedir="$nodedir"
fi
