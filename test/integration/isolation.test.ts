// What code inside a session can and cannot do, checked from inside real sandboxes: no network but lo, no way
// to the server or the engine, no view of the host, a read-only root, no other session's files, bounded
// memory, processes, disk and CPU, and a server and bystander session that keep answering meanwhile.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { type RuntimeFixture, startRuntimeServer, TIGHT_SANDBOX, until } from "../helpers/runtime.ts";

const POOL = "iso";
let fx: RuntimeFixture;

before(async () => {
  fx = await startRuntimeServer({ sandbox: TIGHT_SANDBOX });
  await fx.createPool(POOL, { scaleConfiguration: { maxConcurrentSessions: 12, readySessionInstances: 2 } });
});
after(async () => {
  await fx?.close();
});

interface ExecBody {
  status: string;
  result: { stdout: string; stderr: string; executionResult: unknown };
  error?: { code: string; message: string };
}

async function py(identifier: string, code: string, timeoutInSeconds = 30): Promise<ExecBody> {
  return (await pyIn(identifier, code, timeoutInSeconds)).body;
}

async function pyIn(
  identifier: string,
  code: string,
  timeoutInSeconds = 30,
): Promise<{ body: ExecBody; guid: string }> {
  const r = await fx.exec(POOL, identifier, code, { timeoutInSeconds, outputStreamsMaxLength: 20000 });
  assert.equal(r.status, 200, r.text);
  return { body: r.body as ExecBody, guid: r.headers["x-ms-session-guid"] ?? "" };
}

let bystanderGuid: string | undefined;
/** The bystander session answers normally, from the same sandbox, while another session misbehaves. */
async function bystanderAnswers(): Promise<void> {
  const { body, guid } = await pyIn("bystander", "21 * 2");
  assert.equal(body.result.executionResult, 42);
  bystanderGuid ??= guid;
  assert.equal(guid, bystanderGuid, "the bystander's sandbox is the one it had");
}

/** gVisor (runsc) runs the session's processes in its own kernel, with limits of its own shape. */
function gvisor(): boolean {
  return fx.sandboxRuntime === "runsc";
}

