// Executions on the real engine: what may wait behind a session's running execution is bounded (per session, per
// pool, and bytes on the whole server) and answered 429/503 with Retry-After past it, then accepted again once
// the line drains; execution ids (the caller's operation-id) belong to one pool's session, never to the server.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  armPoolUrl,
  multipartFile,
  type RuntimeFixture,
  startRuntimeServer,
  until,
} from "../helpers/runtime.ts";
import { ADMIN_TOKEN, call, type Reply } from "../helpers/server.ts";

const MiB = 1024 * 1024;
const API = "api-version=2025-10-02-preview";
const RG = `xlim${Math.random().toString(36).slice(2, 7)}`;
/** Lowered from the defaults so a test fills them with a few sessions; the per-session limit keeps its default. */
const POOL_LIMIT = 20;
const SERVER_BYTES = 8 * MiB;

let fx: RuntimeFixture;

before(async () => {
  fx = await startRuntimeServer({
    rg: RG,
    executionQueue: { maxWaitingExecutionsPerPool: POOL_LIMIT, maxWaitingBytesTotal: SERVER_BYTES },
  });
  await Promise.all([
    fx.createPool("queued", { scaleConfiguration: { maxConcurrentSessions: 6, readySessionInstances: 2 } }),
    fx.createPool("alpha", { scaleConfiguration: { maxConcurrentSessions: 2, readySessionInstances: 1 } }),
    fx.createPool("beta", { scaleConfiguration: { maxConcurrentSessions: 2, readySessionInstances: 1 } }),
  ]);
});
after(async () => {
  await fx?.close();
});

function execUrl(pool: string, identifier: string, id?: string): string {
  return `${fx.endpoint(pool)}/executions${id === undefined ? "" : `/${encodeURIComponent(id)}`}?${API}&identifier=${encodeURIComponent(identifier)}`;
}

function post(
  pool: string,
  identifier: string,
  body: Record<string, unknown>,
  options: { token?: string; operationId?: string } = {},
): Promise<Reply> {
  return call("POST", execUrl(pool, identifier), {
    ...(options.token ? { token: options.token } : {}),
    body: { timeoutInSeconds: 150, ...body },
    ...(options.operationId ? { headers: { "operation-id": options.operationId } } : {}),
  });
}

const queue = (pool: string, identifier: string, code: string) =>
  post(pool, identifier, { code, executionType: "Asynchronous" });

function errorOf(r: Reply): { code: string; message: string } {
  const e = (r.body as { error: { code: string; message: string } }).error;
  assert.equal(r.headers["x-ms-error-code"], e.code, "x-ms-error-code repeats the body's code");
  return e;
}

function assertRefused(r: Reply, status: number, code: string, limit: RegExp): void {
  assert.equal(r.status, status, r.text);
  const e = errorOf(r);
  assert.equal(e.code, code);
  assert.match(e.message, limit, "the message names the limit");
  assert.match(r.headers["retry-after"] ?? "", /^[1-9]\d*$/, "Retry-After in whole seconds");
}

async function statusOf(pool: string, identifier: string, id: string, token = ADMIN_TOKEN) {
  const r = await call("GET", execUrl(pool, identifier, id), { token });
  assert.equal(r.status, 200, r.text);
  return r.body as { status: string; result?: { executionResult?: unknown; stdout?: string } };
}

/** Waits, by polling its status, until the execution has finished; returns its final body. */
async function finished(pool: string, identifier: string, id: string) {
  let last = await statusOf(pool, identifier, id);
  await until(`execution ${id} to finish`, async () => {
    last = await statusOf(pool, identifier, id);
    return last.status !== "Running";
  });
  return last;
}

/**
 * An asynchronous execution that sleeps (time.sleep) until the test uploads its release file: it holds the
 * session's interpreter for exactly as long as the test needs, with no wall-clock guess. File requests are
 * answered while an execution runs.
 */
async function holdSession(pool: string, identifier: string, name: string) {
  const flag = `release-${name}`;
  const r = await queue(
    pool,
    identifier,
    `import os, time\nwhile not os.path.exists('/mnt/data/${flag}'):\n    time.sleep(0.05)\n'released'`,
  );
  assert.equal(r.status, 202, r.text);
  const id = (r.body as { id: string }).id;
  return {
    id,
    async release() {
      const { body, contentType } = multipartFile(flag, "go");
      const up = await call("POST", `${fx.endpoint(pool)}/files?${API}&identifier=${identifier}`, {
        raw: body,
        headers: { "content-type": contentType },
      });
      assert.equal(up.status, 200, up.text);
      const done = await finished(pool, identifier, id);
      assert.equal(done.status, "Succeeded", JSON.stringify(done));
    },
  };
}

async function poolToken(pool: string): Promise<string> {
  const r = await call("POST", armPoolUrl(fx.url, pool, RG).replace("?", "/getAuthtoken?"));
  assert.equal(r.status, 200, r.text);
  return (r.body as { properties: { token: string } }).properties.token;
}

