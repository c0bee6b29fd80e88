#!/usr/bin/env bash
# Formats the native sources (runtime-core/native/**/*.cc, *.h) with .clang-format.
# --check: change nothing, list the files that need formatting and exit 1 if there are any.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=format
case "${1:-}" in
  --check) mode=check ;;
  "") ;;
  *)
    echo "usage: hack/clang-format.sh [--check]" >&2
    exit 2
    ;;
esac

cf="$(command -v clang-format || true)"
if [ -z "$cf" ]; then
  echo "clang-format not found: run hack/install-deps.sh" >&2
  exit 1
fi

mapfile -d '' files < <(find runtime-core/native -type f \( -name '*.cc' -o -name '*.h' \) -print0 | sort -z)
[ "${#files[@]}" -eq 0 ] && exit 0

if [ "$mode" = format ]; then
  "$cf" -i --style=file "${files[@]}"
  exit 0
fi

bad=()
for f in "${files[@]}"; do
  if ! "$cf" --style=file --dry-run --Werror "$f" >/dev/null 2>&1; then
    bad+=("$f")
  fi
done
if [ "${#bad[@]}" -gt 0 ]; then
  echo "clang-format: needs formatting (run hack/clang-format.sh):" >&2
  printf '  %s\n' "${bad[@]}" >&2
  exit 1
fi
