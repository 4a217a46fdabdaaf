#!/usr/bin/env bash
# Builds the PythonLTS sandbox image without any container registry:
#   1. sessionpool/python-base:<BASE_HASH>  a Debian bookworm rootfs made by mmdebstrap from Debian's
#      packages (the mirror this host's apt uses) and `docker import`ed;
#   2. sessionpool/python:<HASH>            the base plus the in-sandbox agent (sandbox-agent/), made with
#      `docker build` (classic builder, --pull=false, --network=none) FROM the local base image;
#   3. sessionpool/python:latest            re-pointed at (2) on every run.
# A tag that already exists is not rebuilt. The final image ref is the last line of stdout; all
# progress goes to stderr.
#
# Usage: scripts/build-images.sh [--print-ref | --print-base-ref | --explain | --force]
#   --print-ref       print the final image ref (sessionpool/python:<HASH>) without building anything
#   --print-base-ref  print the base image ref (sessionpool/python-base:<BASE_HASH>) without building
#   --explain         print both hash manifests (below) and the refs, without building
#   --force           rebuild both images even if their tags exist
# Environment: SESSIONPOOL_DEBIAN_MIRROR / SESSIONPOOL_DEBIAN_SECURITY_MIRROR override the Debian
# mirror URIs found in this host's apt sources (SECURITY_MIRROR=none leaves bookworm-security out).
#
# The final image: USER 1000:1000 (user "sandbox", home /tmp), WORKDIR /mnt/data, CMD python3 -u
# /opt/sessionpool/agent/agent.py (agent modules precompiled, checked-hash .pyc), ENV MPLBACKEND=Agg
# PYTHONDONTWRITEBYTECODE=1 HOME=/tmp MPLCONFIGDIR=/tmp/matplotlib LANG=C.UTF-8 OPENBLAS_NUM_THREADS=1
# OMP_NUM_THREADS=1 (override per sandbox to its cpu limit). Meant to run with a read-only root and
# tmpfs /tmp and /mnt/data; a tmpfs /mnt/data needs uid=1000,gid=1000 (or mode=1777) in its options,
# since Docker mounts it root-owned 0755 otherwise. /run/sessionpool exists, owned by 1000.
#
# ---------------------------------------------------------------------------------------------
# HASHING RULE (reproduce it exactly, e.g. in TypeScript; all paths relative to the repo root)
#   sha256hex(x) = lowercase hex SHA-256 of the bytes x. "\n" is a single LF. No trailing spaces.
#   section(NAME) = the lines of scripts/build-images.sh from the line that is exactly
#       "# >>> NAME" through the next line that is exactly "# <<< NAME", both included, each
#       followed by "\n" (i.e. lines[start..end].join("\n") + "\n").
#   BASE manifest (text):
#       "sessionpool-python-base v1\n"
#       "file image/packages.txt " + sha256hex(sandbox-agent/image/packages.txt) + "\n"
#       "section BASE " + sha256hex(section("BASE RECIPE")) + "\n"
#   BASE_HASH = first 12 hex chars of sha256hex(BASE manifest)
#   Agent files = every regular file under sandbox-agent/ (recursively, symlinks not followed) whose
#       path relative to sandbox-agent/ has no component that starts with "." or equals
#       "__pycache__", "tests" or "test", and whose file name does not match "test_*.py",
#       "*_test.py", "conftest.py", "*.pyc" or "*.pyo"; sorted by byte-wise comparison of that
#       relative path ("/"-separated, e.g. "agent.py", "image/packages.txt").
#   FINAL manifest (text):
#       "sessionpool-python v1\n"
#       "base " + BASE_HASH + "\n"
#       "section FINAL " + sha256hex(section("FINAL RECIPE")) + "\n"
#       then for each agent file, in order: "file " + relpath + " " + sha256hex(content) + "\n"
#   HASH = first 12 hex chars of sha256hex(FINAL manifest)
#   Refs: sessionpool/python-base:<BASE_HASH>, sessionpool/python:<HASH>; the final image carries the
#   labels io.sessionpool.recipe-hash=<HASH> and io.sessionpool.image-kind=python.
# `--explain` prints both manifests so an implementation can be checked against this script.
# ---------------------------------------------------------------------------------------------
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$ROOT/scripts/build-images.sh"
AGENT_DIR="$ROOT/sandbox-agent"
PACKAGES_TXT="$AGENT_DIR/image/packages.txt"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

