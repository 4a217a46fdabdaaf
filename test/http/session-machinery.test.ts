// The session machinery without an engine (test/helpers/fake-driver.ts): the warm-pool reconciler under a lagging
// or failing driver, single-flight claims, and adoption after a restart. Real HTTP and a real SQLite file; seconds.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { dockerBackend } from "../../src/backend-wiring.ts";
import { FakeSandboxDriver } from "../helpers/fake-driver.ts";
import {
  call,
  poolUrl,
  SUB,
  startTestServer,
  type TestServer,
  tempDir,
  waitForOperation,
} from "../helpers/server.ts";

const servers: TestServer[] = [];
const drivers = new Set<FakeSandboxDriver>();
after(async () => {
  for (const s of servers) await s.close().catch(() => {});
  for (const d of drivers) d.dispose();
});

async function serve(driver: FakeSandboxDriver, dataDir = tempDir()): Promise<TestServer> {
  drivers.add(driver);
  const s = await startTestServer({ dataDir, keepDataDir: true, backend: dockerBackend({ driver }) });
  servers.push(s);
  return s;
}

async function until(what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(5);
  }
}

function putPool(s: TestServer, name: string, scale: { max: number; ready: number }) {
  return call("PUT", poolUrl(s.url, name), {
    body: {
      location: "eastus",
      properties: {
        scaleConfiguration: { maxConcurrentSessions: scale.max, readySessionInstances: scale.ready },
      },
    },
  });
}

const endpoint = (s: TestServer, pool: string) =>
  `${s.url}/subscriptions/${SUB}/resourceGroups/rg1/sessionPools/${pool}`;
const exec = (s: TestServer, pool: string, identifier: string) =>
  call("POST", `${endpoint(s, pool)}/executions?api-version=2025-10-02-preview&identifier=${identifier}`, {
    body: { code: "1+1" },
  });

describe("warm-pool reconciler", () => {
  it("creates exactly readySessionInstances while creations lag, however often it is woken", async () => {
    const driver = new FakeSandboxDriver();
    const s = await serve(driver);
    driver.hold = true;
    const put = await putPool(s, "lagging", { max: 10, ready: 3 });
    assert.equal(put.status, 201, put.text);
    await until("three creates are in flight", () => driver.held.length === 3);
    // Wake the reconciler again and again while its creates are pending: a PATCH that changes nothing that
    // matters, and claims that cold-start beside it.
    const patch = await call("PATCH", poolUrl(s.url, "lagging"), {
      body: { properties: { scaleConfiguration: { maxConcurrentSessions: 9 } } },
      headers: { "content-type": "application/merge-patch+json" },
    });
    assert.equal(patch.status, 202, patch.text);
    await sleep(100); // nothing to wait for: the point is that nothing more is created meanwhile
    assert.equal(driver.creates.length, 3, "no create beyond the three pending ones");
    driver.hold = false;
    for (const release of driver.held.splice(0)) release();
    assert.equal((await waitForOperation(put.headers["azure-asyncoperation"]!))["status"], "Succeeded");
    await waitForOperation(patch.headers["azure-asyncoperation"]!);
    assert.equal(driver.live.length, 3);
    assert.equal(driver.creates.length, 3);
  });

  it("a driver that fails: provisioning fails with its reason and leaves no sandbox behind", async () => {
    const driver = new FakeSandboxDriver();
    const s = await serve(driver);
    driver.failCreates = Number.POSITIVE_INFINITY;
    const put = await putPool(s, "failing", { max: 4, ready: 2 });
    const op = await waitForOperation(put.headers["azure-asyncoperation"]!);
    assert.equal(op["status"], "Failed");
    assert.match(JSON.stringify(op["error"]), /the fake engine refused to create the sandbox/);
    assert.equal(driver.live.length, 0);
    // A failed pool waits for its next PUT instead of crash-looping sandboxes.
    const tried = driver.creates.length;
    await sleep(300);
    assert.equal(driver.creates.length, tried, "no retries of a Failed pool");
    driver.failCreates = 0;
    const again = await putPool(s, "failing", { max: 4, ready: 2 });
    assert.equal((await waitForOperation(again.headers["azure-asyncoperation"]!))["status"], "Succeeded");
    assert.equal(driver.live.length, 2);
  });
});

