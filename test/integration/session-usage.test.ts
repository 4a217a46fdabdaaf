// GET /session's `usage` on the real engine (docs/session-usage.md): CPU seconds and memory from the engine's
// statistics, /mnt/data bytes from the session's agent, under the runtime the suite runs with (gVisor by default
// where the engine has it; SESSIONPOOL_TEST_RUNTIME=runc for the other). An unknown identifier still answers 404
// and allocates nothing.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type RuntimeFixture, startRuntimeServer } from "../helpers/runtime.ts";
import { call, type Reply } from "../helpers/server.ts";

const API = "api-version=2025-10-02-preview";
const POOL = "usage";
const MB = 1_000_000;
const MiB = 1 << 20;

interface Usage {
  cpuSeconds: number;
  memoryBytes: number;
  diskBytes: number;
  measuredAt: string;
}

let fx: RuntimeFixture;

before(async () => {
  fx = await startRuntimeServer();
  const op = await fx.createPool(POOL, {
    scaleConfiguration: { maxConcurrentSessions: 3, readySessionInstances: 1 },
  });
  assert.equal(op["status"], "Succeeded", JSON.stringify(op));
});

after(async () => {
  await fx?.close();
});

const sessionUrl = (id: string) => `${fx.endpoint(POOL)}/session?identifier=${encodeURIComponent(id)}&${API}`;

async function run(id: string, code: string): Promise<void> {
  const r = await fx.exec(POOL, id, code);
  assert.equal(r.status, 200, r.text);
  assert.equal((r.body as { status: string }).status, "Succeeded", r.text);
}

async function usageOf(id: string): Promise<Usage> {
  const r = await call("GET", sessionUrl(id));
  assert.equal(r.status, 200, r.text);
  return (r.body as { usage: Usage }).usage;
}

/**
 * Work the session does: `fileMB` MB written to /mnt/data, `memoryMiB` MiB allocated, filled (so the pages are
 * really used) and kept in `kept`, and `cpuSeconds` of the interpreter's own CPU time (process_time, not the
 * clock: a busy machine cannot make the loop use less).
 */
const work = (name: string, fileMB: number, memoryMiB: number, cpuSeconds: number) => `
import os, time
with open("/mnt/data/${name}", "wb") as f:
    f.write(os.urandom(${fileMB * MB}))
kept = globals().setdefault("kept", [])
kept.append(bytearray(b"x") * ${memoryMiB * MiB})
t = time.process_time()
while time.process_time() - t < ${cpuSeconds}:
    pass
`;

const identifiers = async (): Promise<string[]> => {
  const r = await call("GET", `${fx.endpoint(POOL)}/listSessions?${API}`);
  assert.equal(r.status, 200, r.text);
  return (r.body as { sessions: { identifier: string }[] }).sessions.map((s) => s.identifier).sort();
};

describe(`GET /session usage (runtime ${process.env["SESSIONPOOL_TEST_RUNTIME"] ?? "auto"})`, () => {
  it("reports cpu seconds, memory and /mnt/data bytes, and numbers that grow with more work", async (t) => {
    const id = "usage-user-1";
    await run(id, work("first.bin", 5, 50, 1));

    const r = await call("GET", sessionUrl(id));
    assert.equal(r.status, 200, r.text);
    const body = r.body as Record<string, unknown> & { usage: Usage };
    // The Azure fields are all still there, unchanged.
    assert.equal(body.identifier, id);
    for (const field of ["createdAt", "lastAccessedAt", "expireAt", "etag"]) {
      assert.equal(typeof body[field], "string", `${field} in ${r.text}`);
    }
    assert.deepEqual(Object.keys(body.usage).sort(), [
      "cpuSeconds",
      "diskBytes",
      "measuredAt",
      "memoryBytes",
    ]);
    const first = body.usage;
    assert.ok(first.diskBytes >= 5 * MB, `diskBytes ${first.diskBytes} after writing 5 MB (${r.text})`);
    assert.ok(first.memoryBytes >= 50 * MiB, `memoryBytes ${first.memoryBytes} holding 50 MiB (${r.text})`);
    assert.ok(first.cpuSeconds > 0.5, `cpuSeconds ${first.cpuSeconds} after a 1 s CPU loop (${r.text})`);
    assert.ok(!Number.isNaN(Date.parse(first.measuredAt)), first.measuredAt);
    assert.equal(new Date(first.measuredAt).toISOString(), first.measuredAt, "an ISO 8601 time");

    await run(id, work("second.bin", 5, 50, 0.5));
    const second = await usageOf(id);
    assert.ok(
      second.diskBytes >= first.diskBytes + 5 * MB,
      `diskBytes ${first.diskBytes} -> ${second.diskBytes} after 5 MB more`,
    );
    assert.ok(
      second.memoryBytes >= first.memoryBytes + 40 * MiB,
      `memoryBytes ${first.memoryBytes} -> ${second.memoryBytes} holding 50 MiB more`,
    );
    assert.ok(
      second.cpuSeconds >= first.cpuSeconds + 0.4,
      `cpuSeconds ${first.cpuSeconds} -> ${second.cpuSeconds} after a 0.5 s CPU loop more`,
    );

    t.diagnostic(
      `sandbox runtime ${fx.sandboxRuntime}: ${JSON.stringify(first)} -> ${JSON.stringify(second)}`,
    );

    // Deleting a file gives its bytes back.
    await run(id, 'import os; os.remove("/mnt/data/second.bin")');
    const third = await usageOf(id);
    assert.ok(
      third.diskBytes <= second.diskBytes - 5 * MB,
      `diskBytes ${second.diskBytes} -> ${third.diskBytes} after removing 5 MB`,
    );
  });

  it("answers 404 for an unknown identifier and allocates nothing", async () => {
    await run("usage-user-2", "1");
    const before = await identifiers();
    const r: Reply = await call("GET", sessionUrl("usage-nobody"));
    assert.equal(r.status, 404, r.text);
    assert.equal(r.headers["x-ms-error-code"], "SessionNotFound");
    const error = (r.body as { error: { code: string; message: string } }).error;
    assert.equal(error.code, "SessionNotFound");
    assert.equal(typeof error.message, "string");
    assert.deepEqual(await identifiers(), before, "listSessions is unchanged");
    assert.ok(!before.includes("usage-nobody"));
  });

  it("leaves usage out of /listSessions", async () => {
    const r = await call("GET", `${fx.endpoint(POOL)}/listSessions?${API}`);
    assert.equal(r.status, 200, r.text);
    const sessions = (r.body as { sessions: Record<string, unknown>[] }).sessions;
    assert.ok(sessions.length > 0);
    for (const s of sessions) assert.equal(s["usage"], undefined, JSON.stringify(s));
  });
});
