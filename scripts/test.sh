#!/usr/bin/env bash
# The project's test command (`npm test`; CI runs it in a fresh clone with CI=true).
#
#   bash scripts/test.sh            setup, lint, then every test/**/*.test.ts (unit, http, integration,
#                                   and any other folder there but test/helpers)
#   bash scripts/test.sh FILE...    setup, lint, then only the given test files
#
# Runs scripts/setup.sh (install only), `npm run lint`, then Node 24's test runner (one file at a time,
# spec reporter, 10 min per-test timeout). Exits non-zero if setup, lint or any test fails. The last
# line is a plain summary: "tests: N passed, N failed, N skipped".
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1

say() { printf '[test] %s\n' "$*"; }

if ! bash scripts/setup.sh; then
  say "setup failed"
  echo "tests: 0 passed, 1 failed"
  exit 1
fi
# the project's Node 24 (npm package "node") first, whatever node the caller has
export PATH="$ROOT/node_modules/.bin:$PATH"
say "node $(node --version)"

# test-only host tools: the integration tests build a tiny image from the host's static busybox
if [ ! -x /bin/busybox ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  say "installing busybox-static (test prerequisite)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends busybox-static >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y --no-install-recommends busybox-static >/dev/null 2>&1; } ||
    say "warning: could not install busybox-static"
fi

status=0
say "lint: npm run lint"
if ! npm run lint; then
  say "lint: FAILED"
  status=1
fi

files=()
if [ "$#" -gt 0 ]; then
  files=("$@")
else
  while IFS= read -r f; do files+=("$f"); done < <(
    find test -type f -name '*.test.ts' -not -path 'test/helpers/*' -not -path '*/node_modules/*' |
      LC_ALL=C sort
  )
fi
if [ "${#files[@]}" -eq 0 ]; then
  say "no test files found under test/unit, test/http, test/integration"
  echo "tests: 0 passed, 0 failed"
  exit "$status"
fi

TAP=$(mktemp "${TMPDIR:-/tmp}/sessionpool-test.XXXXXX")
trap 'rm -f "$TAP"' EXIT
say "running ${#files[@]} test files"
node --test --test-concurrency=1 --test-timeout=600000 \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$TAP" \
  "${files[@]}"
test_rc=$?
[ "$test_rc" = 0 ] || status=1

count() { awk -v k="# $1" '$1 " " $2 == k { n = $3 } END { print n + 0 }' "$TAP"; }
pass=$(count pass)
fail=$(($(count fail) + $(count cancelled)))
skipped=$(($(count skipped) + $(count todo)))
if [ "$test_rc" != 0 ] && [ "$fail" = 0 ]; then fail=1; fi
[ "$status" = 0 ] || say "FAILED (lint or tests, see above)"
echo "tests: $pass passed, $fail failed, $skipped skipped"
exit "$status"
