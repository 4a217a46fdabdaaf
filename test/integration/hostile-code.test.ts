// Hostile code in real sandboxes, beyond isolation.test.ts: raw sockets, setuid binaries, device nodes, /proc and
// mount tricks, the agent's own process, huge output, code that ignores interrupts and a daemon that outlives its
// execution. Each attempt fails or is contained with a clear result, and a bystander session keeps answering.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { type RuntimeFixture, startRuntimeServer, TIGHT_SANDBOX } from "../helpers/runtime.ts";
import { ADMIN_TOKEN, call, SUB } from "../helpers/server.ts";

const run = promisify(execFile);
const POOL = "hostile";
const RG = `hostile${Math.random().toString(36).slice(2, 8)}`;
const MAX_CHARS = 20000;
let fx: RuntimeFixture;

before(async () => {
  fx = await startRuntimeServer({ rg: RG, sandbox: TIGHT_SANDBOX });
  await fx.createPool(POOL, { scaleConfiguration: { maxConcurrentSessions: 12, readySessionInstances: 2 } });
});
after(async () => {
  await fx?.close();
});

interface ExecBody {
  status: string;
  result: {
    stdout: string;
    stderr: string;
    executionResult: unknown;
    stdoutTruncated?: boolean;
    stderrTruncated?: boolean;
  };
  error?: { code: string; message: string };
}

async function execIn(
  identifier: string,
  code: string,
  timeoutInSeconds = 30,
): Promise<{ body: ExecBody; guid: string }> {
  const r = await fx.exec(POOL, identifier, code, { timeoutInSeconds, outputStreamsMaxLength: MAX_CHARS });
  assert.equal(r.status, 200, r.text);
  return { body: r.body as ExecBody, guid: r.headers["x-ms-session-guid"] ?? "" };
}

async function py(identifier: string, code: string, timeoutInSeconds = 30): Promise<ExecBody> {
  return (await execIn(identifier, code, timeoutInSeconds)).body;
}

/** Runs `code`, which prints one JSON object on a line of its own, and parses it. */
async function probe<T>(identifier: string, code: string): Promise<T> {
  const body = await py(identifier, code);
  assert.equal(body.status, "Succeeded", `${body.result.stderr}\n${JSON.stringify(body.error)}`);
  // A background process of the session may write to the same stdout (the daemon test's does).
  const line = body.result.stdout.split("\n").findLast((l) => l.startsWith("{"));
  assert.ok(line !== undefined, body.result.stdout);
  return JSON.parse(line) as T;
}

/** The bystander session answers normally while another session misbehaves. */
async function bystanderAnswers(): Promise<void> {
  const b = await py("bystander", "21 * 2");
  assert.equal(b.result.executionResult, 42);
}

/** gVisor (runsc) answers many of these calls itself: its own /proc, /dev, mounts and errno values. */
function gvisor(): boolean {
  return fx.sandboxRuntime === "runsc";
}

/**
 * Host pids in a sandbox's pids cgroup: its own processes under runc; under gVisor the runtime's sentry, gofer and
 * platform stubs, since the session's processes are tasks of gVisor's kernel, not host processes.
 */
async function sandboxHostPids(id: string): Promise<{ cgroup: string; pids: number[] }> {
  const { stdout } = await run("docker", ["inspect", "-f", "{{.State.Pid}}", id], { timeout: 30_000 });
  const lines = readFileSync(`/proc/${stdout.trim()}/cgroup`, "utf8").split("\n");
  const v1 = lines.find((l) => l.split(":")[1]?.split(",").includes("pids"));
  const cgroup = v1
    ? `/sys/fs/cgroup/pids${v1.split(":")[2]}`
    : `/sys/fs/cgroup${lines.find((l) => l.startsWith("0::"))?.slice(3)}`;
  const pids = readFileSync(`${cgroup}/cgroup.procs`, "utf8").split("\n").filter(Boolean).map(Number);
  return { cgroup, pids };
}