describe("claims", () => {
  it("concurrent first requests for one identifier share one sandbox; a warm claim creates nothing", async () => {
    const driver = new FakeSandboxDriver();
    const s = await serve(driver);
    const put = await putPool(s, "claims", { max: 4, ready: 1 });
    await waitForOperation(put.headers["azure-asyncoperation"]!);
    assert.equal(driver.creates.length, 1);
    driver.hold = true; // the refill after the claim waits, so what the claim itself did is what we count
    const answers = await Promise.all(Array.from({ length: 5 }, () => exec(s, "claims", "same-identifier")));
    for (const a of answers) assert.equal(a.status, 200, a.text);
    assert.equal(new Set(answers.map((a) => a.headers["x-ms-session-guid"])).size, 1);
    assert.ok(driver.creates.length <= 2, "the claim took the warm sandbox; at most the refill is creating");
    driver.hold = false;
    for (const release of driver.held.splice(0)) release();
  });

  it("an identifier whose sandbox died gets a fresh one and is told so", async () => {
    const driver = new FakeSandboxDriver();
    const s = await serve(driver);
    const put = await putPool(s, "dying", { max: 4, ready: 1 });
    await waitForOperation(put.headers["azure-asyncoperation"]!);
    const first = await exec(s, "dying", "doomed");
    assert.equal(first.status, 200);
    const guid = first.headers["x-ms-session-guid"];
    for (const i of driver.live) driver.kill(i.id);
    await until("the dead sandboxes are gone", () => driver.live.every((i) => i.state === "running"));
    const second = await exec(s, "dying", "doomed");
    assert.equal(second.status, 200, second.text);
    assert.notEqual(second.headers["x-ms-session-guid"], guid);
    assert.equal(second.headers["x-sessionpool-session-replaced"], "true");
  });
});

describe("personalised claims (PUT /session)", () => {
  const claim = (s: TestServer, pool: string, identifier: string) =>
    call("PUT", `${endpoint(s, pool)}/session?api-version=2025-10-02-preview&identifier=${identifier}`, {
      body: { environmentVariables: [{ name: "TENANT", value: "contoso" }] },
    });

  it("take the warm sandbox: no engine call on the request's path", async () => {
    const driver = new FakeSandboxDriver();
    const s = await serve(driver);
    const put = await putPool(s, "envwarm", { max: 4, ready: 1 });
    await waitForOperation(put.headers["azure-asyncoperation"]!);
    const [warm] = driver.live;
    driver.hold = true; // the refill after the claim waits: what the claim itself did is what we count
    const calls = driver.creates.length;
    const r = await claim(s, "envwarm", "personal");
    assert.equal(r.status, 201, r.text);
    assert.equal((r.body as { etag: string }).etag, warm!.id, "the warm sandbox");
    assert.ok(driver.creates.length <= calls + 1, "at most the refill is creating");
    driver.hold = false;
    for (const release of driver.held.splice(0)) release();
  });

  it("a sandbox whose agent cannot set the variables is ended; the identifier's next request is told", async () => {
    const driver = new FakeSandboxDriver();
    const s = await serve(driver);
    const put = await putPool(s, "envfail", { max: 4, ready: 1 });
    await waitForOperation(put.headers["azure-asyncoperation"]!);
    driver.refuseEnvironment = true;
    const r = await claim(s, "envfail", "personal");
    assert.equal(r.status, 201, r.text);
    const sessionUrl = `${endpoint(s, "envfail")}/session?api-version=2025-10-02-preview&identifier=personal`;
    await until("the session is ended", async () => (await call("GET", sessionUrl)).status === 404);
    driver.refuseEnvironment = false;
    const next = await exec(s, "envfail", "personal");
    assert.equal(next.status, 200, next.text);
    assert.equal(next.headers["x-sessionpool-session-replaced"], "true");
  });
});

describe("adoption after a restart", () => {
  it("keeps sandboxes the store knows (their agents attach again with their keys) and removes the others", async () => {
    const driver = new FakeSandboxDriver();
    const dataDir = tempDir();
    let s = await serve(driver, dataDir);
    const put = await putPool(s, "adopted", { max: 4, ready: 1 });
    await waitForOperation(put.headers["azure-asyncoperation"]!);
    const first = await exec(s, "adopted", "survivor");
    assert.equal(first.status, 200, first.text);
    await until("the pool refilled", async () => {
      const metrics = await call("GET", `${s.url}/metrics`);
      return /sessionpool_pool_ready_sessions\{pool="[^"]*adopted"\} 1/.test(metrics.text);
    });
    const before = driver.live.map((i) => i.id).sort();
    const instance = driver.live[0]!.labels["io.sessionpool.instance"]!;
    await s.close();

    // While the server is away: an orphan of this instance appears, with no record in the store.
    const orphan = driver.add({ "io.sessionpool.managed": "true", "io.sessionpool.instance": instance });
    s = await serve(driver, dataDir);
    const again = await exec(s, "adopted", "survivor");
    assert.equal(again.status, 200, again.text);
    assert.equal(again.headers["x-ms-session-guid"], first.headers["x-ms-session-guid"], "the same session");
    assert.equal(again.headers["x-sessionpool-session-replaced"], undefined);
    assert.deepEqual(
      driver.live.map((i) => i.id).sort(),
      before,
      `the orphan ${orphan.id} is gone, nothing new`,
    );
  });
});
