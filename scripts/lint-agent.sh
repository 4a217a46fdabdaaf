#!/usr/bin/env bash
# Lints the in-sandbox agent's Python (sandbox-agent/*.py) with Debian's flake8, configured by
# sandbox-agent/.flake8; part of `npm run lint` (Biome lints its JavaScript with the rest of the tree).
# Installs flake8 with apt when it is missing (root + apt-get, `apt-get update` only if the install fails
# without it), as scripts/setup.sh does for nodejs. Exit status: flake8's, or 1 when flake8 is missing and
# cannot be installed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

say() { printf '[lint-agent] %s\n' "$*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }

if ! have flake8; then
  if [ "$(id -u)" != 0 ] || ! have apt-get; then
    say "flake8 is missing and only root with apt-get can install it here (Debian: apt-get install flake8)"
    exit 1
  fi
  say "installing flake8 (apt)"
  export DEBIAN_FRONTEND=noninteractive
  log=$(mktemp)
  if ! apt-get install -y --no-install-recommends flake8 >"$log" 2>&1; then
    apt-get update -qq >"$log" 2>&1 && apt-get install -y --no-install-recommends flake8 >"$log" 2>&1 || {
      cat "$log" >&2
      rm -f "$log"
      say "apt-get install flake8 failed"
      exit 1
    }
  fi
  rm -f "$log"
fi

flake8 --config "$ROOT/sandbox-agent/.flake8" "$ROOT/sandbox-agent"