describe("executions waiting for a session", () => {
  it("queues at most 16 behind a running one, answers 429 with Retry-After past it, and accepts again once they have run", async () => {
    const who = "line-user";
    const holder = await holdSession("queued", who, "line");
    const queued: string[] = [];
    for (let i = 0; i < 16; i++) {
      const r = await queue("queued", who, `${i}`);
      assert.equal(r.status, 202, `execution ${i} waits: ${r.text}`);
      assert.equal((r.body as { status: string }).status, "Running");
      queued.push((r.body as { id: string }).id);
    }
    assertRefused(
      await queue("queued", who, "16"),
      429,
      "ExecutionQueueFull",
      /maxWaitingExecutionsPerSession 16/,
    );
    // A synchronous execution would wait just the same, holding its code: refused too.
    assertRefused(
      await post("queued", who, { code: "'sync'" }),
      429,
      "ExecutionQueueFull",
      /maxWaitingExecutionsPerSession/,
    );
    // Another session of the pool has its own line.
    const elsewhere = await post("queued", "line-neighbour", { code: "6*7" });
    assert.equal(elsewhere.status, 200, elsewhere.text);
    assert.equal((elsewhere.body as { result: { executionResult: unknown } }).result.executionResult, 42);
    assert.equal((await statusOf("queued", who, holder.id)).status, "Running", "the holder still runs");

    await holder.release();
    // The waiting ones run in the order they came, one at a time.
    for (const [i, id] of queued.entries()) {
      const done = await finished("queued", who, id);
      assert.equal(done.status, "Succeeded", JSON.stringify(done));
      assert.equal(done.result?.executionResult, i);
    }
    // The line is empty again: a full one is accepted as before.
    const again = await holdSession("queued", who, "line-again");
    for (let i = 0; i < 16; i++) assert.equal((await queue("queued", who, `${i}`)).status, 202);
    assert.equal((await queue("queued", who, "16")).status, 429);
    await again.release();
  });

  it("counts a synchronous execution waiting for the session against the same limit", async () => {
    const who = "sync-user";
    const holder = await holdSession("queued", who, "sync");
    for (let i = 0; i < 15; i++) assert.equal((await queue("queued", who, `${i}`)).status, 202);
    // The synchronous one waits with its request open; its operation-id makes its record visible while it does.
    const waiting = post("queued", who, { code: "'sync done'" }, { operationId: "sync-waiter" });
    await until("the synchronous execution to be waiting", async () => {
      const r = await call("GET", execUrl("queued", who, "sync-waiter"));
      return r.status === 200;
    });
    assertRefused(
      await queue("queued", who, "'one too many'"),
      429,
      "ExecutionQueueFull",
      /maxWaitingExecutionsPerSession 16/,
    );
    await holder.release();
    const sync = await waiting;
    assert.equal(sync.status, 200, sync.text);
    assert.equal((sync.body as { result: { executionResult: unknown } }).result.executionResult, "sync done");
  });

  it("bounds what waits across a pool's sessions", async () => {
    const first = await holdSession("queued", "pool-user-1", "pool-1");
    const second = await holdSession("queued", "pool-user-2", "pool-2");
    for (let i = 0; i < 16; i++) assert.equal((await queue("queued", "pool-user-1", `${i}`)).status, 202);
    for (let i = 0; i < POOL_LIMIT - 16; i++)
      assert.equal((await queue("queued", "pool-user-2", `${i}`)).status, 202);
    assertRefused(
      await queue("queued", "pool-user-2", "'past the pool'"),
      429,
      "ExecutionQueueFull",
      new RegExp(`maxWaitingExecutionsPerPool ${POOL_LIMIT}`),
    );
    // Another pool's sessions are not held up by this one's line.
    const other = await post("beta", "pool-user-2", { code: "1+1" });
    assert.equal(other.status, 200, other.text);
    await first.release();
    await second.release();
  });

  it("refuses code past the server's byte budget with 503 ServerBusy, and accepts it once the waiting code has run", async () => {
    const who = "bytes-user";
    // 3 MiB of code each: two wait within the 8 MiB budget, a third would pass it.
    const big = (tag: string) => `# ${"x".repeat(3 * MiB)}\n'${tag}'`;
    const holder = await holdSession("alpha", who, "bytes");
    const accepted: string[] = [];
    for (const tag of ["a", "b", "c", "d"]) {
      const r = await queue("alpha", who, big(tag));
      if (r.status !== 202) {
        assertRefused(r, 503, "ServerBusy", /maxWaitingBytesTotal \(8388608 bytes\)/);
        break;
      }
      accepted.push((r.body as { id: string }).id);
    }
    assert.equal(accepted.length, 2, "the server holds no more waiting code than its budget");
    await holder.release();
    for (const id of accepted) assert.equal((await finished("alpha", who, id)).status, "Succeeded");
    const later = await holdSession("alpha", who, "bytes-again");
    assert.equal((await queue("alpha", who, big("e"))).status, 202, "accepted again once the code has run");
    await later.release();
  });
});

describe("execution ids", () => {
  it("belong to one pool: another pool's token neither sees nor blocks them, and may use the same id", async () => {
    const [tokenA, tokenB] = await Promise.all([poolToken("alpha"), poolToken("beta")]);
    const who = "shared-name";
    const id = "caller-chosen-id-1";
    const inA = await post("alpha", who, { code: "'from A'" }, { token: tokenA, operationId: id });
    assert.equal(inA.status, 200, inA.text);
    assert.equal(inA.headers["operation-id"], id);

    const peek = await call("GET", execUrl("beta", who, id), { token: tokenB });
    assert.equal(peek.status, 404, peek.text);
    assert.equal(errorOf(peek).code, "ExecutionNotFound");

    const inB = await post("beta", who, { code: "'from B'" }, { token: tokenB, operationId: id });
    assert.equal(inB.status, 200, `pool B may use the same id: ${inB.text}`);
    assert.equal((inB.body as { result: { executionResult: unknown } }).result.executionResult, "from B");

    const aStill = await statusOf("alpha", who, id, tokenA);
    assert.equal(aStill.result?.executionResult, "from A", "pool A's record is its own");
    const bOwn = await statusOf("beta", who, id, tokenB);
    assert.equal(bOwn.result?.executionResult, "from B");

    // Within one session an id still names one execution.
    const reused = await post("beta", who, { code: "1" }, { token: tokenB, operationId: id });
    assert.equal(reused.status, 400, reused.text);
    assert.equal(errorOf(reused).code, "DuplicateOperationId");
  });
});