log() { printf '[build-images] %s\n' "$*" >&2; }
die() {
  printf '[build-images] error: %s\n' "$*" >&2
  exit 1
}

sha256() { sha256sum | cut -c1-64; }

section() {
  awk -v b="# >>> $1" -v e="# <<< $1" '$0 == b { on = 1 } on { print } on && $0 == e { exit }' "$SELF"
}

base_manifest() {
  [ -f "$PACKAGES_TXT" ] || die "missing $PACKAGES_TXT"
  printf 'sessionpool-python-base v1\n'
  printf 'file image/packages.txt %s\n' "$(sha256 <"$PACKAGES_TXT")"
  printf 'section BASE %s\n' "$(section 'BASE RECIPE' | sha256)"
}

# Relative paths (from sandbox-agent/) of the files that make up the agent, sorted byte-wise.
agent_files() {
  (cd "$AGENT_DIR" && find . -type f -print) | sed 's|^\./||' | awk -F/ '
    {
      for (i = 1; i < NF; i++) if ($i ~ /^\./ || $i == "__pycache__" || $i == "tests" || $i == "test") next
      n = $NF
      if (n ~ /^\./ || n ~ /^test_.*\.py$/ || n ~ /_test\.py$/ || n == "conftest.py" || n ~ /\.py[co]$/) next
      print
    }' | sort
}

final_manifest() {
  local f
  printf 'sessionpool-python v1\n'
  printf 'base %s\n' "$BASE_HASH"
  printf 'section FINAL %s\n' "$(section 'FINAL RECIPE' | sha256)"
  while IFS= read -r f; do
    printf 'file %s %s\n' "$f" "$(sha256 <"$AGENT_DIR/$f")"
  done < <(agent_files)
}

compute_refs() {
  BASE_HASH=$(base_manifest | sha256 | cut -c1-12)
  HASH=$(final_manifest | sha256 | cut -c1-12)
  BASE_REF="sessionpool/python-base:$BASE_HASH"
  REF="sessionpool/python:$HASH"
}
compute_refs
LATEST_REF="sessionpool/python:latest"

FORCE=0
case "${1:-}" in
  --print-ref)
    printf '%s\n' "$REF"
    exit 0
    ;;
  --print-base-ref)
    printf '%s\n' "$BASE_REF"
    exit 0
    ;;
  --explain)
    printf '# BASE manifest\n'
    base_manifest
    printf '# => %s\n# FINAL manifest\n' "$BASE_REF"
    final_manifest
    printf '# => %s\n' "$REF"
    exit 0
    ;;
  --force) FORCE=1 ;;
  "") ;;
  -h | --help)
    sed -n '2,17p' "$SELF" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *) die "unknown argument: $1 (try --help)" ;;
esac

# ---------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  bash "$ROOT/scripts/ensure-docker.sh" || die "no Docker engine answers (see above)"
fi

# One build at a time on this host (setup, tests and the server may all ask for the image).
LOCK_FILE="${TMPDIR:-/tmp}/sessionpool-build-images.lock"
exec 9>"$LOCK_FILE"
if command -v flock >/dev/null 2>&1; then
  flock -w 1800 9 || die "timed out waiting for another build to finish ($LOCK_FILE)"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sessionpool-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# Hash and build from a snapshot of sandbox-agent/, so that files edited while this runs cannot
# make an image differ from what its tag says.
SNAP="$WORK/sandbox-agent"
while IFS= read -r f; do
  mkdir -p "$SNAP/$(dirname "$f")"
  cp -p "$AGENT_DIR/$f" "$SNAP/$f"
done < <(agent_files)
AGENT_DIR="$SNAP"
PACKAGES_TXT="$SNAP/image/packages.txt"
compute_refs

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

is_root() { [ "$(id -u)" = 0 ]; }

