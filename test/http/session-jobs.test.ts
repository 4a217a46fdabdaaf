// The session machinery's background jobs without an engine (test/helpers/fake-driver.ts): the reaper (cooldown,
// requests in flight, maxAlivePeriod), Liveness probes of custom containers, and the engine watch (down and back,
// sandboxes lost meanwhile, die and oom events). Real HTTP and a real SQLite file; the clock the reaper reads is
// the server's `now`, moved by the tests instead of waited for. Seconds.
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { dockerBackend } from "../../src/backend-wiring.ts";
import { FakeSandboxDriver } from "../helpers/fake-driver.ts";
import {
  call,
  poolUrl,
  type Reply,
  SUB,
  startTestServer,
  type TestServer,
  waitForOperation,
} from "../helpers/server.ts";

const API = "api-version=2025-10-02-preview";
const ENV = `/subscriptions/${SUB}/resourceGroups/rg1/providers/Microsoft.App/managedEnvironments/env`;

const servers: TestServer[] = [];
const drivers = new Set<FakeSandboxDriver>();
const webs: FakeWebapp[] = [];
after(async () => {
  // Held requests first (a test that failed midway left them): a server closing waits for the exchanges it proxies.
  for (const w of webs) w.release();
  for (const s of servers) await s.close().catch(() => {});
  for (const d of drivers) d.dispose();
  for (const w of webs) {
    w.server.closeAllConnections();
    await new Promise((resolve) => w.server.close(resolve));
  }
});

/** A clock the test moves: the server reads it through `now` (the reaper, the idle clock). */
class Clock {
  #ms = Date.now();
  readonly now = () => new Date(this.#ms);
  advance(seconds: number): void {
    this.#ms += seconds * 1000;
  }
}

async function serve(driver: FakeSandboxDriver, clock?: Clock): Promise<TestServer> {
  drivers.add(driver);
  const s = await startTestServer({
    backend: dockerBackend({ driver, reapIntervalMs: 20, probeIntervalMs: 50, engineCheckIntervalMs: 50 }),
    ...(clock ? { now: clock.now } : {}),
  });
  servers.push(s);
  return s;
}

async function until(what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 8_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(10);
  }
}

/**
 * What a custom container serves, on 127.0.0.1 (every fake custom sandbox's address): /hold answers only when
 * released, /health answers 200 or 500 as `healthy` says (and counts its callers), anything else "ok".
 */
class FakeWebapp {
  readonly server: Server;
  healthy = true;
  healthChecks = 0;
  readonly #held: ServerResponse[] = [];

  constructor() {
    this.server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const path = new URL(req.url ?? "/", "http://webapp.invalid").pathname;
      if (path === "/hold") this.#held.push(res);
      else if (path === "/health") {
        this.healthChecks++;
        res.statusCode = this.healthy ? 200 : 500;
        res.end(this.healthy ? "healthy" : "sick");
      } else res.end("ok");
    });
    webs.push(this);
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  get holding(): number {
    return this.#held.length;
  }

  release(): void {
    for (const res of this.#held.splice(0)) res.end("released");
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    return this;
  }
}

async function putPool(s: TestServer, name: string, properties: Record<string, unknown>): Promise<void> {
  const put = await call("PUT", poolUrl(s.url, name), { body: { location: "eastus", properties } });
  assert.equal(put.status, 201, put.text);
  const op = await waitForOperation(put.headers["azure-asyncoperation"]!);
  assert.equal(op["status"], "Succeeded", JSON.stringify(op));
}

function customPool(
  web: FakeWebapp,
  lifecycle: Record<string, unknown>,
  extra: { probes?: unknown[] } = {},
): Record<string, unknown> {
  return {
    containerType: "CustomContainer",
    environmentId: ENV,
    scaleConfiguration: { maxConcurrentSessions: 3, readySessionInstances: 1 },
    dynamicPoolConfiguration: { lifecycleConfiguration: lifecycle },
    customContainerTemplate: {
      containers: [
        {
          image: "example.invalid/webapp:1",
          name: "webapp",
          resources: { cpu: 0.25, memory: "0.5Gi" },
          ...(extra.probes ? { probes: extra.probes } : {}),
        },
      ],
      ingress: { targetPort: web.port },
    },
  };
}