describe("isolation", () => {
  it("has no network interface but lo and cannot reach the server", async () => {
    const port = new URL(fx.url).port;
    const body = await py(
      "net-probe",
      `import json, os, socket
def attempt(host):
    s = socket.socket(); s.settimeout(1)
    try:
        s.connect((host, ${port})); return 'connected'
    except OSError as e:
        return type(e).__name__
    finally:
        s.close()
print(json.dumps([sorted(os.listdir('/sys/class/net')), attempt('127.0.0.1'), attempt('172.17.0.1'), open('/proc/net/route').read().count('\\n')]))`,
    );
    const [nets, loopback, bridge, routeLines] = JSON.parse(body.result.stdout) as [
      string[],
      string,
      string,
      number,
    ];
    assert.deepEqual(nets, ["lo"]);
    assert.notEqual(
      loopback,
      "connected",
      "the server's port on the sandbox's own loopback is not the server",
    );
    assert.notEqual(bridge, "connected", "the docker bridge gateway is unreachable");
    assert.equal(routeLines, 1, "no routes at all (only the header line of /proc/net/route)");
  });

  it("sees gVisor's kernel under runsc and the host's only under runc", async () => {
    const body = await py("kernel-probe", "print(open('/proc/version').read(), end='')");
    const host = readFileSync("/proc/version", "utf8");
    if (fx.sandboxRuntime === "runsc") {
      assert.notEqual(body.result.stdout, host, "Hostile code must see gVisor's kernel, not the host's.");
      assert.match(body.result.stdout, /^Linux version \S+/);
    } else {
      assert.equal(fx.sandboxRuntime, "runc");
      assert.equal(body.result.stdout, host, "under runc the sandbox shares the host's kernel");
    }
  });

  it("sees no engine socket, no host processes, runs unprivileged on a read-only root", async () => {
    const body = await py(
      "host-probe",
      `import ctypes, os
procs = [p for p in os.listdir('/proc') if p.isdigit()]
cmdlines = [open(f'/proc/{p}/cmdline','rb').read() for p in procs]
status = open('/proc/self/status').read()
cap = [l.split()[1] for l in status.splitlines() if l.startswith('CapEff')][0]
nnp = ctypes.CDLL(None).prctl(39, 0, 0, 0, 0)  # PR_GET_NO_NEW_PRIVS (gVisor's status has no NoNewPrivs line)
try:
    open('/usr/lib/x', 'w'); ro = 'writable'
except OSError as e:
    ro = e.strerror
root_ro = 'ro' in [m.split()[3].split(',') for m in open('/proc/mounts') if m.split()[1] == '/'][-1]
print(os.path.exists('/var/run/docker.sock'), os.path.exists('/run/docker.sock'), any(b'dockerd' in c or b'containerd' in c for c in cmdlines), len(procs) < 20, os.getuid(), cap, nnp, root_ro, ro)`,
    );
    assert.equal(
      body.result.stdout.trim(),
      // gVisor checks the directory's permissions before the mount's read-only flag (hostile-code.test.ts tries
      // every directory there is).
      `False False False True 1000 0000000000000000 1 True ${gvisor() ? "Permission denied" : "Read-only file system"}`,
    );
  });

  it("cannot see another session's files", async () => {
    await py("owner-a", "open('/mnt/data/private.txt','w').write('a secret')");
    const a = await py("owner-a", "import json, os\nprint(json.dumps(sorted(os.listdir('/mnt/data'))))");
    assert.deepEqual(JSON.parse(a.result.stdout), ["private.txt"]);
    const b = await py("owner-b", "import json, os\nprint(json.dumps(sorted(os.listdir('/mnt/data'))))");
    assert.deepEqual(JSON.parse(b.result.stdout), [], "a new session starts with an empty /mnt/data");
  });

  it("contains a memory bomb: the interpreter is killed and restarted, the sandbox lives on", async () => {
    // Regression: Docker's "oom" event (any process OOM-killed) was taken for the sandbox dying.
    const before = await fx.exec(POOL, "mem-bomb", "open('/mnt/data/kept.txt', 'w').write('kept')");
    const body = await py("mem-bomb", "x = bytearray(1024 * 1024 * 1024)\nlen(x)");
    assert.equal(body.status, "Failed");
    if (gvisor() && (body.error?.message ?? "").includes("agent closed the connection")) {
      // Not the same under gVisor 20221219: the session's memory is gVisor's, which the host's memory cgroup
      // charges to its sentry, and having no OOM killer of its own, gVisor lets the host's kill the sentry: the
      // whole sandbox, files and all. Still contained: the bystander keeps its sandbox, and the identifier gets
      // a new one.
      await bystanderAnswers();
      await until(
        "the identifier to answer again",
        async () => (await py("mem-bomb", "1")).status === "Succeeded",
      );
      return;
    }
    assert.match(`${body.result.stderr} ${body.error?.message}`, /MemoryError|restarted/);
    await bystanderAnswers();
    const again = await fx.exec(POOL, "mem-bomb", "open('/mnt/data/kept.txt').read()", {
      timeoutInSeconds: 30,
    });
    assert.equal((again.body as ExecBody).result.executionResult, "kept", "files survive: same sandbox");
    assert.equal(again.headers["x-ms-session-guid"], before.headers["x-ms-session-guid"]);
  });

  it("contains a fork bomb", async () => {
    const body = await py(
      "fork-bomb",
      `import os, time
children = 0
try:
    for _ in range(10000):
        if os.fork() == 0:
            time.sleep(30); os._exit(0)
        children += 1
except OSError as e:
    print('stopped at', children, e.strerror)`,
    );
    if (
      gvisor() &&
      body.status === "Failed" &&
      (body.error?.message ?? "").includes("agent closed the connection")
    ) {
      // Not the same under gVisor 20221219 (ptrace platform): each process of the session costs about 5 host
      // tasks (a stub and the sentry's threads tracing it), so the host's pids cgroup refuses one at about 15
      // processes and gVisor's sentry panics ("error initializing first thread"), ending the whole sandbox
      // instead of failing fork() with EAGAIN. Still contained: the bystander keeps its sandbox, and the
      // identifier gets a new one.
      await bystanderAnswers();
      await until(
        "the identifier to answer again",
        async () => (await py("fork-bomb", "1")).status === "Succeeded",
      );
      return;
    }
    assert.match(body.result.stdout, /stopped at \d+ Resource temporarily unavailable/);
    await bystanderAnswers();
  });

  it("contains a disk fill of /mnt/data and /tmp", async () => {
    const body = await py(
      "disk-fill",
      `out = []
for path in ('/mnt/data/fill', '/tmp/fill'):
    try:
        with open(path, 'wb') as f:
            for _ in range(4096):
                f.write(b'0' * 1024 * 1024)
        out.append('unbounded')
    except OSError as e:
        out.append(e.strerror)
print(out)`,
    );
    assert.equal(body.result.stdout.trim(), "['No space left on device', 'No space left on device']");
    await bystanderAnswers();
  });

  it("interrupts a CPU spin at its timeout while the bystander keeps answering", async () => {
    const spin = fx.exec(POOL, "cpu-spin", "while True:\n    pass", { timeoutInSeconds: 2 });
    await bystanderAnswers();
    const r = await spin;
    assert.equal((r.body as ExecBody).error?.code, "ExecutionTimeout");
  });
});
