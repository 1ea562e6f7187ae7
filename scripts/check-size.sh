#!/usr/bin/env bash
# No production source file over 800 lines (issue 12). A file's production part is everything
# before its first top-level `#[cfg(test)]`; test files and test modules are not counted.
set -euo pipefail
cd "$(dirname "$0")/.."
limit=${1:-800}
over=$(git ls-files '*.rs' | grep -v -E '(^|/)tests/|(^|/)benches/|(^|/)fuzz/|(^|/)tests\.rs$|_tests\.rs$' |
  while read -r f; do
    n=$(awk '/^#\[cfg\(test\)\]/{exit} {n++} END{print n+0}' "$f")
    if [ "$n" -gt "$limit" ]; then echo "$n $f"; fi
  done | sort -rn)
if [ -n "$over" ]; then
  echo "production files over $limit lines (split them by concern):" >&2
  echo "$over" >&2
  exit 1
fi