const endpoint = (s: TestServer, pool: string) =>
  `${s.url}/subscriptions/${SUB}/resourceGroups/rg1/sessionPools/${pool}`;
const exec = (s: TestServer, pool: string, identifier: string) =>
  call("POST", `${endpoint(s, pool)}/executions?${API}&identifier=${identifier}`, { body: { code: "1+1" } });
const proxied = (s: TestServer, pool: string, path: string, identifier: string) =>
  call("GET", `${endpoint(s, pool)}${path}?identifier=${identifier}`);

/** identifier -> sandbox id (the `etag` listSessions reports), as the data plane lists them. */
async function listed(s: TestServer, pool: string): Promise<Map<string, string>> {
  const r = await call("GET", `${endpoint(s, pool)}/listSessions?${API}`);
  assert.equal(r.status, 200, r.text);
  const sessions = (r.body as { sessions: { identifier: string; etag: string }[] }).sessions;
  return new Map(sessions.map((x) => [x.identifier, x.etag]));
}

async function metrics(s: TestServer): Promise<string> {
  const r = await call("GET", `${s.url}/metrics`);
  assert.equal(r.status, 200, r.text);
  return r.text;
}

/**
 * The value of one sample of a metric (undefined when absent), e.g. metric(text, "x_total", { reason: "die" }).
 * A `pool` label is the pool's key (subscription/resource group/name): the name matches its end.
 */