APT_UPDATED=0
apt_install() {
  is_root || die "need root to apt-get install $* (install them yourself, then re-run)"
  command -v apt-get >/dev/null 2>&1 || die "no apt-get here: install $* yourself, then re-run"
  export DEBIAN_FRONTEND=noninteractive
  if [ "$APT_UPDATED" = 0 ]; then
    # try the package lists we have first; refresh them only if that fails
    apt-get install -y --no-install-recommends "$@" >"$WORK/apt.log" 2>&1 && return 0
    log "apt-get update"
    apt-get update -qq >"$WORK/apt.log" 2>&1 || {
      cat "$WORK/apt.log" >&2
      die "apt-get update failed"
    }
    APT_UPDATED=1
  fi
  apt-get install -y --no-install-recommends "$@" >"$WORK/apt.log" 2>&1 || {
    cat "$WORK/apt.log" >&2
    die "apt-get install $* failed"
  }
}

# The Debian mirror(s) this host's apt uses, as "<uri> <suite>" lines (deb entries only).
host_apt_entries() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk '$1 == "deb" {
      i = 2
      if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
      if (i + 1 <= NF) print $i, $(i + 1)
    }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk 'BEGIN { RS = ""; FS = "\n" }
    {
      types = ""; uris = ""; suites = ""; enabled = "yes"
      for (i = 1; i <= NF; i++) {
        line = $i
        if (line ~ /^[ \t]*#/) continue
        k = line; sub(/:.*/, "", k); v = line; sub(/^[^:]*:[ \t]*/, "", v)
        k = tolower(k)
        if (k == "types") types = v; else if (k == "uris") uris = v
        else if (k == "suites") suites = v; else if (k == "enabled") enabled = tolower(v)
      }
      if (enabled == "no" || (" " types " ") !~ / deb /) next
      nu = split(uris, U, /[ \t]+/); ns = split(suites, S, /[ \t]+/)
      for (a = 1; a <= nu; a++) for (b = 1; b <= ns; b++) if (U[a] != "" && S[b] != "") print U[a], S[b]
    }' "$f"
  done
}

debian_mirrors() {
  local entries main sec
  entries=$(host_apt_entries | sed 's|/* | |' || true)
  main=${SESSIONPOOL_DEBIAN_MIRROR:-$(printf '%s\n' "$entries" | awk '$1 ~ /debian/ && $1 !~ /security/ && $2 !~ /-/ { print $1; exit }')}
  sec=${SESSIONPOOL_DEBIAN_SECURITY_MIRROR:-$(printf '%s\n' "$entries" | awk '$1 ~ /debian-security/ || ($1 ~ /debian/ && $2 ~ /-security$/) { print $1; exit }')}
  [ -n "$main" ] || main="http://deb.debian.org/debian"
  [ -n "$sec" ] || sec="${main%/debian}/debian-security"
  printf '%s %s\n' "${main%/}" "${sec%/}"
}

# The host's apt settings that matter for reaching its mirror, as mmdebstrap --aptopt values.
host_aptopts() {
  apt-config dump 2>/dev/null | grep -E '^Acquire::(Check-Valid-Until|Check-Date|https?::Proxy|Retries) ' || true
}

# mmdebstrap's log, each line prefixed with the seconds since the build started
BASE_LOG="${TMPDIR:-/tmp}/sessionpool-build-base.log"
stamp_lines() {
  local line
  while IFS= read -r line; do printf '%4ds %s\n' "$((SECONDS - BASE_T0))" "$line"; done
}

