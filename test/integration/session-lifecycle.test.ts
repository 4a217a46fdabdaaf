// How sessions come and go, against the real engine: warm claims, cold starts, the session limit, one session
// per identifier under concurrency, cooldown expiry (with a moved clock), stopSession, scale changes, sandboxes
// killed from outside, restart adoption, orphan removal and pool deletion.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { ensureBusyboxImage } from "../helpers/busybox-image.ts";
import {
  armPoolUrl,
  dockerIds,
  metric as metricOf,
  type RuntimeFixture,
  startRuntimeServer,
  until,
} from "../helpers/runtime.ts";
import { call, SUB } from "../helpers/server.ts";

const run = promisify(execFile);
let fx: RuntimeFixture;
const RG = `life${Math.random().toString(36).slice(2, 7)}`;

before(async () => {
  fx = await startRuntimeServer({ rg: RG });
});
after(async () => {
  await fx?.close();
});

const sessionUrl = (pool: string, id: string) =>
  `${fx.endpoint(pool)}/session?identifier=${id}&api-version=2025-10-02-preview`;
const result = (r: { body: unknown }) =>
  (r.body as { result?: { executionResult?: unknown } }).result?.executionResult;

const metric = (name: string, labels: string) => metricOf(fx.url, name, labels);

describe("allocation", () => {
  it("claims a warm sandbox for a new identifier and refills the pool", async () => {
    await fx.createPool("warm", {
      scaleConfiguration: { maxConcurrentSessions: 4, readySessionInstances: 2 },
    });
    assert.equal((await fx.containers("warm")).length, 2, "two warm sandboxes after provisioning");
    const r = await fx.exec("warm", "warm-user-1", "1+1");
    assert.equal(r.status, 200);
    assert.equal(result(r), 2);
    assert.ok(r.headers["x-ms-allocation-time"], "a new identifier reports its allocation time");
    assert.equal(await metric("sessionpool_session_claims_total", 'result="hit"'), 1);
    await until("the pool to refill", async () => (await fx.containers("warm")).length === 3);
    const again = await fx.exec("warm", "warm-user-1", "2+2");
    assert.equal(
      again.headers["x-ms-allocation-time"],
      undefined,
      "an existing session is not allocated again",
    );
  });

  it("gives two concurrent first requests for one identifier the same session", async () => {
    const [a, b] = await Promise.all([
      fx.exec("warm", "same-id-1", "import os; os.getpid()"),
      fx.exec("warm", "same-id-1", "1"),
    ]);
    assert.equal(a.status, 200);
    assert.equal(b.status, 200);
    assert.equal(a.headers["x-ms-session-guid"], b.headers["x-ms-session-guid"]);
  });

  it("starts a cold session when no sandbox is warm, and answers 429 at the limit", async () => {
    await fx.createPool("cold", {
      scaleConfiguration: { maxConcurrentSessions: 1, readySessionInstances: 0 },
    });
    assert.equal((await fx.containers("cold")).length, 0);
    const first = await fx.exec("cold", "cold-user-1", "'cold'");
    assert.equal(first.status, 200);
    assert.equal(result(first), "cold");
    assert.equal(await metric("sessionpool_session_claims_total", 'result="miss"'), 1);

    const limited = await fx.exec("cold", "cold-user-2", "1");
    assert.equal(limited.status, 429);
    assert.equal(limited.headers["x-ms-error-code"], "SessionLimitReached");
    assert.ok(Number(limited.headers["retry-after"]) > 0);
    assert.match(
      (limited.body as { error: { message: string } }).error.message,
      /maximum of 1 concurrent sessions/,
    );

    const stop = await call(
      "POST",
      `${fx.endpoint("cold")}/.management/stopSession?identifier=cold-user-1&api-version=2025-10-02-preview`,
    );
    assert.equal(stop.status, 200);
    assert.equal(stop.text, "Session cold-user-1 in session pool cold stopped.");
    assert.equal((await fx.exec("cold", "cold-user-2", "1")).status, 200);
    const unknown = await call(
      "POST",
      `${fx.endpoint("cold")}/.management/stopSession?identifier=nobody-here&api-version=2025-10-02-preview`,
    );
    assert.equal(unknown.status, 404);
  });

  it("reacts to a PATCH of the scale settings", async () => {
    const r = await call("PATCH", armPoolUrl(fx.url, "warm", RG), {
      body: { properties: { scaleConfiguration: { maxConcurrentSessions: 4, readySessionInstances: 1 } } },
    });
    assert.equal(r.status, 202);
    await until("the warm pool to shrink", async () => {
      const warm = (await call("GET", `${fx.url}/metrics`)).text;
      return /sessionpool_pool_ready_sessions\{pool="[^"]*\/warm"\} 1$/m.test(warm);
    });
  });
});