/** Host processes whose command line contains `needle` (the host's /proc sees every sandbox process). */
function hostProcessesWith(needle: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`).includes(needle)) found.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

// Python helpers shared by the probes: the outcome of a call as a short string, errno names for errors.
const TRY = `import errno, json, os
def attempt(f):
    try:
        f()
        return 'allowed'
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
`;

// For probes that call libc directly: a call answering non-zero raises its errno as an OSError, for attempt().
const LIBC = `${TRY}import ctypes
libc = ctypes.CDLL(None, use_errno=True)
def syscall(f):
    def call():
        if f() != 0:
            e = ctypes.get_errno(); raise OSError(e, os.strerror(e))
    return call
`;

describe("hostile code", () => {
  it("cannot open raw or packet sockets (no CAP_NET_RAW)", async () => {
    const out = await probe<Record<string, string>>(
      "raw-sockets",
      `${TRY}import socket
print(json.dumps({
    'packet': attempt(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)).close()),
    'packet-dgram': attempt(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(3)).close()),
    'icmp-raw': attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()),
    'ip-raw': attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW).close()),
    'icmp6-raw': attempt(lambda: socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6).close()),
}))`,
    );
    // (Unprivileged ICMP "ping" datagram sockets are another matter: the engine allows them, and they reach only
    // what the sandbox's network reaches, which by default is its own loopback.)
    assert.deepEqual(out, {
      packet: "EPERM",
      "packet-dgram": "EPERM",
      "icmp-raw": "EPERM",
      "ip-raw": "EPERM",
      "icmp6-raw": "EPERM",
    });
    await bystanderAnswers();
  });

  it("gains nothing from setuid binaries: no-new-privileges, no capabilities, nosuid mounts", async () => {
    const out = await probe<{
      setuid: string[];
      status: Record<string, string | null>;
      noNewPrivs: number;
      suIds: string[] | null;
      mounts: Record<string, string[]>;
      chmodSuid: string;
    }>(
      "setuid",
      `${TRY}import ctypes, subprocess, time
