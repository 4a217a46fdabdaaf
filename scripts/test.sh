#!/usr/bin/env bash
# The project's test command (`npm test`; CI runs it in a fresh clone with CI=true).
#
#   bash scripts/test.sh            setup, lint, then every test/**/*.test.ts (unit, http, integration,
#                                   and any other folder there but test/helpers)
#   bash scripts/test.sh FILE...    setup, lint, then only the given test files
#
# Runs scripts/setup.sh (install only), `npm run lint`, then Node 24's test runner (one file at a time,
# spec reporter, 10 min per-test timeout); sandboxes run under gVisor where setup registered it, and the
# isolation, hostile-code and fault suites run a second time under runc (RUNTIME_SUITES below), and the suites that
# reach the store through a whole server a third time on PostgreSQL (STORE_SUITES). Exits non-zero if setup, lint or any test fails. The last
# line is a plain summary: "tests: N passed, N failed, N skipped".
# Under CI=true a skipped test fails the run too, unless its skip reason starts with "lacks: " and names what this
# machine lacks (`{ skip: "lacks: gVisor (runsc) registered with the engine" }`, `t.skip("lacks: ...")`), found by
# probing the machine; the offending tests are listed.
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

# test-only host tools: the integration tests build a tiny image from the host's static busybox, and the Node.js
# kernel tests run sandbox-agent/node_kernel.js on the host's node, which parses cells with Debian's acorn
test_prerequisite() { # FILE_IT_INSTALLS DEBIAN_PACKAGE
  if [ ! -e "$1" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing $2 (test prerequisite)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "$2" >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && apt-get install -y --no-install-recommends "$2" >/dev/null 2>&1; } ||
      say "warning: could not install $2"
  fi
}
test_prerequisite /bin/busybox busybox-static
test_prerequisite /usr/share/nodejs/acorn/package.json node-acorn
# the console's browser tests (test/browser/) drive Debian's chromium through puppeteer-core (no browser download)
test_prerequisite /usr/bin/chromium chromium
# the store's contract runs against PostgreSQL too, and the fleet tests share one (test/helpers/postgres.ts starts a
# private cluster from Debian's binaries on a free port; nothing listens beyond loopback)
test_prerequisite /usr/lib/postgresql postgresql

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

# The suites whose answers depend on the sandbox runtime: the first pass runs them under the default (gVisor
# where the engine has it), the second under runc, so both boundaries are held to the same tests.
RUNTIME_SUITES=(
  test/integration/isolation.test.ts
  test/integration/hostile-code.test.ts
  test/integration/crash-recovery.test.ts
  test/integration/engine-restart.test.ts
  test/integration/storage-faults.test.ts
)

# The suites that reach the store through a whole server: the first pass runs them on SQLite (the default), the
# second on PostgreSQL (test/helpers/server.ts gives each data dir a database of a private cluster).
STORE_SUITES=(
  test/http/arm-sdk.test.ts
  test/http/arm-validation.test.ts
  test/http/served-urls.test.ts
  test/http/empty-body.test.ts
  test/http/session-machinery.test.ts
  test/http/session-jobs.test.ts
  test/http/session-limit-race.test.ts
  test/http/session-usage.test.ts
)