build_base() {
  local main sec keyring opt t0 id
  local -a aptopts=()
  t0=$SECONDS
  BASE_T0=$SECONDS
  if ! command -v mmdebstrap >/dev/null 2>&1; then
    log "installing mmdebstrap (apt)"
    apt_install mmdebstrap debian-archive-keyring
  fi
  [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || apt_install debian-archive-keyring
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  read -r main sec <<<"$(debian_mirrors)"
  {
    printf 'deb [signed-by=%s] %s bookworm main\n' "$keyring" "$main"
    printf 'deb [signed-by=%s] %s bookworm-updates main\n' "$keyring" "$main"
    [ "$sec" = none ] ||
      printf 'deb [signed-by=%s] %s bookworm-security main\n' "$keyring" "$sec"
  } >"$WORK/sources.list"
  while IFS= read -r opt; do [ -n "$opt" ] && aptopts+=(--aptopt="$opt"); done < <(host_aptopts)
  local mode=root
  is_root || mode=unshare
  log "building $BASE_REF from Debian bookworm ($main) with mmdebstrap --mode=$mode; takes a few minutes"

  # The recipe proper: everything between the markers is hashed into BASE_HASH.
# >>> BASE RECIPE
  local -a pkgs=()
  local p
  while read -r p _; do
    case "$p" in "" | "#"*) continue ;; esac
    pkgs+=("$p")
  done <"$PACKAGES_TXT"
  cat >"$WORK/customize.sh" <<'HOOK'
set -eu
r="$1"
# unprivileged sandbox user: uid/gid 1000, home /tmp (a tmpfs at run time)
grep -q '^sandbox:' "$r/etc/group" || echo 'sandbox:x:1000:' >>"$r/etc/group"
grep -q '^sandbox:' "$r/etc/passwd" || echo 'sandbox:x:1000:1000:sessionpool sandbox:/tmp:/bin/bash' >>"$r/etc/passwd"
if [ -f "$r/etc/shadow" ] && ! grep -q '^sandbox:' "$r/etc/shadow"; then echo 'sandbox:*:19000:0:99999:7:::' >>"$r/etc/shadow"; fi
mkdir -p "$r/mnt/data" "$r/run/sessionpool" "$r/opt/sessionpool/agent"
chown 1000:1000 "$r/mnt/data" "$r/run/sessionpool"
chmod 0755 "$r/mnt/data" "$r/run/sessionpool"
# the libraries must import (and matplotlib render) in the finished root
chroot "$r" env -i PATH=/usr/bin:/bin HOME=/tmp MPLBACKEND=Agg MPLCONFIGDIR=/tmp/mpl PYTHONDONTWRITEBYTECODE=1 python3 -c "
import numpy, pandas, PIL, IPython, sklearn.linear_model, sklearn.ensemble
import scipy.optimize, scipy.interpolate, scipy.signal, scipy.stats, scipy.sparse.linalg, scipy.integrate
import matplotlib.pyplot as plt
plt.plot([1, 2]); plt.savefig('/tmp/x.png'); plt.savefig('/tmp/x.pdf'); plt.savefig('/tmp/x.svg')
"
rm -rf "$r/tmp/mpl" "$r"/tmp/x.*
# keep the image small: package test suites, docs, dpkg/debconf backups, logs (mmdebstrap itself
# empties the apt lists and cache afterwards; its own files in /tmp must stay until it is done)
for d in "$r"/usr/lib/python3/dist-packages/*/; do
  find "$d" -depth -type d -name tests -exec rm -rf {} +
done
rm -rf "$r"/var/cache/debconf/*-old "$r"/var/lib/dpkg/*-old "$r"/var/log/apt "$r"/var/log/dpkg.log \
  "$r"/var/log/alternatives.log "$r"/usr/share/doc-base "$r"/usr/share/lintian "$r"/usr/share/bug
find "$r/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null || true
find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
HOOK
  # Dependencies nothing needs at run time, replaced by a local stub package: python3-scipy Depends on
  # python3-pythran, a compiler front end only building scipy needs, which drags in g++, boost and the
  # Python/BLAS headers (~600 MB); python3-fonttools Depends on unicode-data (37 MB of UCD text files
  # that no installed Python code reads).
  mkdir -p "$WORK/stub/DEBIAN"
  cat >"$WORK/stub/DEBIAN/control" <<'CONTROL'
Package: sessionpool-build-stubs
Version: 1
Architecture: all
Maintainer: sessionpool <sessionpool@localhost>
Provides: python3-pythran, unicode-data (= 15.0.0)
Conflicts: python3-pythran, unicode-data
Replaces: python3-pythran, unicode-data
Description: stands in for build-only dependencies in the sessionpool sandbox image
CONTROL
  dpkg-deb --build --root-owner-group "$WORK/stub" "$WORK/sessionpool-build-stubs_1_all.deb" >/dev/null
  id=$(
    mmdebstrap --mode="$mode" --variant=essential --format=tar \
      --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
      --hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount \
      --include="$WORK/sessionpool-build-stubs_1_all.deb" \
      --include="$(
        IFS=,
        echo "${pkgs[*]}"
      )" \
      --aptopt='APT::Install-Recommends "false"' \
      --aptopt='Acquire::Languages "none"' \
      "${aptopts[@]}" \
      --dpkgopt='force-unsafe-io' \
      --dpkgopt='path-exclude=/usr/share/man/*' \
      --dpkgopt='path-exclude=/usr/share/info/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' \
      --dpkgopt='path-include=/usr/share/locale/locale.alias' \
      --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      --customize-hook="sh $WORK/customize.sh \"\$1\"" \
      bookworm - "$WORK/sources.list" </dev/null 2> >(stamp_lines >"$BASE_LOG") |
      docker import \
        --change 'CMD ["python3"]' \
        --change 'ENV LANG=C.UTF-8' \
        --change "LABEL io.sessionpool.recipe-hash=$BASE_HASH" \
        --change 'LABEL io.sessionpool.image-kind=python-base' \
        - 2>"$WORK/import.err"
  ) || {
    sleep 1
    tail -n 60 "$BASE_LOG" >&2
    cat "$WORK/import.err" >&2
    [ -z "${id:-}" ] || docker rmi "$id" >/dev/null 2>&1 || true
    die "building $BASE_REF failed (mmdebstrap or docker import, see above)"
  }
# <<< BASE RECIPE
  docker tag "$id" "$BASE_REF"
  log "built $BASE_REF in $((SECONDS - t0))s (log: $BASE_LOG)"
}

build_final() {
  local t0 f ctx
  t0=$SECONDS
  ctx="$WORK/context"
  mkdir -p "$ctx/agent"
  log "building $REF FROM $BASE_REF (docker build, classic builder, no registry)"
  # Everything between the markers is hashed into HASH (which agent files are copied included).
# >>> FINAL RECIPE
  while IFS= read -r f; do
    case "$f" in
      image/*) continue ;;
      *.py | *.js | *.json) ;; # the agent, its Python modules, the Node.js kernel and its package.json
      *) continue ;;
    esac
    mkdir -p "$ctx/agent/$(dirname "$f")"
    cp "$AGENT_DIR/$f" "$ctx/agent/$f"
  done < <(agent_files)

  if [ ! -f "$ctx/agent/agent.py" ]; then
    log "warning: sandbox-agent/agent.py does not exist yet; the image gets a placeholder agent"
    cat >"$ctx/agent/agent.py" <<'PY'
import sys

sys.stderr.write("sessionpool: placeholder agent: sandbox-agent/agent.py did not exist when this image was built\n")
sys.exit(3)
PY
  fi
  cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $BASE_REF
COPY agent/ /opt/sessionpool/agent/
RUN python3 -m compileall -q --invalidation-mode checked-hash /opt/sessionpool/agent \\
 && MPLCONFIGDIR=/opt/sessionpool/mplconfig python3 -c "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt; plt.figure(); plt.close('all')" \\
 && chmod -R a+rX,go-w /opt/sessionpool
ENV MPLBACKEND=Agg PYTHONDONTWRITEBYTECODE=1 HOME=/tmp MPLCONFIGDIR=/tmp/matplotlib LANG=C.UTF-8 \\
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
LABEL io.sessionpool.recipe-hash=$HASH io.sessionpool.image-kind=python io.sessionpool.base-hash=$BASE_HASH
USER 1000:1000
WORKDIR /mnt/data
CMD ["python3", "-u", "/opt/sessionpool/agent/agent.py"]
DOCKERFILE
  DOCKER_BUILDKIT=0 docker build --pull=false --network=none --rm --force-rm -q -t "$REF" "$ctx" \
    >"$WORK/build.log" 2>&1 || {
    cat "$WORK/build.log" >&2
    die "docker build of $REF failed"
  }
# <<< FINAL RECIPE
  log "built $REF in $((SECONDS - t0))s"
}

T_START=$SECONDS
BUILT=0
if [ "$FORCE" = 1 ] || ! image_exists "$BASE_REF"; then
  build_base
  BUILT=1
fi
if [ "$FORCE" = 1 ] || ! image_exists "$REF"; then
  build_final
  BUILT=1
fi
docker tag "$REF" "$LATEST_REF"
if [ "$BUILT" = 1 ]; then
  size=$(docker image inspect --format '{{.Size}}' "$REF" 2>/dev/null || echo 0)
  log "done in $((SECONDS - T_START))s: $REF ($((size / 1024 / 1024)) MiB), also tagged $LATEST_REF"
fi
printf '%s\n' "$REF"
