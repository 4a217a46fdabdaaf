#!/usr/bin/env bash
# Installs gVisor (Debian's runsc) and registers it with the local Docker engine, so that sandboxes run under a
# user-space kernel (`sessionpool serve --sandbox-runtime auto`, the default, picks it up). Idempotent; running
# containers are not disturbed (the engine reloads its runtimes on SIGHUP).
#
# Registers two engine runtimes in /etc/docker/daemon.json (other settings there are kept):
#   runsc      --network=none --host-uds=open --oci-seccomp   sandboxes without a network (EgressDisabled pools)
#   runsc-net  --network=host --host-uds=open --oci-seccomp   networked sandboxes (EgressEnabled pools, custom
#                                        containers): gVisor passes network calls to the container's own namespace
# --oci-seccomp applies the seccomp profile the server gives each sandbox (src/runtime/gvisor-seccomp.ts) to the
# session's processes inside gVisor.
# --host-uds=open lets a sandbox connect to the server's agent socket (a host-created Unix socket in a read-only
# mount); gVisor's own network stack cannot start in the engine's namespaces on this kind of host, hence
# --network=none / host. The default platform (ptrace) is used: it needs no /dev/kvm.
#
# Exit status 0 when the engine lists runsc (or when gVisor cannot be set up here: a warning says why, and the
# server then runs sandboxes under runc with a warning of its own); 1 on a failure worth stopping for.
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

DAEMON_JSON=${SESSIONPOOL_DOCKER_DAEMON_JSON:-/etc/docker/daemon.json}
DOCKERD_PID=/run/sessionpool-dockerd.pid

log() { printf '[ensure-gvisor] %s\n' "$*" >&2; }
warn() {
  printf '[ensure-gvisor] warning: %s; sandboxes will run under runc\n' "$*" >&2
  exit 0
}
die() {
  printf '[ensure-gvisor] error: %s\n' "$*" >&2
  exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

engine_has_runsc() {
  docker info --format '{{range $name, $_ := .Runtimes}}{{$name}} {{end}}' 2>/dev/null | tr ' ' '\n' |
    grep -qx runsc-net &&
    docker info --format '{{range $name, $_ := .Runtimes}}{{$name}} {{end}}' 2>/dev/null | tr ' ' '\n' | grep -qx runsc
}

case "${DOCKER_HOST:-}" in
  "" | unix:///var/run/docker.sock | unix:///run/docker.sock) ;;
  *) warn "DOCKER_HOST=$DOCKER_HOST is not this machine's engine: register gVisor there yourself (see this script)" ;;
esac
[ "$(id -u)" = 0 ] || warn "only root can install and register gVisor"

if ! have runsc; then
  have apt-get || warn "no apt-get here to install runsc"
  export DEBIAN_FRONTEND=noninteractive
  log "installing gVisor from Debian (runsc)"
  out=$(mktemp)
  if ! apt-get install -y --no-install-recommends runsc >"$out" 2>&1; then
    apt-get update -qq >"$out" 2>&1 || {
      cat "$out" >&2
      rm -f "$out"
      die "apt-get update failed"
    }
    apt-get install -y --no-install-recommends runsc >"$out" 2>&1 || {
      cat "$out" >&2
      rm -f "$out"
      warn "apt-get install runsc failed (see above)"
    }
  fi
  rm -f "$out"
fi
RUNSC=$(command -v runsc)

# Merge our two runtimes into daemon.json, keeping whatever else is there; print "changed" when it changed.
NODE=$(command -v node || true)
[ -n "$NODE" ] || die "node is needed to edit $DAEMON_JSON (scripts/setup.sh installs it first)"
mkdir -p "$(dirname "$DAEMON_JSON")"
changed=$(
  RUNSC="$RUNSC" DAEMON_JSON="$DAEMON_JSON" "$NODE" -e '
    const fs = require("node:fs");
    const file = process.env.DAEMON_JSON;
    let config = {};
    if (fs.existsSync(file) && fs.readFileSync(file, "utf8").trim() !== "") config = JSON.parse(fs.readFileSync(file, "utf8"));
    const before = JSON.stringify(config);
    const path = process.env.RUNSC;
    config.runtimes = {
      ...config.runtimes,
      runsc: { path, runtimeArgs: ["--network=none", "--host-uds=open", "--oci-seccomp"] },
      "runsc-net": { path, runtimeArgs: ["--network=host", "--host-uds=open", "--oci-seccomp"] },
    };
    if (JSON.stringify(config) !== before) {
      fs.writeFileSync(file + ".tmp", JSON.stringify(config, null, 2) + "\n");
      fs.renameSync(file + ".tmp", file);
      process.stdout.write("changed");
    }
  '
) || die "could not update $DAEMON_JSON"

if [ "$changed" = changed ] || ! engine_has_runsc; then
  log "registering runsc and runsc-net with the engine ($DAEMON_JSON); running containers are kept"
  pid=""
  [ -f "$DOCKERD_PID" ] && pid=$(cat "$DOCKERD_PID" 2>/dev/null || true)
  # the engine's own pidfile next; pidof last, skipping the fleet tests' second engine (scripts/second-engine.sh)
  if ! { [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }; then
    pid=$(cat /var/run/docker.pid 2>/dev/null || true)
    if ! { [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }; then
      pid=""
      for p in $(pidof dockerd 2>/dev/null || true); do
        tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q sessionpool-engine2 && continue
        pid=$p
        break
      done
    fi
  fi
  [ -n "$pid" ] || warn "no dockerd process found to reload"
  kill -HUP "$pid"
  for _ in $(seq 1 50); do
    engine_has_runsc && break
    sleep 0.2
  done
  engine_has_runsc || die "the engine did not list runsc after reloading $DAEMON_JSON (see the engine's log)"
fi
log "gVisor: ok ($(runsc --version 2>/dev/null | head -n 1))"