describe("lifecycle", () => {
  it("ends a session after its cooldown; the identifier then gets a fresh one", async () => {
    await fx.createPool("cool", {
      scaleConfiguration: { maxConcurrentSessions: 3, readySessionInstances: 1 },
    });
    await fx.exec("cool", "cool-user", "secret = 7");
    const s = await call("GET", sessionUrl("cool", "cool-user"));
    const sandbox = (s.body as { etag: string }).etag;
    fx.clock.advance(200);
    await fx.exec("cool", "cool-user", "secret"); // a request resets the idle clock
    fx.clock.advance(200);
    assert.equal(
      (await call("GET", sessionUrl("cool", "cool-user"))).status,
      200,
      "still alive 200 s after the last request",
    );
    fx.clock.advance(101);
    await until(
      "the cooldown to end the session",
      async () => (await call("GET", sessionUrl("cool", "cool-user"))).status === 404,
    );
    await until(
      "the sandbox to be removed",
      async () => !(await fx.containers("cool")).some((id) => id === sandbox),
    );
    const fresh = await fx.exec("cool", "cool-user", "'secret' in globals()");
    assert.equal(result(fresh), false);
  });

  it("replaces a session whose sandbox was killed from outside, and says so", async () => {
    await fx.exec("cool", "killed-user", "z = 1");
    const s = await call("GET", sessionUrl("cool", "killed-user"));
    const failures = () => metric("sessionpool_sandbox_failures_total", '/cool",reason="die"');
    const failuresBefore = await failures();
    await run("docker", ["kill", (s.body as { etag: string }).etag]);
    await until(
      "the server to notice",
      async () => (await call("GET", sessionUrl("cool", "killed-user"))).status === 404,
    );
    const r = await fx.exec("cool", "killed-user", "'z' in globals()");
    assert.equal(r.status, 200);
    assert.equal(result(r), false);
    assert.equal(r.headers["x-sessionpool-session-replaced"], "true");
    assert.equal(
      await failures(),
      failuresBefore + 1,
      "the death is counted in sessionpool_sandbox_failures_total",
    );
    const again = await fx.exec("cool", "killed-user", "1");
    assert.equal(again.headers["x-sessionpool-session-replaced"], undefined, "said once, on the new session");
  });
});

describe("restart and deletion", () => {
  it("adopts live sessions with their state and files after a restart, and removes orphans", async () => {
    await fx.createPool("keep", {
      scaleConfiguration: { maxConcurrentSessions: 3, readySessionInstances: 1 },
    });
    await fx.exec(
      "keep",
      "kept-user",
      "kept = 'still here'\nopen('/mnt/data/f.txt', 'w').write('file kept')",
    );
    const before = (await call("GET", sessionUrl("keep", "kept-user"))).body as { etag: string };
    const instance = (
      await run("docker", [
        "inspect",
        "-f",
        '{{index .Config.Labels "io.sessionpool.instance"}}',
        before.etag,
      ])
    ).stdout.trim();
    await fx.stop();
    // An orphan: carries this server's labels but no session of the store.
    const image = await ensureBusyboxImage();
    const orphan = (
      await run("docker", [
        "run",
        "-d",
        "--network",
        "none",
        "--label",
        "io.sessionpool.managed=true",
        "--label",
        `io.sessionpool.instance=${instance}`,
        "--label",
        `io.sessionpool.pool=${`${SUB}/${RG}/keep`.toLowerCase()}`,
        "--label",
        "io.sessionpool.session=not-in-the-store",
        image,
        "sleep",
        "300",
      ])
    ).stdout.trim();
    await fx.restart();
    const r = await fx.exec("keep", "kept-user", "kept + ' / ' + open('/mnt/data/f.txt').read()");
    assert.equal(result(r), "still here / file kept");
    const afterRestart = (await call("GET", sessionUrl("keep", "kept-user"))).body as { etag: string };
    assert.equal(afterRestart.etag, before.etag, "the same sandbox, not a new one");
    assert.equal(
      (await dockerIds(`io.sessionpool.session=not-in-the-store`)).length,
      0,
      `orphan ${orphan} removed`,
    );
  });

  it("destroys every sandbox of a deleted pool", async () => {
    await fx.exec("keep", "another-user", "1");
    assert.ok((await fx.containers("keep")).length >= 2);
    await fx.deletePool("keep");
    assert.deepEqual(await fx.containers("keep"), []);
    const r = await fx.exec("keep", "kept-user", "1");
    assert.equal(r.status, 404);
    assert.equal(r.headers["x-ms-error-code"], "SessionPoolNotFound");
  });
});
