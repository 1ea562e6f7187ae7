#!/usr/bin/env bash
# No production source file over 800 lines (issue 12). A file's production lines are all of its
# lines except its `#[cfg(test)]` items (a test module, inline or declared, wherever it sits);
# test files and folders are not counted.
set -euo pipefail
cd "$(dirname "$0")/.."
limit=${1:-800}
production_lines() {
  # Skips from a top-level `#[cfg(test)]` to the end of the item under it (brace depth back to 0,
  # or a `mod x;` line).
  awk '
    skip == 0 && /^#\[cfg\(test\)\]/ { skip = 1; depth = 0; opened = 0; next }
    skip == 1 {
      line = $0
      gsub(/"([^"\\]|\\.)*"/, "", line)
      n_open = gsub(/\{/, "{", line); n_close = gsub(/\}/, "}", line)
      depth += n_open - n_close
      if (n_open > 0) opened = 1
      if ((opened && depth <= 0) || (!opened && line ~ /;[[:space:]]*$/)) skip = 0
      next
    }
    { n++ }
    END { print n + 0 }
  ' "$1"
}
over=$(git ls-files '*.rs' | grep -v -E '(^|/)tests/|(^|/)benches/|(^|/)fuzz/|(^|/)tests\.rs$|_tests\.rs$' |
  while read -r f; do
    n=$(production_lines "$f")
    if [ "$n" -gt "$limit" ]; then echo "$n $f"; fi
  done | sort -rn)
if [ -n "$over" ]; then
  echo "production files over $limit lines (split them by concern):" >&2
  echo "$over" >&2
  exit 1
fi
