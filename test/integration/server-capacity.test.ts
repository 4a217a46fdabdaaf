// The server-wide bound on sandboxes (count and committed memory across every pool), and a sandbox that must not
// outlive a failed store write: both on the real engine.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import type { Store, StoredSession } from "../../src/store/store.ts";
import {
  armPoolUrl,
  type RuntimeFixture,
  startRuntimeServer,
  TIGHT_SANDBOX,
  until,
} from "../helpers/runtime.ts";
import { call } from "../helpers/server.ts";

const MiB = 1024 * 1024;
const SANDBOX_MEMORY = TIGHT_SANDBOX.memoryBytes!;
const RG = `cap${Math.random().toString(36).slice(2, 8)}`;
const fixtures: RuntimeFixture[] = [];

after(async () => {
  for (const fx of fixtures) await fx.close();
});

async function session(fx: RuntimeFixture, pool: string, identifier: string) {
  return fx.exec(pool, identifier, "1 + 1");
}

async function stopSession(fx: RuntimeFixture, pool: string, identifier: string): Promise<void> {
  const r = await call(
    "POST",
    `${fx.endpoint(pool)}/.management/stopSession?api-version=2025-10-02-preview&identifier=${identifier}`,
  );
  assert.equal(r.status, 200, r.text);
}

describe("server-wide sandbox capacity", () => {
  it("refuses a pool that could never fit, and answers 429 when every pool together is at the bound", async () => {
    const fx = await startRuntimeServer({
      rg: RG,
      sandbox: TIGHT_SANDBOX,
      capacity: { maxSandboxes: 3, maxSandboxMemoryBytes: 10 * SANDBOX_MEMORY },
    });
    fixtures.push(fx);

    const tooMany = await call("PUT", armPoolUrl(fx.url, "toomany", RG), {
      body: { location: "eastus", properties: { scaleConfiguration: { maxConcurrentSessions: 4 } } },
    });
    assert.equal(tooMany.status, 400, tooMany.text);
    const error = (tooMany.body as { error: { code: string; message: string } }).error;
    assert.equal(error.code, "PoolExceedsServerCapacity");
    assert.match(error.message, /maxConcurrentSessions \(4\).*\(3, --max-sandboxes\)/);

    await fx.createPool("warm", {
      scaleConfiguration: { maxConcurrentSessions: 2, readySessionInstances: 2 },
    });
    await fx.createPool("cold", {
      scaleConfiguration: { maxConcurrentSessions: 3, readySessionInstances: 0 },
    });
    // Two warm sandboxes of "warm" plus one cold session of "cold": the server's three.
    const first = await session(fx, "cold", "cold-one");
    assert.equal(first.status, 200, first.text);
    const refused = await session(fx, "cold", "cold-two");
    assert.equal(refused.status, 429, refused.text);
    assert.equal(refused.headers["x-ms-error-code"], "ServerCapacityReached");
    assert.ok(Number(refused.headers["retry-after"]) > 0);
    assert.match((refused.body as { error: { message: string } }).error.message, /maximum of 3 sandboxes/);
    assert.equal((await fx.containers("cold")).length, 1, "the refused claim started nothing");

    // A session that ends gives its room back.
    await stopSession(fx, "cold", "cold-one");
    await until(
      "cold-two gets a session",
      async () => (await session(fx, "cold", "cold-two")).status === 200,
    );
  });

  it("bounds the memory the sandboxes' limits commit together", async () => {
    const fx = await startRuntimeServer({
      rg: RG,
      sandbox: TIGHT_SANDBOX,
      capacity: { maxSandboxes: 100, maxSandboxMemoryBytes: 2 * SANDBOX_MEMORY + 64 * MiB },
    });
    fixtures.push(fx);
    const tooBig = await call("PUT", armPoolUrl(fx.url, "toobig", RG), {
      body: { location: "eastus", properties: { scaleConfiguration: { maxConcurrentSessions: 3 } } },
    });
    assert.equal(tooBig.status, 400, tooBig.text);
    assert.match(
      (tooBig.body as { error: { message: string } }).error.message,
      /would commit 0\.75 GiB of memory, more than this server commits to sandboxes \(0\.56 GiB, --max-sandbox-memory\)/,
    );
    await fx.createPool("poola", {
      scaleConfiguration: { maxConcurrentSessions: 2, readySessionInstances: 0 },
    });
    await fx.createPool("poolb", {
      scaleConfiguration: { maxConcurrentSessions: 2, readySessionInstances: 0 },
    });
    assert.equal((await session(fx, "poola", "session-x")).status, 200);
    assert.equal((await session(fx, "poolb", "session-y")).status, 200);
    const refused = await session(fx, "poolb", "session-z");
    assert.equal(refused.status, 429, refused.text);
    assert.match((refused.body as { error: { message: string } }).error.message, /--max-sandbox-memory/);
  });
});

describe("a store write that fails after the sandbox was created", () => {
  it("removes the sandbox instead of leaking it", async () => {
    let failNext = false;
    const wrapStore = (store: Store): Store =>
      new Proxy(store, {
        get(target, property, receiver) {
          if (property === "putSession") {
            return (rec: StoredSession, options?: { durable?: boolean }) => {
              // The write that records the new sandbox's id, as a full disk would refuse it.
              if (failNext && rec.sandboxId !== undefined && rec.state === "pending") {
                failNext = false;
                return Promise.reject(
                  Object.assign(new Error("database or disk is full"), {
                    code: "ERR_SQLITE_ERROR",
                    errcode: 13,
                  }),
                );
              }
              return target.putSession(rec, options);
            };
          }
          const value = Reflect.get(target, property, receiver);
          return typeof value === "function" ? value.bind(target) : value;
        },
      });
    const fx = await startRuntimeServer({ rg: RG, sandbox: TIGHT_SANDBOX, wrapStore });
    fixtures.push(fx);
    await fx.createPool("leak", {
      scaleConfiguration: { maxConcurrentSessions: 2, readySessionInstances: 0 },
    });
    failNext = true;
    const failed = await session(fx, "leak", "first");
    assert.ok(failed.status >= 500, `${failed.status} ${failed.text}`);
    assert.equal(failNext, false, "the failing write was reached");
    assert.deepEqual(await fx.containers("leak"), [], "no sandbox outlives the failed write");
    assert.equal((await session(fx, "leak", "first")).status, 200, "the next attempt works");
    assert.equal((await fx.containers("leak")).length, 1);
  });
});
