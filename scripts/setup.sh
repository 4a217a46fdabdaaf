#!/usr/bin/env bash
# Installs what sessionpool needs on this machine, then optionally starts the server.
#
#   bash scripts/setup.sh                 install only (idempotent; quick when everything is in place)
#   bash scripts/setup.sh --start [ARGS]  install, then exec `bin/sessionpool serve ARGS`
#
# Steps (each prints one "[setup] ..." line):
#   1. node/npm: when `npm` is missing, installs Debian's nodejs and npm (root + apt). The project's
#      own Node 24 comes from the npm package "node" (a devDependency), at node_modules/.bin/node.
#   2. npm dependencies: `npm install` (pinned by package-lock.json) when node_modules is missing or
#      package-lock.json changed since the last install (stamp: node_modules/.sessionpool-install-stamp).
#   2b. web console: `npm run build:console` into console/dist when it is missing or older than console/.
#   3. docker engine: scripts/ensure-docker.sh (installs docker.io and starts dockerd if needed), then
#      scripts/ensure-gvisor.sh (installs Debian's runsc and registers it with the engine: sandboxes run under
#      gVisor by default).
#   4. python image: scripts/build-images.sh (builds sessionpool/python:<hash> if it does not exist).
# Exports SESSIONPOOL_PYTHON_IMAGE=<that ref> for the server it starts.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH="$ROOT/node_modules/.bin:$PATH:/usr/local/sbin:/usr/sbin:/sbin"

START=0
if [ "${1:-}" = "--start" ]; then
  START=1
  shift
fi

say() { printf '[setup] %s\n' "$*"; }
die() {
  printf '[setup] error: %s\n' "$*" >&2
  exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }
is_root() { [ "$(id -u)" = 0 ]; }
T0=$SECONDS

# --- 1. node and npm -----------------------------------------------------------------------------
if ! have npm; then
  is_root || die "npm is missing and only root can install it (Debian: apt-get install nodejs npm)"
  have apt-get || die "npm is missing and there is no apt-get: install Node.js and npm, then re-run"
  say "node/npm: installing Debian's nodejs and npm (apt)"
  export DEBIAN_FRONTEND=noninteractive
  log=$(mktemp)
  if ! apt-get install -y --no-install-recommends nodejs npm >"$log" 2>&1; then
    say "node/npm: apt-get update"
    apt-get update -qq >"$log" 2>&1 || {
      cat "$log" >&2
      die "apt-get update failed"
    }
    apt-get install -y --no-install-recommends nodejs npm >"$log" 2>&1 || {
      cat "$log" >&2
      die "apt-get install nodejs npm failed"
    }
  fi
  rm -f "$log"
  have npm || die "npm still missing after installing it"
fi

# --- 2. npm dependencies -------------------------------------------------------------------------
STAMP="node_modules/.sessionpool-install-stamp"
if [ -f package-lock.json ]; then
  WANT="package-lock.json $(sha256sum <package-lock.json | cut -c1-64)"
else
  WANT="package.json $(sha256sum <package.json | cut -c1-64)"
fi
node24_ok() {
  local v
  v=$("$ROOT/node_modules/.bin/node" --version 2>/dev/null) || return 1
  v=${v#v}
  [ "${v%%.*}" -ge 24 ] 2>/dev/null
}
need_install=1
if [ -d node_modules ] && node24_ok; then
  if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    need_install=0
  elif [ -f package-lock.json ] && [ -f node_modules/.package-lock.json ] &&
    ! [ package-lock.json -nt node_modules/.package-lock.json ]; then
    # installed by hand (npm install) since the lock last changed: npm's own record of the tree
    # (node_modules/.package-lock.json, written at the end of every install) is not older than it
    need_install=0
    printf '%s\n' "$WANT" >"$STAMP"
  fi
fi
if [ "$need_install" = 1 ]; then
  log=$(mktemp)
  # `npm install`, not `npm ci`: it installs what package-lock.json pins all the same, and a lock written on a
  # machine whose registry lacks other platforms' optional packages (Biome's) is one `npm ci` always refuses.
  say "npm dependencies: npm install"
  npm install --no-audit --no-fund >"$log" 2>&1 || {
    tail -n 40 "$log" >&2
    rm -f "$log"
    die "npm install failed"
  }
  if [ -f package-lock.json ]; then WANT="package-lock.json $(sha256sum <package-lock.json | cut -c1-64)"; fi
  rm -f "$log"
  node24_ok || die "node_modules/.bin/node is not Node >= 24 after installing (the 'node' devDependency)"
  printf '%s\n' "$WANT" >"$STAMP"
fi
say "npm dependencies: ok (node $(node --version))"

# --- 2b. web console -----------------------------------------------------------------------------
# console/dist is generated (never committed): built when missing or older than its sources or the lock.
if [ ! -f console/dist/index.html ] ||
  [ -n "$(find console/src console/index.html console/build.ts package-lock.json -newer console/dist/index.html -print -quit 2>/dev/null)" ]; then
  log=$(mktemp)
  npm run --silent build:console >"$log" 2>&1 || {
    tail -n 40 "$log" >&2
    rm -f "$log"
    die "building the web console failed (npm run build:console)"
  }
  rm -f "$log"
  say "console: built into console/dist (served at / by the server)"
else
  say "console: up to date (console/dist)"
fi

# --- 3. docker engine ----------------------------------------------------------------------------
bash "$ROOT/scripts/ensure-docker.sh" || die "no Docker engine (see above)"
say "docker engine: ok ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"

# --- 3b. gVisor ----------------------------------------------------------------------------------
bash "$ROOT/scripts/ensure-gvisor.sh" || die "registering gVisor with the engine failed (see above)"
if docker info --format '{{range $name, $_ := .Runtimes}}{{$name}} {{end}}' 2>/dev/null | grep -qw runsc; then
  say "sandbox runtime: gVisor (runsc)"
else
  say "sandbox runtime: runc (gVisor is not registered with the engine; see the warning above)"
fi

# --- 4. sandbox images ---------------------------------------------------------------------------
REF=$(bash "$ROOT/scripts/build-images.sh" | tail -n 1) || die "building the python sandbox image failed (see above)"
[ -n "$REF" ] || die "build-images.sh printed no image ref"
export SESSIONPOOL_PYTHON_IMAGE="$REF"
say "python image: $REF"
say "ready in $((SECONDS - T0))s"

if [ "$START" = 1 ]; then
  [ -f "$ROOT/bin/sessionpool" ] || die "bin/sessionpool is missing"
  exec bash "$ROOT/bin/sessionpool" serve "$@"
fi
