#!/usr/bin/env bash
# A second Docker engine on this host for the fleet tests (several `sessionpool serve` processes, each driving
# its own engine). It shares nothing with the machine's engine that the two could fight over:
#
#   socket     unix:///run/sessionpool-engine2/docker.sock
#   data root  /var/lib/sessionpool-engine2 (kept between runs, so images loaded once stay)
#   exec root  /run/sessionpool-engine2/exec; pidfile /run/sessionpool-engine2/docker.pid
#   config     /run/sessionpool-engine2/daemon.json, written from the `runtimes` of the first engine's
#              /etc/docker/daemon.json (so gVisor's runsc and runsc-net work here too); the second dockerd never
#              reads /etc/docker/daemon.json
#   log        /var/log/sessionpool-engine2.log
#
# Usage: scripts/second-engine.sh start [REF...] | stop | status | load-image REF...
#   start        starts the engine unless it already runs, waits (SESSIONPOOL_ENGINE2_WAIT s, default 60) until
#                it answers _ping; then loads the given image refs as load-image does. Prints the engine's
#                DOCKER_HOST as its last stdout line.
#   stop         removes the containers labelled io.sessionpool.instance, stops this dockerd (by its pidfile) and
#                waits for it to exit. The first engine is never touched.
#   status       exit 0 and "running ..." when the engine answers, exit 3 and "not running" otherwise.
#   load-image   copies each REF from the first engine (DOCKER_HOST, else the default socket) into this one
#                (docker save | docker load); nothing is done when this engine already has REF with the same
#                image id, only a tag when it has that id under another name.
#
# Networking: a default bridge of its own (sp-engine2, made here), never `--bridge none`: a dockerd started with
# `--bridge none` deletes the host's docker0, which is the first engine's default bridge. The fleet tests' pools run
# their sandboxes with --network none. iptables, IP masquerading and IP forwarding are off: two
# dockerds that both manage iptables would fight over the same DOCKER, DOCKER-USER and DOCKER-ISOLATION chains
# and the NAT table (each rewrites them at start and on network changes), and the first engine's sandbox
# networks and the server's host firewall rules depend on those. Pools with egress or custom containers need
# bridge networks, so they are not for this engine.
#
# containerd: this dockerd starts its own (under the exec and data roots above). The first engine's containerd
# is a child of the first dockerd (/var/run/docker/containerd/containerd.sock, no system containerd runs here),
# so sharing it would end this engine's containers whenever the first engine restarts (the engine-restart tests
# do that); an idle containerd costs ~40 MiB and no CPU. The containerd namespaces are distinct as well, so that
# if dockerd ever finds a system containerd at /run/containerd/containerd.sock and uses it, nothing is shared.
# Its containers live under their own cgroup parent (/sessionpool-engine2), not the first engine's /docker.
#
# Needs root and dockerd (Debian's docker.io); installs nothing.
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
# every docker call names its engine with -H, which a DOCKER_CONTEXT would conflict with
unset DOCKER_CONTEXT

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_DIR=/run/sessionpool-engine2
SOCKET=$RUN_DIR/docker.sock
ENGINE2=unix://$SOCKET
DATA_ROOT=/var/lib/sessionpool-engine2
EXEC_ROOT=$RUN_DIR/exec
PIDFILE=$RUN_DIR/docker.pid
CONFIG=$RUN_DIR/daemon.json
LOG=/var/log/sessionpool-engine2.log
# its default bridge: a name and a private /24 of its own (containers of the fleet tests never join it)
BRIDGE=sp-engine2
BRIDGE_CIDR=10.213.213.1/24
FIRST_DAEMON_JSON=${SESSIONPOOL_DOCKER_DAEMON_JSON:-/etc/docker/daemon.json}
WAIT=${SESSIONPOOL_ENGINE2_WAIT:-60}
STOP_WAIT=${SESSIONPOOL_ENGINE2_STOP_WAIT:-60}
# The engine images are copied from: the caller's engine, unless that is this one.
ENGINE1=${DOCKER_HOST:-unix:///var/run/docker.sock}
[ "$ENGINE1" = "$ENGINE2" ] && ENGINE1=unix:///var/run/docker.sock

log() { printf '[second-engine] %s\n' "$*" >&2; }

# The bridge dockerd is given with --bridge must exist; made once, kept across restarts of this engine.
ensure_bridge() {
  ip link show "$BRIDGE" >/dev/null 2>&1 && return 0
  ip link add "$BRIDGE" type bridge || die "could not create the bridge $BRIDGE"
  ip addr add "$BRIDGE_CIDR" dev "$BRIDGE" || die "could not address the bridge $BRIDGE"
  ip link set "$BRIDGE" up || die "could not bring the bridge $BRIDGE up"
}
die() {
  printf '[second-engine] error: %s\n' "$*" >&2
  exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }
d1() { docker -H "$ENGINE1" "$@"; }
d2() { docker -H "$ENGINE2" "$@"; }

# One start or stop at a time (two concurrent starts would race two dockerds for the pidfile).
lock() {
  mkdir -p "$RUN_DIR"
  exec 9>"$RUN_DIR/lock"
  flock -w "$((WAIT + STOP_WAIT + 30))" 9 || die "another second-engine.sh start/stop holds $RUN_DIR/lock"
}

# The pid in our pidfile when it is a live dockerd started with our socket (never some other process that
# reused the pid, never the first engine).
our_pid() {
  local pid
  [ -f "$PIDFILE" ] || return 1
  pid=$(cat "$PIDFILE" 2>/dev/null || true)
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = dockerd ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--host $ENGINE2" || return 1
  echo "$pid"
}

answers() {
  [ -S "$SOCKET" ] || return 1
  if have curl; then
    [ "$(curl -sf --max-time 5 --unix-socket "$SOCKET" http://engine2/_ping 2>/dev/null || true)" = OK ]
  else
    timeout 10 docker -H "$ENGINE2" version --format '{{.Server.Version}}' >/dev/null 2>&1
  fi
}

# Where this run's part of the log starts (byte offset), so a failure shows this start's lines, not an old run's.
LOG_FROM=0
log_tail() {
  [ -f "$LOG" ] || return 0
  log "last lines of $LOG:"
  tail -c "+$((LOG_FROM + 1))" "$LOG" | tail -n 20 >&2 || true
}

NODE=$(command -v node || true)
[ -n "$NODE" ] || { [ -x "$ROOT/node_modules/.bin/node" ] && NODE=$ROOT/node_modules/.bin/node; } || true

# Writes the engine's config (its runtimes = the first engine's); prints "changed" when the file changed.
write_config() {
  local script='
    const fs = require("node:fs");
    const [from, to] = process.argv.slice(1);
    let first = {};
    if (fs.existsSync(from) && fs.readFileSync(from, "utf8").trim() !== "") first = JSON.parse(fs.readFileSync(from, "utf8"));
    const config = { runtimes: first.runtimes ?? {}, "cgroup-parent": "/sessionpool-engine2", "log-level": "info" };
    const text = JSON.stringify(config, null, 2) + "\n";
    const before = fs.existsSync(to) ? fs.readFileSync(to, "utf8") : "";
    if (text !== before) {
      fs.writeFileSync(to + ".tmp", text);
      fs.renameSync(to + ".tmp", to);
      process.stdout.write("changed");
    }
  '
  local py='
import json, os, sys
src, dst = sys.argv[1], sys.argv[2]
first = {}
if os.path.exists(src):
    text = open(src).read()
    if text.strip():
        first = json.loads(text)
config = {"runtimes": first.get("runtimes") or {}, "cgroup-parent": "/sessionpool-engine2", "log-level": "info"}
text = json.dumps(config, indent=2) + "\n"
before = open(dst).read() if os.path.exists(dst) else ""
if text != before:
    open(dst + ".tmp", "w").write(text)
    os.replace(dst + ".tmp", dst)
    sys.stdout.write("changed")
'
  if [ -n "$NODE" ]; then
    "$NODE" -e "$script" "$FIRST_DAEMON_JSON" "$CONFIG"
  elif have python3; then
    python3 -c "$py" "$FIRST_DAEMON_JSON" "$CONFIG"
  else
    die "node or python3 is needed to read the runtimes of $FIRST_DAEMON_JSON"
  fi
}

# The runtime names in our config, one a line.
config_runtimes() {
  if [ -n "$NODE" ]; then
    "$NODE" -e 'for (const n of Object.keys(JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8")).runtimes)) console.log(n)' "$CONFIG"
  else
    python3 -c 'import json, sys; print("\n".join(json.load(open(sys.argv[1]))["runtimes"]))' "$CONFIG"
  fi
}

# True when the engine lists every runtime of our config.
lists_config_runtimes() {
  local listed name
  listed=" $(runtimes) "
  for name in $(config_runtimes); do
    [[ "$listed" == *" $name "* ]] || return 1
  done
}

runtimes() { d2 info --format '{{range $name, $_ := .Runtimes}}{{$name}} {{end}}' 2>/dev/null | xargs || true; }

wait_until_answers() { # PID
  local pid=$1 deadline=$((SECONDS + WAIT))
  while ! answers; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log_tail
      die "the second dockerd exited while starting (full log: $LOG)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log_tail
      die "the second engine did not answer _ping on $SOCKET within ${WAIT}s (full log: $LOG)"
    fi
    sleep 0.2
  done
}

cmd_start() {
  [ "$(id -u)" = 0 ] || die "only root can start a second dockerd"
  have dockerd || die "dockerd is not installed (Debian: apt-get install docker.io)"
  have docker || die "the docker CLI is not installed (Debian: apt-get install docker.io)"
  mkdir -p "$RUN_DIR" "$EXEC_ROOT" "$DATA_ROOT" "$(dirname "$LOG")"
  lock
  local pid changed
  changed=$(write_config) || die "could not write $CONFIG from $FIRST_DAEMON_JSON"
  if pid=$(our_pid); then
    wait_until_answers "$pid"
    if [ "$changed" = changed ]; then
      # runtimes are reloaded on SIGHUP, as ensure-gvisor.sh does for the first engine; containers keep running
      log "runtimes changed in $FIRST_DAEMON_JSON: reloading the second engine"
      kill -HUP "$pid"
      local deadline=$((SECONDS + 10))
      until lists_config_runtimes; do
        [ "$SECONDS" -lt "$deadline" ] || die "the second engine did not list the runtimes of $CONFIG after a reload"
        sleep 0.2
      done
    fi
    log "already running (pid $pid, $ENGINE2)"
  else
    answers && die "an engine that is not ours (no live dockerd in $PIDFILE) answers on $SOCKET: stop it first"
    if [ -f "$PIDFILE" ]; then
      log "removing a stale pidfile ($PIDFILE)"
      rm -f "$PIDFILE"
    fi
    # a socket left by a killed dockerd would make answers() look at a dead file
    rm -f "$SOCKET"
    log "starting dockerd on $ENGINE2 (data root $DATA_ROOT, log $LOG)"
    printf '\n--- %s second-engine.sh start ---\n' "$(date -u +%FT%TZ)" >>"$LOG"
    LOG_FROM=$(stat -c %s "$LOG")
    ensure_bridge
    setsid nohup dockerd \
      --config-file "$CONFIG" \
      --host "$ENGINE2" \
      --data-root "$DATA_ROOT" \
      --exec-root "$EXEC_ROOT" \
      --pidfile "$PIDFILE" \
      --containerd-namespace sessionpool-engine2 \
      --containerd-plugins-namespace sessionpool-engine2-plugins \
      --bridge "$BRIDGE" \
      --iptables=false \
      --ip-masq=false \
      --ip-forward=false \
      >>"$LOG" 2>&1 </dev/null 9>&- &
    pid=$!
    wait_until_answers "$pid"
    log "up (pid $pid, dockerd $(d2 version --format '{{.Server.Version}}' 2>/dev/null || echo '?'); runtimes: $(runtimes))"
  fi
  [ "$#" -eq 0 ] || cmd_load_image "$@"
  echo "$ENGINE2"
}

cmd_stop() {
  local pid
  if ! pid=$(our_pid); then
    [ -f "$PIDFILE" ] && rm -f "$PIDFILE"
    log "not running"
    return 0
  fi
  lock
  pid=$(our_pid) || {
    log "not running"
    return 0
  }
  if answers; then
    local ids
    ids=$(d2 ps -aq --no-trunc --filter label=io.sessionpool.instance 2>/dev/null || true)
    if [ -n "$ids" ]; then
      log "removing $(wc -l <<<"$ids") sessionpool container(s) left in the second engine"
      # shellcheck disable=SC2086 # one id per word
      d2 rm -f $ids >/dev/null || log "warning: could not remove every container"
    fi
  fi
  log "stopping dockerd (pid $pid)"
  kill -TERM "$pid"
  local deadline=$((SECONDS + STOP_WAIT))
  while [ -e "/proc/$pid" ]; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log_tail
      log "dockerd $pid did not stop within ${STOP_WAIT}s: killing it and its containerd"
      kill -KILL "$pid" 2>/dev/null || true
      local cpid
      cpid=$(cat "$EXEC_ROOT/containerd/containerd.pid" 2>/dev/null || true)
      if [[ "$cpid" =~ ^[0-9]+$ ]] && [ "$(cat "/proc/$cpid/comm" 2>/dev/null || true)" = containerd ]; then
        kill -KILL "$cpid" 2>/dev/null || true
      fi
      break
    fi
    sleep 0.2
  done
  rm -f "$PIDFILE"
  log "stopped"
}

cmd_status() {
  local pid
  if pid=$(our_pid) && answers; then
    echo "running (pid $pid, $ENGINE2, dockerd $(d2 version --format '{{.Server.Version}}' 2>/dev/null || echo '?'), runtimes: $(runtimes))"
    return 0
  fi
  if pid=$(our_pid); then
    echo "not answering (pid $pid, $ENGINE2)"
  else
    echo "not running"
  fi
  return 3
}

cmd_load_image() {
  [ "$#" -gt 0 ] || die "usage: $0 load-image REF..."
  answers || die "the second engine is not running ($0 start)"
  local ref id1 id2 t0
  for ref in "$@"; do
    id1=$(d1 image inspect --format '{{.Id}}' "$ref" 2>/dev/null) ||
      die "$ref is not in the first engine ($ENGINE1): build it first (bash scripts/build-images.sh)"
    id2=$(d2 image inspect --format '{{.Id}}' "$ref" 2>/dev/null || true)
    if [ "$id2" = "$id1" ]; then
      log "$ref: already loaded (${id1:7:12})"
      continue
    fi
    if d2 image inspect "$id1" >/dev/null 2>&1; then
      log "$ref: image ${id1:7:12} already loaded under another name; tagging it"
      d2 tag "$id1" "$ref"
    else
      log "$ref: copying ${id1:7:12} from $ENGINE1 (docker save | docker load)"
      t0=$SECONDS
      d1 save "$ref" | d2 load -q >/dev/null || die "could not copy $ref into the second engine"
      log "$ref: loaded in $((SECONDS - t0))s"
    fi
    id2=$(d2 image inspect --format '{{.Id}}' "$ref" 2>/dev/null || true)
    [ "$id2" = "$id1" ] || die "$ref: the second engine has image ${id2:-none}, expected $id1"
  done
}

case "${1:-}" in
  start)
    shift
    cmd_start "$@"
    ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  load-image)
    shift
    cmd_load_image "$@"
    ;;
  *)
    echo "usage: $0 start [REF...] | stop | status | load-image REF..." >&2
    exit 2
    ;;
esac