function metric(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split("\n")) {
    const sample = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!sample || sample[1] !== name) continue;
    const has = new Map([...(sample[2] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    const matches = Object.entries(labels).every(([k, v]) => {
      const value = has.get(k);
      return value === v || (k === "pool" && value?.endsWith(`/${v}`));
    });
    if (matches) return Number(sample[3]);
  }
  return undefined;
}

function ok(r: Reply, what: string): Reply {
  assert.equal(r.status, 200, `${what}: ${r.status} ${r.text}`);
  return r;
}

/**
 * Claims a custom container session by a first request. A custom session has no x-ms-session-guid, so its sandbox
 * is found in the driver: a pool with readySessionInstances 1 has one warm sandbox nobody holds, and a warm claim
 * takes it.
 */
async function claimCustom(
  s: TestServer,
  driver: FakeSandboxDriver,
  pool: string,
  identifier: string,
  taken: Set<string>,
): Promise<string> {
  let warm: string[] = [];
  await until(`${pool} has its warm sandbox`, async () => {
    warm = driver.live.map((i) => i.id).filter((id) => !taken.has(id));
    return warm.length === 1 && metric(await metrics(s), "sessionpool_pool_ready_sessions", { pool }) === 1;
  });
  const r = ok(await proxied(s, pool, "/hello", identifier), `the first request of ${identifier}`);
  assert.equal(r.text, "ok");
  taken.add(warm[0]!);
  return warm[0]!;
}

describe("reaper", () => {
  it("a Timed session ends after its cooldown: gone from listSessions, its sandbox removed, the pool refilled", async () => {
    const clock = new Clock();
    const driver = new FakeSandboxDriver();
    const s = await serve(driver, clock);
    await putPool(s, "timed", {
      scaleConfiguration: { maxConcurrentSessions: 2, readySessionInstances: 1 },
      dynamicPoolConfiguration: {
        lifecycleConfiguration: { lifecycleType: "Timed", cooldownPeriodInSeconds: 300 },
      },
    });
    // Two sessions fill the pool (max 2), so nothing is warm: the refill after an end is the reaper's doing.
    const kept = ok(await exec(s, "timed", "kept-user"), "kept-user").headers["x-ms-session-guid"]!;
    await until("the first claim is refilled", () => driver.live.length === 2);
    const idle = ok(await exec(s, "timed", "idle-user"), "idle-user").headers["x-ms-session-guid"]!;
    assert.deepEqual([...(await listed(s, "timed")).keys()], ["kept-user", "idle-user"]);
    assert.equal(driver.live.length, 2, "a full pool keeps nothing warm");

    clock.advance(200);
    ok(await exec(s, "timed", "kept-user"), "kept-user's second request"); // its idle clock restarts
    clock.advance(150); // idle-user: 350 s idle, past its cooldown; kept-user: 150 s
    // kept-user comes first in every reaper pass: by the time idle-user is gone, kept-user was judged with the
    // same clock and kept.
    await until("idle-user's session is gone", async () => !(await listed(s, "timed")).has("idle-user"));
    assert.equal((await listed(s, "timed")).get("kept-user"), kept);
    assert.ok(!driver.sandboxes.has(idle), "the expired session's sandbox is removed");
    await until("the pool refills its warm sandbox", async () => {
      const text = await metrics(s);
      return (
        metric(text, "sessionpool_pool_ready_sessions", { pool: "timed" }) === 1 && driver.live.length === 2
      );
    });
    assert.equal(
      metric(await metrics(s), "sessionpool_sessions_ended_total", { pool: "timed", reason: "expired" }),
      1,
    );

    // The identifier's next request starts a new session; an expiry is no replacement to warn about.
    const again = ok(await exec(s, "timed", "idle-user"), "idle-user again");
    assert.notEqual(again.headers["x-ms-session-guid"], idle);
    assert.equal(again.headers["x-sessionpool-session-replaced"], undefined);
  });

  it("a request in flight keeps a Timed session from expiring; once it ends the idle clock restarts", async () => {
    const clock = new Clock();
    const driver = new FakeSandboxDriver();
    const web = await new FakeWebapp().listen();
    const s = await serve(driver, clock);
    await putPool(s, "busy", customPool(web, { lifecycleType: "Timed", cooldownPeriodInSeconds: 300 }));
    const taken = new Set<string>();
    const busy = await claimCustom(s, driver, "busy", "busy-user", taken);
    const idle = await claimCustom(s, driver, "busy", "idle-user", taken);

    const held = proxied(s, "busy", "/hold", "busy-user");
    await until("the held request reaches the container", () => web.holding === 1);
    clock.advance(301); // both sessions are past their cooldown by the clock
    // busy-user was allocated first, so every reaper pass judges it before idle-user.
    await until("idle-user's sandbox is removed", () => !driver.sandboxes.has(idle));
    assert.ok(driver.sandboxes.has(busy), "a session with a request open is not idle");
    assert.equal(metric(await metrics(s), "sessionpool_pool_allocated_sessions", { pool: "busy" }), 1);

    // A session claimed now (301 s) expires before busy-user's, whose idle clock restarts when its request ends
    // (311 s); busy-user still comes first in every pass.
    const late = await claimCustom(s, driver, "busy", "late-user", taken);
    clock.advance(10);
    web.release();
    const answer = ok(await held, "the held request");
    assert.equal(answer.text, "released");
    clock.advance(295); // 606 s: late-user idle 305 s, busy-user idle 295 s since its request ended
    await until("late-user's sandbox is removed", () => !driver.sandboxes.has(late));
    assert.ok(driver.sandboxes.has(busy), "busy-user's idle clock restarted when its request ended");
    clock.advance(10);
    await until("busy-user's session expires once idle", () => !driver.sandboxes.has(busy));
    assert.equal(
      metric(await metrics(s), "sessionpool_sessions_ended_total", { pool: "busy", reason: "expired" }),
      3,
    );
  });

  it("OnContainerExit: maxAlivePeriodInSeconds ends a session even with a request in flight", async () => {
    const clock = new Clock();
    const driver = new FakeSandboxDriver();
    const web = await new FakeWebapp().listen();
    const s = await serve(driver, clock);
    await putPool(
      s,
      "capped",
      customPool(web, { lifecycleType: "OnContainerExit", maxAlivePeriodInSeconds: 300 }),
    );
    const taken = new Set<string>();
    const capped = await claimCustom(s, driver, "capped", "capped-user", taken);
    const held = proxied(s, "capped", "/hold", "capped-user").catch(() => undefined);
    await until("the held request reaches the container", () => web.holding === 1);
    clock.advance(299);
    ok(await proxied(s, "capped", "/hello", "capped-user"), "a request just before the cap");
    clock.advance(2); // 301 s after allocation; only 2 s after the last request
    await until("the capped session ends", () => !driver.sandboxes.has(capped));
    assert.equal(
      metric(await metrics(s), "sessionpool_sessions_ended_total", { pool: "capped", reason: "expired" }),
      1,
    );
    web.release();
    await held;
  });
});

describe("liveness probes", () => {
  it("passing probes replace nothing; failureThreshold failures in a row replace the sandbox, and the caller is told", async () => {
    const driver = new FakeSandboxDriver();
    const web = await new FakeWebapp().listen();
    const s = await serve(driver);
    const probes = [
      {
        type: "Liveness",
        httpGet: { path: "/health", port: web.port },
        periodSeconds: 1,
        failureThreshold: 2,
      },
    ];
    await putPool(
      s,
      "probed",
      customPool(web, { lifecycleType: "Timed", cooldownPeriodInSeconds: 300 }, { probes }),
    );
    const sandbox = await claimCustom(s, driver, "probed", "probed-user", new Set());
    await until("the refill is warm", () => driver.live.length === 2);
    const created = driver.creates.length;

    // Two sandboxes probed, each more often than failureThreshold, every probe passing.
    await until("six probes have passed", () => web.healthChecks >= 6);
    assert.equal(driver.creates.length, created, "no sandbox replaced");
    assert.ok(driver.sandboxes.has(sandbox));
    const same = ok(await proxied(s, "probed", "/hello", "probed-user"), "probed-user while healthy");
    assert.equal(same.headers["x-sessionpool-session-replaced"], undefined);
    assert.equal(
      metric(await metrics(s), "sessionpool_sandbox_failures_total", { pool: "probed", reason: "liveness" }),
      undefined,
    );

    web.healthy = false;
    await until("the failing sandbox is removed", () => !driver.sandboxes.has(sandbox));
    web.healthy = true;
    const replaced = ok(
      await proxied(s, "probed", "/hello", "probed-user"),
      "probed-user after the replacement",
    );
    assert.equal(replaced.headers["x-sessionpool-session-replaced"], "true");
    // The replacement is a warm sandbox or a new one; either way the pool makes up for the removed one.
    await until("a new sandbox is created", () => driver.creates.length > created);
    assert.ok(
      (metric(await metrics(s), "sessionpool_sandbox_failures_total", {
        pool: "probed",
        reason: "liveness",
      }) ?? 0) >= 1,
    );
    const after = ok(await proxied(s, "probed", "/hello", "probed-user"), "probed-user once more");
    assert.equal(after.headers["x-sessionpool-session-replaced"], undefined, "said once");
  });
});

describe("engine watch", () => {
  it("the engine going away is reported; when it is back, sessions whose sandbox went meanwhile end as lost", async () => {
    const driver = new FakeSandboxDriver();
    const s = await serve(driver);
    await putPool(s, "watched", {
      scaleConfiguration: { maxConcurrentSessions: 5, readySessionInstances: 0 },
    });
    const stays = ok(await exec(s, "watched", "stays-user"), "stays-user").headers["x-ms-session-guid"]!;
    const lost = ok(await exec(s, "watched", "lost-user"), "lost-user").headers["x-ms-session-guid"]!;
    const healthy = await call("GET", `${s.url}/healthz`, { token: null });
    // On a shared store (the PostgreSQL pass) the server is a fleet of one and says so too.
    const { fleet: _fleet, ...health } = healthy.body as Record<string, unknown>;
    assert.deepEqual(health, { status: "ok", engine: "up", sandboxRuntime: "runc" });

    driver.down = "connect ECONNREFUSED /var/run/docker.sock";
    await until("/healthz reports the engine down", async () => {
      const r = await call("GET", `${s.url}/healthz`, { token: null });
      return (r.body as { engine: string }).engine === "down";
    });
    const degraded = await call("GET", `${s.url}/healthz`, { token: null });
    assert.equal(
      degraded.status,
      200,
      "liveness stays 200: restarting the server would not bring the engine back",
    );
    const body = degraded.body as Record<string, unknown>;
    assert.equal(body["status"], "degraded");
    assert.match(String(body["reason"]), /ECONNREFUSED/);
    assert.equal((await call("GET", `${s.url}/readyz`, { token: null })).status, 503);
    assert.equal(metric(await metrics(s), "sessionpool_engine_up"), 0);
    // A new identifier needs the engine: the documented 503. A running session's agent still answers.
    const refused = await exec(s, "watched", "new-user");
    assert.equal(refused.status, 503, refused.text);
    assert.equal(refused.headers["x-ms-error-code"], "RuntimeUnavailable");
    assert.equal((refused.body as { error: { code: string } }).error.code, "RuntimeUnavailable");
    assert.equal(
      ok(await exec(s, "watched", "stays-user"), "stays-user, engine down").headers["x-ms-session-guid"],
      stays,
    );

    // Meanwhile lost-user's sandbox goes without an event (an engine restart takes its containers along).
    driver.vanish(lost);
    driver.down = undefined;
    await until("lost-user's session ends", async () => !(await listed(s, "watched")).has("lost-user"));
    assert.equal(
      ((await call("GET", `${s.url}/healthz`, { token: null })).body as { engine: string }).engine,
      "up",
    );
    assert.equal(metric(await metrics(s), "sessionpool_engine_up"), 1);
    assert.deepEqual([...(await listed(s, "watched"))], [["stays-user", stays]]);
    const text = await metrics(s);
    assert.equal(metric(text, "sessionpool_sandbox_failures_total", { pool: "watched", reason: "lost" }), 1);
    assert.equal(metric(text, "sessionpool_sessions_ended_total", { pool: "watched", reason: "died" }), 1);

    const fresh = ok(await exec(s, "watched", "lost-user"), "lost-user after the engine is back");
    assert.notEqual(fresh.headers["x-ms-session-guid"], lost);
    assert.equal(fresh.headers["x-sessionpool-session-replaced"], "true");
    const still = ok(await exec(s, "watched", "stays-user"), "stays-user after the engine is back");
    assert.equal(still.headers["x-ms-session-guid"], stays);
    assert.equal(still.headers["x-sessionpool-session-replaced"], undefined);
    ok(await exec(s, "watched", "new-user"), "a new identifier once the engine answers");
  });

  it("engine events: die ends the session (counted), oom is counted and the sandbox runs on", async () => {
    const driver = new FakeSandboxDriver();
    const s = await serve(driver);
    await putPool(s, "evented", {
      scaleConfiguration: { maxConcurrentSessions: 5, readySessionInstances: 0 },
    });
    const guid: Record<string, string> = {};
    for (const id of ["oom-user", "die-user", "bystander"])
      guid[id] = ok(await exec(s, "evented", id), id).headers["x-ms-session-guid"]!;

    // Events are handled as they are heard (synchronously): what they change is visible at once.
    driver.oom(guid["oom-user"]!);
    assert.equal(
      metric(await metrics(s), "sessionpool_sandbox_failures_total", { pool: "evented", reason: "oom" }),
      1,
    );
    assert.equal((await listed(s, "evented")).get("oom-user"), guid["oom-user"]);
    const afterOom = ok(await exec(s, "evented", "oom-user"), "oom-user after the oom");
    assert.equal(afterOom.headers["x-ms-session-guid"], guid["oom-user"]);
    assert.equal(afterOom.headers["x-sessionpool-session-replaced"], undefined);

    driver.kill(guid["die-user"]!);
    await until("the dead sandbox is removed", () => !driver.sandboxes.has(guid["die-user"]!));
    assert.deepEqual([...(await listed(s, "evented"))].sort(), [
      ["bystander", guid["bystander"]],
      ["oom-user", guid["oom-user"]],
    ]);
    const text = await metrics(s);
    assert.equal(metric(text, "sessionpool_sandbox_failures_total", { pool: "evented", reason: "die" }), 1);
    assert.equal(metric(text, "sessionpool_sessions_ended_total", { pool: "evented", reason: "died" }), 1);
    const fresh = ok(await exec(s, "evented", "die-user"), "die-user after its sandbox died");
    assert.notEqual(fresh.headers["x-ms-session-guid"], guid["die-user"]);
    assert.equal(fresh.headers["x-sessionpool-session-replaced"], "true");
  });
});