setuid = subprocess.run('find / -xdev -type f -perm /6000 2>/dev/null', shell=True, capture_output=True, text=True).stdout.split()
status = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\\t' in l)
# su is setuid root. Waiting for a password on its stdin, its credentials are those exec gave it.
p = subprocess.Popen(['su', 'root', '-c', 'id'], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
su_ids = None
for _ in range(1000):
    try:
        text = open(f'/proc/{p.pid}/status').read()
    except OSError:
        break
    if 'Name:\\tsu\\n' in text:
        su_ids = [l for l in text.splitlines() if l.startswith('Uid:')][0].split()[1:]
        break
    time.sleep(0.01)
p.kill(); p.wait()
mounts = {m.split()[1]: m.split()[3].split(',') for m in open('/proc/mounts').read().splitlines()}
# A setuid file of our own on /mnt/data: allowed to create, but the mount ignores the bit.
open('/mnt/data/suid', 'w').close()
print(json.dumps({
    'setuid': setuid,
    'status': {k: status[k].strip() if k in status else None for k in ('Uid', 'CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs', 'Seccomp')},
    'noNewPrivs': ctypes.CDLL(None).prctl(39, 0, 0, 0, 0),  # PR_GET_NO_NEW_PRIVS: the kernel's own answer
    'suIds': su_ids,
    'mounts': {k: mounts[k] for k in ('/mnt/data', '/tmp', '/dev/shm')},
    'chmodSuid': attempt(lambda: os.chmod('/mnt/data/suid', 0o4755)),
}))`,
    );
    assert.ok(out.setuid.includes("/usr/bin/su"), `the image's setuid files: ${out.setuid.join(" ")}`);
    assert.deepEqual(out.status, {
      Uid: "1000\t1000\t1000\t1000",
      CapInh: "0000000000000000",
      CapPrm: "0000000000000000",
      CapEff: "0000000000000000",
      CapBnd: "0000000000000000",
      // gVisor's /proc/<pid>/status has no CapAmb or NoNewPrivs line (ambient capabilities are a subset of the
      // permitted and inheritable ones, both empty above; no-new-privileges is asked of the kernel below). Both
      // runtimes filter the session's system calls with seccomp: runc with the engine's profile in the host
      // kernel, gVisor with the server's profile (runsc --oci-seccomp, src/runtime/gvisor-seccomp.ts) in its own;
      // under gVisor the sentry itself also runs under seccomp on the host (checked below).
      CapAmb: gvisor() ? null : "0000000000000000",
      NoNewPrivs: gvisor() ? null : "1",
      Seccomp: "2",
    });
    assert.equal(out.noNewPrivs, 1, "no-new-privileges");
    assert.deepEqual(out.suIds, ["1000", "1000", "1000", "1000"], "the setuid bit of su gave it no root");
    if (!gvisor()) {
      // gVisor does not list nosuid or nodev among its tmpfs mounts' options; what they guard against is checked
      // by behaviour: su above, and device nodes in the next test.
      for (const [mount, options] of Object.entries(out.mounts)) {
        assert.ok(options.includes("nosuid") && options.includes("nodev"), `${mount}: ${options.join(",")}`);
      }
    }
    assert.equal(out.chmodSuid, "allowed");
    // Whatever runs for the sandbox on the host (its processes under runc; gVisor's sentry, gofer and stubs under
    // runsc) is under seccomp with no-new-privileges.
    const { guid } = await execIn("setuid", "1");
    const { pids } = await sandboxHostPids(guid);
    assert.ok(pids.length > 0);
    for (const pid of pids) {
      let status: string;
      try {
        status = readFileSync(`/proc/${pid}/status`, "utf8");
      } catch {
        continue; // exited meanwhile
      }
      assert.match(status, /^Seccomp:\s+2$/m, `host pid ${pid} of the sandbox`);
      assert.match(status, /^NoNewPrivs:\s+1$/m, `host pid ${pid} of the sandbox`);
    }
    await bystanderAnswers();
  });

  it("cannot make device nodes and sees only harmless ones", async () => {
    const out = await probe<{
      mknodChar: string;
      mknodBlock: string;
      tun: string;
      fuse: string;
      fifo: string;
      dev: string[];
      blockDevices: string[];
      devWrite: string;
      shmBytes: number;
    }>(
      "devices",
      `${TRY}import ctypes, fcntl, stat, struct
libc = ctypes.CDLL(None, use_errno=True)
def mknod(path, mode, dev):
    made = attempt(lambda: os.mknod(path, 0o666 | mode, dev))
    # Made anyway (gVisor): what opening it reaches.
    return made if made != 'allowed' else 'made, open: ' + attempt(lambda: os.close(os.open(path, os.O_RDWR)))
def tun():  # TUNSETIFF: create a network interface
    fd = os.open('/dev/net/tun', os.O_RDWR)
    try:
        fcntl.ioctl(fd, 0x400454ca, struct.pack('16sH', b'evil0', 0x1001))
    finally:
        os.close(fd)
def fuse():  # mount a FUSE file system served by this process
    fd = os.open('/dev/fuse', os.O_RDWR)
    os.makedirs('/tmp/fuse', exist_ok=True)
    try:
        if libc.mount(b'fuse', b'/tmp/fuse', b'fuse', 0, f'fd={fd},rootmode=40000,user_id=1000,group_id=1000'.encode()) != 0:
            e = ctypes.get_errno(); raise OSError(e, os.strerror(e))
    finally:
        os.close(fd)
blocks = []
for d, dirs, files in os.walk('/dev'):
    for f in files:
        try:
            if stat.S_ISBLK(os.lstat(os.path.join(d, f)).st_mode): blocks.append(os.path.join(d, f))
        except OSError:
            pass
shm = os.statvfs('/dev/shm')
print(json.dumps({
    'mknodChar': mknod('/tmp/mem', stat.S_IFCHR, os.makedev(1, 1)),
    'mknodBlock': mknod('/mnt/data/disk', stat.S_IFBLK, os.makedev(8, 0)),
    'tun': attempt(tun) if os.path.exists('/dev/net/tun') else 'absent',
    'fuse': attempt(fuse) if os.path.exists('/dev/fuse') else 'absent',
    'fifo': attempt(lambda: os.mkfifo('/tmp/fifo')),
    'dev': sorted(os.listdir('/dev')),
    'blockDevices': blocks,
    'devWrite': attempt(lambda: open('/dev/evil', 'w')),
    'shmBytes': shm.f_blocks * shm.f_frsize,
}))`,
    );
    if (gvisor()) {
      // gVisor (this version) makes device nodes without asking for CAP_MKNOD, but a node leads only to a device
      // of gVisor's own kernel, never the host's: /dev/mem (1,1) and a disk (8,0) are none of them (ENXIO).
      assert.ok(["EPERM", "made, open: ENXIO"].includes(out.mknodChar), `mknod c 1 1: ${out.mknodChar}`);
      assert.ok(["EPERM", "made, open: ENXIO"].includes(out.mknodBlock), `mknod b 8 0: ${out.mknodBlock}`);
    } else {
      assert.equal(out.mknodChar, "EPERM");
      assert.equal(out.mknodBlock, "EPERM");
    }
    // gVisor's /dev also has its own tun and fuse devices: using either needs a capability the sandbox lacks.
    assert.ok(["EPERM", "absent"].includes(out.tun), `TUNSETIFF: ${out.tun}`);
    assert.ok(["EPERM", "absent"].includes(out.fuse), `mount -t fuse: ${out.fuse}`);
    assert.equal(out.fifo, "allowed", "a FIFO is no device");
    const harmless = new Set([
      ...(gvisor() ? ["net", "fuse"] : []),
      "console",
      "core",
      "fd",
      "full",
      "mqueue",
      "null",
      "ptmx",
      "pts",
      "random",
      "shm",
      "stderr",
      "stdin",
      "stdout",
      "tty",
      "urandom",
      "zero",
    ]);
    assert.deepEqual(
      out.dev.filter((n) => !harmless.has(n)),
      [],
      "no /dev/mem, /dev/kmsg, disks or other host devices",
    );
    assert.deepEqual(out.blockDevices, []);
    assert.equal(out.devWrite, "EACCES");
    assert.ok(out.shmBytes <= 64 * 1024 * 1024, `/dev/shm is ${out.shmBytes} bytes`);
    await bystanderAnswers();
  });

  it("cannot take the agent's place on the server's socket", async () => {
    // The server listens and the agent attaches with a key only it holds; an attach from the session's code (no
    // key, a guessed one, or another frame altogether) is closed unanswered, and the agent's connection lives on.
    const { guid } = await execIn("socket-thief", "kept = 'state'");
    const out = await probe<{ answers: string[] }>(
      "socket-thief",
      `import json, socket, struct
answers = []
for header in [b'{"op":"attach","version":"2","kernel":"python","key":null}',
               b'{"op":"attach","version":"2","kernel":"python","key":"guess"}',
               b'{"id":1,"ok":true,"agent":"python","version":"1","pid":1}']:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    try:
        s.connect('/run/sessionpool/agent.sock')
        s.sendall(struct.pack('>II', len(header), 0) + header)
        answers.append(repr(s.recv(65536)))
    except OSError as e:
        answers.append(type(e).__name__)
    finally:
        s.close()
print(json.dumps({'answers': answers}))`,
    );
    for (const answer of out.answers) {
      assert.ok(["b''", "ConnectionResetError", "BrokenPipeError"].includes(answer), out.answers.join(", "));
    }
    const again = await execIn("socket-thief", "kept");
    assert.equal(again.body.result.executionResult, "state");
    assert.equal(again.guid, guid);
    await bystanderAnswers();
  });

  it("can write nowhere but its own bounded tmpfs mounts, and never to the host's disk", async () => {
    const before = await run("du", ["-sb", fx.dataDir]);
    const out = await probe<{ writable: Record<string, [number, string]>; socketDir: string }>(
      "disk-filler",
      `import errno, json, os
SKIP = ('/proc', '/sys')
mounts = sorted(((l.split()[1], l.split()[2]) for l in open('/proc/self/mounts')), key=lambda m: -len(m[0]))
def fs_of(path):
    return next(t for m, t in mounts if path == m or path.startswith(m.rstrip('/') + '/'))
writable = {}
socket_dir = 'unset'
def try_write(d):
    path = os.path.join(d, '.sp-probe')
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    written = 0
    chunk = b'x' * (1 << 20)
    try:
        while written < (200 << 20):  # as much as it takes: a bound stops it, or 200 MB do
            written += os.write(fd, chunk)
    except OSError:
        pass
    finally:
        os.close(fd)
    writable[d] = [written, fs_of(d)]
    os.unlink(path)
    return 'allowed'
for root, dirs, files in os.walk('/', topdown=True):
    dirs[:] = [x for x in dirs if os.path.join(root, x) not in SKIP]
    result = try_write(root)
    if root == '/run/sessionpool':
        socket_dir = result
print(json.dumps({'writable': writable, 'socketDir': socket_dir}))`,
    );
    // Every writable place is a size-bounded memory file system of the sandbox's own (its tmpfs mounts, its
    // private IPC namespace's /dev/shm and /dev/mqueue): memory the sandbox is charged for, never the host's disk.
    // gVisor mounts no /dev/mqueue (its message queues live in its own kernel, reached by mq_open only).
    const places = Object.keys(out.writable).map((d) =>
      d.startsWith("/tmp/") ? "/tmp" : d.startsWith("/mnt/data/") ? "/mnt/data" : d,
    );
    assert.deepEqual(
      [...new Set(places)].sort(),
      gvisor() ? ["/dev/shm", "/mnt/data", "/tmp"] : ["/dev/mqueue", "/dev/shm", "/mnt/data", "/tmp"],
    );
    for (const [dir, [bytes, fs]] of Object.entries(out.writable)) {
      assert.ok(["tmpfs", "mqueue"].includes(fs), `${dir} is on ${fs}`);
      const bound = dir.startsWith("/mnt/data")
        ? TIGHT_SANDBOX.dataDirBytes!
        : dir.startsWith("/tmp")
          ? TIGHT_SANDBOX.tmpBytes!
          : 64 * 1024 * 1024;
      assert.ok(bytes <= bound, `${dir} took ${bytes} bytes`);
    }
    assert.equal(out.socketDir, "EROFS", "the agent's socket directory is mounted read-only");
    const afterBytes = Number((await run("du", ["-sb", fx.dataDir])).stdout.split("\t")[0]);
    const beforeBytes = Number(before.stdout.split("\t")[0]);
    // The store may write a few pages meanwhile (session records); 200 MB from the sandbox would show.
    assert.ok(
      afterBytes - beforeBytes < 4 * 1024 * 1024,
      `the data dir grew by ${afterBytes - beforeBytes} bytes`,
    );
    await bystanderAnswers();
  });

  it("cannot mount, unshare or chroot", async () => {
    // Each attempt in a child of its own: one that succeeded would change what the next one sees.
    const out = await probe<Record<string, string>>(
      "namespaces",
      `${LIBC}def in_child(f):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, attempt(f).encode()); os._exit(0)
    os.close(w); os.waitpid(pid, 0)
    answer = os.read(r, 64).decode(); os.close(r)
    return answer
print(json.dumps({
    'mount': in_child(syscall(lambda: libc.mount(b'none', b'/mnt/data', b'tmpfs', 0, None))),
    'remountRoot': in_child(syscall(lambda: libc.mount(None, b'/', None, 32, None))),
    'unshareUser': in_child(syscall(lambda: libc.unshare(0x10000000))),
    'unshareMount': in_child(syscall(lambda: libc.unshare(0x00020000))),
    'chroot': in_child(lambda: os.chroot('/tmp')),
}))`,
    );
    // Under gVisor these are refused by the server's seccomp profile applied inside the sandbox (runsc
    // --oci-seccomp, src/runtime/gvisor-seccomp.ts): without it, gVisor 20221219 lets unprivileged code unshare a
    // user namespace (where it holds every capability and may chroot) and a mount namespace.
    assert.deepEqual(
      out,
      { mount: "EPERM", remountRoot: "EPERM", unshareUser: "EPERM", unshareMount: "EPERM", chroot: "EPERM" },
      `under ${fx.sandboxRuntime}`,
    );
    await bystanderAnswers();
  });

  it("cannot write /proc/sys or cgroups, trace the agent or read secrets", async () => {
    const poolToken = await call(
      "POST",
      `${fx.url}/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.App/sessionPools/${POOL}/getAuthtoken?api-version=2025-07-01`,
    );
    assert.equal(poolToken.status, 200, poolToken.text);
    const token = (poolToken.body as { properties: { token: string } }).properties.token;
    assert.ok(token.length > 16);

    const out = await probe<Record<string, unknown>>(
      "proc-tricks",
      `${LIBC}def agent_fds(agent):
    # The agent's fd/ (its connection to the server among them): listed at all, and its sockets opened?
    try:
        fds = os.listdir(f'/proc/{agent}/fd')
    except OSError as e:
        return [errno.errorcode.get(e.errno, str(e.errno)), []]
    sockets = [fd for fd in fds if os.readlink(f'/proc/{agent}/fd/{fd}').startswith('socket:')]
    return ['allowed', [attempt(lambda fd=fd: os.close(os.open(f'/proc/{agent}/fd/{fd}', os.O_RDWR))) for fd in sockets]]
def ptrace_seize(pid):  # PTRACE_SEIZE does not stop the tracee; the tracer's exit releases it
    return attempt(syscall(lambda: libc.ptrace(0x4206, pid, 0, 0)))
def write(path, text):
    def f():
        with open(path, 'w') as fh: fh.write(text)
    return f
def read(path):
    def f():
        with open(path, 'rb') as fh:
            if fh.read(1): raise OSError(0, 'readable')
    return f
agent = os.getppid()
environ = {}
for p in [p for p in os.listdir('/proc') if p.isdigit()]:
    try:
        environ[p] = open(f'/proc/{p}/environ', 'rb').read().decode('utf-8', 'replace')
    except OSError as e:
        environ[p] = errno.errorcode.get(e.errno, str(e.errno))
pid1 = dict(l.split(':\\t', 1) for l in open('/proc/1/status').read().splitlines() if ':\\t' in l)
own_environ = open('/proc/self/environ', 'rb').read().decode('utf-8', 'replace').split('\\0')
print(json.dumps({
    'procSys': attempt(write('/proc/sys/kernel/hostname', 'x')),
    'sysrq': attempt(write('/proc/sysrq-trigger', 'b')),
    'kcore': attempt(read('/proc/kcore')),
    'cgroupPids': attempt(write('/sys/fs/cgroup/pids/pids.max', 'max')),
    'cgroupMove': attempt(write('/sys/fs/cgroup/pids/cgroup.procs', str(os.getpid()))),
    'sysfs': attempt(write('/sys/kernel/uevent_helper', '/tmp/x')),
    'oomScoreAdj': attempt(write('/proc/self/oom_score_adj', '-1000')),
    'agentIsParent': b'agent.py' in open(f'/proc/{agent}/cmdline', 'rb').read(),
    'ptraceAgent': ptrace_seize(agent),
    'agentMem': attempt(read(f'/proc/{agent}/mem')),
    'agentFds': agent_fds(agent),
    'agentEnvironBeyondOwn': [kv for kv in environ[str(agent)].split('\\0') if kv not in own_environ],
    'agentEnviron': environ.pop(str(agent)),
    'environ': environ,
    'pid1': {'uid': pid1['Uid'].split(), 'capEff': pid1['CapEff'].strip(), 'name': pid1['Name'].strip()},
}))`,
    );
    assert.deepEqual(
      {
        procSys: out.procSys,
        cgroupPids: out.cgroupPids,
        cgroupMove: out.cgroupMove,
        sysfs: out.sysfs,
        oomScoreAdj: out.oomScoreAdj,
      },
      gvisor()
        ? // gVisor's /proc/sys and /sys are its own and refuse writes by permission; it mounts no cgroup file
          // system in the sandbox (nothing to write); oom_score_adj is its own kernel's bookkeeping, which the
          // host's OOM killer never reads (checked on the host below).
          {
            procSys: "EACCES",
            cgroupPids: "ENOENT",
            cgroupMove: "ENOENT",
            sysfs: "EACCES",
            oomScoreAdj: "allowed",
          }
        : {
            procSys: "EROFS",
            cgroupPids: "EROFS",
            cgroupMove: "EROFS",
            sysfs: "EROFS",
            oomScoreAdj: "EACCES",
          },
    );
    // The host's OOM killer sees the sandbox's own scores (the engine's 500; gVisor's stubs 1), never -1000.
    const { guid } = await execIn("proc-tricks", "1");
    for (const pid of (await sandboxHostPids(guid)).pids) {
      let adj: number;
      try {
        adj = Number(readFileSync(`/proc/${pid}/oom_score_adj`, "utf8"));
      } catch {
        continue; // exited meanwhile
      }
      assert.ok(adj > 0, `host pid ${pid} of the sandbox has oom_score_adj ${adj}`);
    }
    // Absent from some kernels; masked or read-only where present.
    assert.ok(["ENOENT", "EROFS", "EACCES"].includes(out.sysrq as string), `sysrq-trigger: ${out.sysrq}`);
    assert.ok(["ENOENT", "EACCES", "EPERM"].includes(out.kcore as string), `kcore: ${out.kcore}`);

    // The agent runs as the same user as the code but is not dumpable: no ptrace, no /proc/<agent>/mem, fd/ or
    // environ, so the code cannot take over the agent's connection to the server.
    assert.equal(out.agentIsParent, true);
    assert.equal(out.ptraceAgent, "EPERM");
    assert.equal(out.agentMem, "EACCES");
    if (gvisor()) {
      // gVisor's /proc shows a non-dumpable process's fd/ and environ to its own user all the same. Its sockets
      // (the server's connection) cannot be opened through fd/ (ENXIO), its pipes lead only to the session's own
      // interpreter, and its environment is the one the code already has.
      const [listed, sockets] = out.agentFds as [string, string[]];
      assert.equal(listed, "allowed");
      assert.ok(
        sockets.length > 0 && sockets.every((s) => s === "ENXIO"),
        `agent's sockets: ${sockets.join(", ")}`,
      );
      assert.deepEqual(out.agentEnvironBeyondOwn, []);
    } else {
      assert.deepEqual(out.agentFds, ["EACCES", []]);
      assert.equal(out.agentEnviron, "EACCES");
    }
    // PID 1 is the sandbox's own init (the engine's tini), as unprivileged as the code: nothing to gain there.
    assert.deepEqual(out.pid1, {
      uid: ["1000", "1000", "1000", "1000"],
      capEff: "0000000000000000",
      name: "docker-init",
    });
    // No environment in the sandbox holds a credential of the control plane.
    const environ = out.environ as Record<string, string>;
    assert.ok(
      "1" in environ && environ["1"]!.includes("SESSIONPOOL_KERNEL=python"),
      "PID 1's environ was read",
    );
    for (const [pid, text] of Object.entries(environ)) {
      assert.ok(!text.includes(ADMIN_TOKEN), `pid ${pid} has the admin token`);
      assert.ok(!text.includes(token), `pid ${pid} has a pool token`);
      const names = text.split("\0").map((kv) => kv.split("=")[0]!);
      assert.deepEqual(
        names.filter((n) => /TOKEN|SECRET|PASSWORD|CREDENTIAL|KEY/i.test(n)),
        [],
        `pid ${pid}: ${names.join(" ")}`,
      );
    }
    await bystanderAnswers();
  });

  it("bounds huge stdout and stderr and an oversized result; the server does not buffer them", async () => {
    await py("huge-output", "kept = 'state'");
    const rssBefore = process.memoryUsage().rss;
    const { body, guid } = await execIn(
      "huge-output",
      `import os
chunk = b'o' * (1 << 20)
for _ in range(200):
    os.write(1, chunk)
for _ in range(100):
    os.write(2, b'e' * (1 << 20))
'done'`,
    );
    assert.equal(body.status, "Succeeded");
    assert.equal(body.result.executionResult, "done");
    assert.equal(body.result.stdout, "o".repeat(MAX_CHARS));
    assert.equal(body.result.stderr, "e".repeat(MAX_CHARS));
    assert.equal(body.result.stdoutTruncated, true);
    assert.equal(body.result.stderrTruncated, true);

    // A result of 24 MiB (its repr): dropped by the agent with a clear error; stdout still comes through.
    const big = await execIn(
      "huge-output",
      "class Big:\n    def __repr__(self):\n        return 'r' * (24 << 20)\nprint('before')\nBig()",
    );
    assert.equal(big.body.status, "Failed");
    assert.equal(big.body.error?.code, "ResultTooLarge");
    assert.match(big.body.error?.message ?? "", /exceed 16 MiB/);
    assert.equal(big.body.result.stdout, "before\n");
    assert.equal(big.body.result.executionResult, "");

    const grownBytes = process.memoryUsage().rss - rssBefore;
    assert.ok(grownBytes < 100 * 1024 * 1024, `the server grew by ${grownBytes} bytes`);
    const again = await execIn("huge-output", "kept");
    assert.equal(again.body.result.executionResult, "state", "same interpreter, variables kept");
    assert.equal(again.guid, guid);
    assert.equal(big.guid, guid);
    await bystanderAnswers();
  });

  it("ends code that ignores interrupts at its timeout; the next execution runs in a fresh interpreter", async () => {
    await py("no-interrupt", "x = 41\nopen('/mnt/data/kept.txt', 'w').write('kept')");
    const stubborn = fx.exec(
      POOL,
      "no-interrupt",
      `import signal, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
while True:
    time.sleep(0.05)`,
      { timeoutInSeconds: 1 },
    );
    await bystanderAnswers();
    const r = await stubborn;
    const body = r.body as ExecBody;
    assert.equal(body.status, "Failed");
    assert.equal(body.error?.code, "ExecutionTimeout");
    assert.match(
      body.error?.message ?? "",
      /ignored the interrupt and was restarted, so variables were lost/,
    );
    assert.match(
      body.result.stderr,
      /did not stop within 2 s of the interrupt; the interpreter was restarted/,
    );

    // The agent's answer to an interpreter that ignores SIGINT is SIGKILL to its process group and a new
    // interpreter: variables are gone, files stay, and interrupts work again.
    const after = await py(
      "no-interrupt",
      "json = __import__('json')\njson.dumps(['x' in globals(), open('kept.txt').read()])",
    );
    assert.equal(after.status, "Succeeded");
    assert.equal(after.result.executionResult, '[false, "kept"]');
    const spin = await py("no-interrupt", "y = 1\nwhile True:\n    pass", 1);
    assert.equal(spin.error?.code, "ExecutionTimeout");
    assert.match(spin.error?.message ?? "", /the session's state is kept/);
    assert.equal((await py("no-interrupt", "y")).result.executionResult, 1);
  });

  it("contains a daemon: it cannot hang executions or timeouts and dies with its session", async () => {
    const marker = `sessionpool-daemon-${Math.random().toString(36).slice(2, 10)}`;
    // Double fork, new session, SIGHUP/SIGINT/SIGTERM/SIGPIPE ignored, and the execution's stdout and stderr kept
    // open and written to forever. Its "beat"s land in whichever execution is running (as a Jupyter kernel's
    // background output does) and are dropped between executions; the agent never waits for its pipes to close.
    const started = await execIn(
      "daemon",
      `import os
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() != 0:
        os._exit(0)
    os.write(w, str(os.getpid()).encode())
    os.execv('/bin/sh', ['sh', '-c', 'trap "" HUP INT TERM PIPE; while :; do echo beat 2>/dev/null; sleep 0.1; done', '${marker}'])
os.close(w)
os.waitpid(pid, 0)
daemon = int(os.read(r, 32))
daemon`,
    );
    assert.equal(
      started.body.status,
      "Succeeded",
      "the daemon holding stdout open does not hang the execution",
    );
    const daemonPid = started.body.result.executionResult as number;
    assert.equal(typeof daemonPid, "number");

    // It lives in the sandbox: the same cgroup (so the same pids, memory and cpu limits), another session.
    const inside = await probe<{ sameCgroup: boolean; otherSession: boolean; alive: boolean }>(
      "daemon",
      `import json, os
print(json.dumps({
    'sameCgroup': open('/proc/${daemonPid}/cgroup').read() == open('/proc/self/cgroup').read(),
    'otherSession': os.getsid(${daemonPid}) != os.getsid(0),
    'alive': os.path.exists('/proc/${daemonPid}'),
}))`,
    );
    assert.deepEqual(inside, { sameCgroup: true, otherSession: true, alive: true });

    // Timeouts still work around it: an interrupt keeps the state, an ignored one restarts the interpreter.
    const spin = await py("daemon", "while True:\n    pass", 1);
    assert.equal(spin.error?.code, "ExecutionTimeout");
    assert.match(spin.error?.message ?? "", /the session's state is kept/);
    const stubborn = await py(
      "daemon",
      "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.05)",
      1,
    );
    assert.equal(stubborn.error?.code, "ExecutionTimeout");
    assert.match(stubborn.error?.message ?? "", /restarted/);
    // Processes a session starts live as long as its sandbox (as in an Azure session's container): the daemon
    // survives the interpreter's restart, and the new interpreter answers all the same.
    const next = await py("daemon", `import os\nos.path.exists('/proc/${daemonPid}')`);
    assert.equal(next.status, "Succeeded");
    assert.equal(next.result.executionResult, true);
    await bystanderAnswers();

    // On the host it is a process of that sandbox (under gVisor, a task of the sandbox's own kernel: no host
    // process at all), and it goes when the session is stopped, with everything the sandbox ran on the host.
    const sandbox = await sandboxHostPids(started.guid);
    if (gvisor()) {
      // (docker top is no help here: it looks gVisor's own pids up in the host's process table.)
      assert.deepEqual(hostProcessesWith(marker), [], "the daemon is no host process");
    } else {
      const { stdout: top } = await run("docker", ["top", started.guid, "-o", "pid,args"], {
        timeout: 30_000,
      });
      assert.match(top, new RegExp(marker));
      const daemons = hostProcessesWith(marker);
      assert.ok(daemons.length > 0, "the host sees the daemon while the session lives");
      for (const pid of daemons)
        assert.ok(sandbox.pids.includes(pid), `daemon ${pid} is in the sandbox's cgroup`);
    }
    const stop = await call(
      "POST",
      `${fx.endpoint(POOL)}/.management/stopSession?identifier=daemon&api-version=2025-10-02-preview`,
    );
    assert.equal(stop.status, 200, stop.text);
    const { stdout: left } = await run("docker", ["ps", "-aq", "--filter", `id=${started.guid}`], {
      timeout: 30_000,
    });
    assert.equal(left.trim(), "", "the session's container is gone");
    assert.deepEqual(hostProcessesWith(marker), [], "no process of the daemon is left on the host");
    const leftOnHost = sandbox.pids.filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cgroup`, "utf8").includes(started.guid);
      } catch {
        return false; // gone
      }
    });
    assert.deepEqual(leftOnHost, [], "no host process of the sandbox is left");
    await bystanderAnswers();
  });
});
