#!/usr/bin/env bash
# Runs the benchmarks in bench/ (as root): runtime start-to-exit against crun and runc, the
# shim's memory against conmon, manifest to Running against podman kube play, and image
# rebuilds and pulls against podman build / pull, the OCI validation suite against crun and
# runc, and networking (wrk through a Service and host ports against the container's address,
# network set-up against bare CNI; Service rule changes at scale against a whole-table
# rewrite; a /metrics scrape of 200 containers against reading their files; kubectl apply to
# Running against a real kube-apiserver beside the same manifests in a watch directory, the
# agent's API requests per Container and its memory). Leading names choose benchmarks (default:
# all):
#   hack/bench.sh [runtime-start] [shim-memory] [controller-start] [images] [oci-validation]
#                 [network] [service-rules] [metrics-scrape] [kubernetes-start] [--flags...]
# Flags go to every chosen benchmark, each reads its own: --iterations N (default 200),
# --warmup N (5), --containers N (monitors per kind, 3); see each bench/*.ts for the rest.
#
# The benchmarks are TypeScript like the rest of the project and share test/fixtures with the
# tests. Node 20 cannot run .ts files, so they are compiled first with the swc that jest already
# uses (type checking is `npm run typecheck`'s job) into build/bench/, keeping the directory
# layout so relative imports still resolve.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"
require_root "$0" "$@" # containers, cgroups, mount namespaces
cd "$CONDUCTOR_REPO"

ALL=(runtime-start shim-memory controller-start images oci-validation network service-rules metrics-scrape kubernetes-start)
CHOSEN=()
while [ $# -gt 0 ] && [[ "$1" != --* ]]; do
  case " ${ALL[*]} " in
    *" $1 "*) CHOSEN+=("$1") ;;
    *)
      echo "bench: unknown benchmark '$1' (choose from: ${ALL[*]})" >&2
      exit 2
      ;;
  esac
  shift
done
[ ${#CHOSEN[@]} -gt 0 ] || CHOSEN=("${ALL[@]}")

ensure_node_modules # the same rule as hack/test.sh and hack/demo.sh (hack/lib.sh)
ensure_built

# shellcheck disable=SC2016 # JavaScript template literals, not shell
rm -rf build/bench # nothing stale: a file no longer compiled must not still resolve
node --input-type=module -e '
  import { transformFileSync } from "@swc/core";
  import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
  import { dirname, join, normalize } from "node:path";
  // All of bench/ and every file it imports, followed through relative imports (test/fixtures,
  // controller/, runtime-core/src/): the controller and images benchmarks run controller and
  // runtime-core code in-process.
  const todo = readdirSync("bench").filter((f) => f.endsWith(".ts")).map((f) => `bench/${f}`);
  const done = new Set();
  while (todo.length > 0) {
    const file = todo.pop();
    if (done.has(file)) continue;
    done.add(file);
    const source = readFileSync(file, "utf8");
    for (const m of source.matchAll(/(?:from|import)\s*\(?\s*["\x27](\.{1,2}\/[^"\x27]+)\.js["\x27]/g)) {
      const dep = normalize(join(dirname(file), `${m[1]}.ts`));
      if (existsSync(dep)) todo.push(dep);
    }
    const { code } = transformFileSync(file, {
      jsc: { parser: { syntax: "typescript" }, target: "es2022" },
      module: { type: "es6" },
    });
    const out = `build/bench/${file.replace(/\.ts$/, ".js")}`;
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, code);
  }'

first=1
for name in "${CHOSEN[@]}"; do
  [ $first -eq 1 ] || echo
  first=0
  node "build/bench/bench/$name.js" "$@"
done