TAP=$(mktemp "${TMPDIR:-/tmp}/sessionpool-test.XXXXXX")
TAP2=$(mktemp "${TMPDIR:-/tmp}/sessionpool-test.XXXXXX")
TAP3=$(mktemp "${TMPDIR:-/tmp}/sessionpool-test.XXXXXX")
# The fleet tests start a second engine and stop it again; should the run be cut short, stop it here, unless it ran
# before the run (then it is someone else's).
ENGINE2_BEFORE=no
bash scripts/second-engine.sh status >/dev/null 2>&1 && ENGINE2_BEFORE=yes
cleanup() {
  rm -f "$TAP" "$TAP2" "$TAP3"
  if [ "$ENGINE2_BEFORE" = no ] && bash scripts/second-engine.sh status >/dev/null 2>&1; then
    bash scripts/second-engine.sh stop >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
run_tests() {
  local tap=$1
  shift
  node --test --test-concurrency=1 --test-timeout=600000 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$tap" \
    "$@"
}

gvisor=0
if docker info --format '{{range $n, $_ := .Runtimes}}{{$n}} {{end}}' 2>/dev/null | grep -qw runsc; then gvisor=1; fi
say "running ${#files[@]} test files (sandboxes under $([ "$gvisor" = 1 ] && echo "gVisor" || echo "runc"))"
run_tests "$TAP" "${files[@]}"
test_rc=$?
[ "$test_rc" = 0 ] || status=1

# Runs again, with SETTING (VAR=value) in the environment, those of SUITES that are among this run's files.
run_again() { # TAP SETTING WHAT SUITE...
  local tap=$1 setting=$2 what=$3 rc f g
  shift 3
  local again=()
  for f in "$@"; do
    for g in "${files[@]}"; do [ "$f" = "$g" ] && again+=("$f"); done
  done
  [ "${#again[@]}" -gt 0 ] || return 0
  say "again $what: ${again[*]}"
  (
    export "${setting?}"
    run_tests "$tap" "${again[@]}"
  )
  rc=$?
  [ "$rc" = 0 ] || { status=1; test_rc=$rc; }
}

if [ "$gvisor" = 1 ]; then
  run_again "$TAP2" SESSIONPOOL_TEST_RUNTIME=runc "under runc" "${RUNTIME_SUITES[@]}"
else
  say "gVisor is not registered with the engine: the runtime suites ran under runc only"
fi
run_again "$TAP3" SESSIONPOOL_TEST_STORE=postgres "on PostgreSQL" "${STORE_SUITES[@]}"

# The skipped tests whose reason does not start with "lacks: " (the capability this machine lacks, as the test
# found by probing it), one "  suite > test: reason" line each, from TAP files.
unexplained_skips() {
  awk '
    function unescape(s) {
      gsub(/\\#/, "#", s)
      return s
    }
    {
      match($0, /^ */)
      indent = RLENGTH
      line = substr($0, indent + 1)
      if (line ~ /^# Subtest: /) {
        parent[indent] = substr(line, 12)
        next
      }
      if (line !~ /^ok [0-9]+ - /) next
      sub(/^ok [0-9]+ - /, "", line)
      at = index(line, " # SKIP")
      if (at == 0) next
      reason = substr(line, at + 7)
      sub(/^ /, "", reason)
      if (reason ~ /^lacks: ./) next
      path = ""
      for (k = 0; k < indent; k += 4) if (k in parent) path = path unescape(parent[k]) " > "
      print "  " path unescape(substr(line, 1, at - 1)) ": " (reason == "" ? "(no reason given)" : unescape(reason))
    }' "$@"
}
skips=$(unexplained_skips "$TAP" "$TAP2" "$TAP3")
if [ -n "$skips" ]; then
  if [ "${CI:-}" = true ]; then
    say "FAILED: under CI=true a test may skip only when its reason starts with \"lacks: \" (what this machine lacks):"
    status=1
  else
    say "skipped without a \"lacks: \" reason (CI=true fails on these):"
  fi
  printf '%s\n' "$skips"
fi

count_in() { awk -v k="# $1" '$1 " " $2 == k { n = $3 } END { print n + 0 }' "$2"; }
count() { echo $(($(count_in "$1" "$TAP") + $(count_in "$1" "$TAP2") + $(count_in "$1" "$TAP3"))); }
pass=$(count pass)
fail=$(($(count fail) + $(count cancelled)))
skipped=$(($(count skipped) + $(count todo)))
if [ "$test_rc" != 0 ] && [ "$fail" = 0 ]; then fail=1; fi
[ "$status" = 0 ] || say "FAILED (lint or tests, see above)"
echo "tests: $pass passed, $fail failed, $skipped skipped"
exit "$status"
