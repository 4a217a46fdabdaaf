#!/usr/bin/env bash
# Makes a Docker engine answer, installing and starting one if needed. Idempotent; silent when the
# engine already answers (honours DOCKER_HOST).
#
# When `docker info` fails (root on Debian/Ubuntu):
#   - installs Debian's docker.io (engine, CLI, containerd, runc, tini as docker-init) if dockerd or the
#     docker CLI is missing, running `apt-get update` only when the install fails without it;
#   - starts the engine: `systemctl start docker` when systemd is PID 1, otherwise `dockerd` in the
#     background (setsid nohup, log /var/log/sessionpool-dockerd.log, pidfile
#     /run/sessionpool-dockerd.pid);
#   - waits up to SESSIONPOOL_DOCKER_WAIT seconds (default 60) for `docker info` to answer.
# Also makes sure docker-init (tini, used by `docker run --init`) is present.
# Exit status: 0 when the engine answers, 1 otherwise (with the reason on stderr).
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

DOCKERD_LOG=/var/log/sessionpool-dockerd.log
DOCKERD_PID=/run/sessionpool-dockerd.pid
WAIT=${SESSIONPOOL_DOCKER_WAIT:-60}

log() { printf '[ensure-docker] %s\n' "$*" >&2; }
die() {
  printf '[ensure-docker] error: %s\n' "$*" >&2
  exit 1
}

have() { command -v "$1" >/dev/null 2>&1; }
is_root() { [ "$(id -u)" = 0 ]; }

docker_answers() {
  have docker || return 1
  if have timeout; then
    timeout 30 docker info >/dev/null 2>&1
  else
    docker info >/dev/null 2>&1
  fi
}

# Only a local engine on the default socket is ours to install and start.
local_engine() {
  case "${DOCKER_HOST:-}" in
    "" | unix:///var/run/docker.sock | unix:///run/docker.sock) return 0 ;;
    *) return 1 ;;
  esac
}

APT_UPDATED=0
apt_install() {
  is_root || die "need root to install $* (run as root, or install them yourself)"
  have apt-get || die "no apt-get on this machine: install $* yourself"
  export DEBIAN_FRONTEND=noninteractive
  local out
  out=$(mktemp)
  if [ "$APT_UPDATED" = 0 ]; then
    if apt-get install -y --no-install-recommends "$@" >"$out" 2>&1; then
      rm -f "$out"
      return 0
    fi
    log "apt-get update"
    apt-get update -qq >"$out" 2>&1 || {
      cat "$out" >&2
      rm -f "$out"
      die "apt-get update failed"
    }
    APT_UPDATED=1
  fi
  apt-get install -y --no-install-recommends "$@" >"$out" 2>&1 || {
    cat "$out" >&2
    rm -f "$out"
    die "apt-get install $* failed"
  }
  rm -f "$out"
}

# docker-init is Debian's tini (docker.io Depends on tini; /usr/bin/docker-init -> tini-static).
docker_init_present() {
  local p
  for p in "$(command -v docker-init 2>/dev/null || true)" /usr/libexec/docker/docker-init /usr/bin/docker-init; do
    [ -n "$p" ] && [ -x "$p" ] && [ -e "$(readlink -f "$p")" ] && return 0
  done
  return 1
}

ensure_docker_init() {
  local_engine || return 0 # a remote engine's host is not ours to look at
  docker_init_present && return 0
  if is_root && have apt-get; then
    log "docker-init (tini) is missing: installing tini"
    apt_install tini
    docker_init_present || log "warning: tini installed but docker-init still not found; 'docker run --init' may fail"
  else
    log "warning: docker-init (tini) is missing; install the tini package for 'docker run --init'"
  fi
}

systemd_is_init() { [ -d /run/systemd/system ] && [ "$(ps -p 1 -o comm= 2>/dev/null || true)" = systemd ]; }

dockerd_running() {
  # a dockerd that we started (pidfile), or the engine's own pidfile
  local f pid
  for f in "$DOCKERD_PID" /var/run/docker.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null || true)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(ps -p "$pid" -o comm= 2>/dev/null || true)" = dockerd ] && return 0
  done
  return 1
}

start_engine() {
  if systemd_is_init && have systemctl; then
    log "starting the engine: systemctl start docker"
    systemctl start docker || die "systemctl start docker failed (see: journalctl -u docker)"
    return 0
  fi
  if dockerd_running; then
    log "dockerd is already running; waiting for it to answer"
    return 0
  fi
  # a stale pidfile makes dockerd refuse to start
  [ -f /var/run/docker.pid ] && rm -f /var/run/docker.pid
  if [ ! -d /sys/fs/cgroup ] || [ -z "$(ls -A /sys/fs/cgroup 2>/dev/null)" ]; then
    if have cgroupfs-mount; then
      log "mounting cgroups (cgroupfs-mount)"
      cgroupfs-mount || true
    fi
  fi
  log "starting the engine: dockerd in the background (log: $DOCKERD_LOG)"
  mkdir -p "$(dirname "$DOCKERD_LOG")"
  if have setsid; then
    setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
  else
    nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
  fi
  echo $! >"$DOCKERD_PID"
}

if docker_answers; then
  ensure_docker_init
  exit 0
fi

if ! local_engine; then
  die "DOCKER_HOST=$DOCKER_HOST does not answer 'docker info'; start that engine, or unset DOCKER_HOST to use a local one"
fi

if ! have dockerd || ! have docker; then
  is_root || die "no Docker engine here and not root: install Docker (Debian: apt-get install docker.io) and re-run"
  have apt-get || die "no Docker engine here and no apt-get: install Docker yourself and re-run"
  log "installing Docker from Debian (docker.io)"
  apt_install docker.io tini ca-certificates iptables apparmor cgroupfs-mount xz-utils
  have dockerd || die "docker.io installed but dockerd is not on PATH"
  docker_answers && {
    ensure_docker_init
    exit 0
  }
fi
ensure_docker_init

is_root || die "the Docker engine does not answer and only root can start it here (or your user lacks access to /var/run/docker.sock: add it to the docker group)"
start_engine

deadline=$((SECONDS + WAIT))
while ! docker_answers; do
  if [ -f "$DOCKERD_PID" ] && ! systemd_is_init; then
    pid=$(cat "$DOCKERD_PID" 2>/dev/null || true)
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null && ! dockerd_running; then
      tail -n 20 "$DOCKERD_LOG" >&2 2>/dev/null || true
      die "dockerd exited while starting (full log: $DOCKERD_LOG)"
    fi
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    [ -f "$DOCKERD_LOG" ] && tail -n 20 "$DOCKERD_LOG" >&2
    die "the Docker engine did not answer within ${WAIT}s"
  fi
  sleep 0.5
done
log "docker engine is up ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
