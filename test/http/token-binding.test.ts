// Data-plane tokens die with the pool they were issued for: a token from getAuthtoken is refused once its pool is
// deleted, also after a pool of the same name is created again (a new pool), on the code-interpreter routes and
// on the custom-container proxy; a token without `exp` is refused; a pool stored before pools had a uid (an older
// data dir) gets one on upgrade and its tokens work. Real server, real engine, real SQLite.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { decodeJwt, SignJWT } from "jose";
import { armPoolUrl, type RuntimeFixture, startRuntimeServer } from "../helpers/runtime.ts";
import { call, type Reply, waitForOperation } from "../helpers/server.ts";

const run = promisify(execFile);
const RG = `tok${Math.random().toString(36).slice(2, 7)}`;
const DP = "2025-10-02-preview";
/** The local sandbox image, tagged under a loopback registry nobody listens on: the pull fails, the local copy serves. */
let proxyImage: string;
let fx: RuntimeFixture;

async function closedLoopbackPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

before(async () => {
  proxyImage = `127.0.0.1:${await closedLoopbackPort()}/sessionpool-test/token-binding:${RG}`;
  await run("docker", ["tag", "sessionpool/python:latest", proxyImage], { timeout: 60_000 });
  fx = await startRuntimeServer({ rg: RG });
});
after(async () => {
  await fx?.close();
  await run("docker", ["rmi", proxyImage], { timeout: 60_000 }).catch(() => {});
});

const python = { scaleConfiguration: { maxConcurrentSessions: 2, readySessionInstances: 1 } };
const custom = () => ({
  containerType: "CustomContainer",
  scaleConfiguration: { maxConcurrentSessions: 2, readySessionInstances: 1 },
  customContainerTemplate: {
    containers: [
      {
        image: proxyImage,
        name: "web",
        command: ["python3"],
        args: ["-m", "http.server", "8080", "--directory", "/tmp"],
      },
    ],
    ingress: { targetPort: 8080 },
  },
});

async function poolToken(pool: string): Promise<string> {
  const r = await call("POST", armPoolUrl(fx.url, pool, RG).replace("?", "/getAuthtoken?"));
  assert.equal(r.status, 200, r.text);
  return (r.body as { properties: { token: string } }).properties.token;
}

async function recreate(pool: string, properties: Record<string, unknown>): Promise<void> {
  await fx.deletePool(pool, RG);
  const op = await fx.createPool(pool, properties, RG);
  assert.equal(op["status"], "Succeeded", JSON.stringify(op));
}

const execute = (pool: string, token: string, identifier = "tok-user-1") =>
  call("POST", `${fx.endpoint(pool, RG)}/executions?api-version=${DP}&identifier=${identifier}`, {
    token,
    body: { code: "6*7" },
  });
const legacyExecute = (pool: string, token: string) =>
  call("POST", `${fx.endpoint(pool, RG)}/code/execute?api-version=2024-02-02-preview&identifier=tok-user-1`, {
    token,
    body: { properties: { codeInputType: "inline", executionType: "synchronous", code: "6*7" } },
  });
const proxied = (pool: string, token: string) =>
  call("GET", `${fx.endpoint(pool, RG)}/?identifier=tok-user-1`, { token });

/** A refused token, in the data plane's shape. */
function assertRefused(r: Reply, what: string): void {
  assert.ok(r.status === 401 || r.status === 403, `${what}: ${r.status} ${r.text}`);
  const error = (r.body as { error?: { code?: unknown; message?: unknown } }).error;
  assert.equal(typeof error?.code, "string", `${what}: ${r.text}`);
  assert.equal(typeof error?.message, "string", `${what}: ${r.text}`);
  assert.equal(r.headers["x-ms-error-code"], error?.code, what);
}

describe("a pool token is bound to one incarnation of its pool", () => {
  it("refuses a code-interpreter pool's token after the pool is deleted and re-created; a new token works", async () => {
    await fx.createPool("tokpy", python, RG);
    const old = await poolToken("tokpy");
    const first = await execute("tokpy", old);
    assert.equal(first.status, 200, first.text);

    // An update keeps the pool (and its tokens).
    const patch = await call("PATCH", armPoolUrl(fx.url, "tokpy", RG), {
      body: { properties: { scaleConfiguration: { maxConcurrentSessions: 3, readySessionInstances: 1 } } },
    });
    assert.equal(patch.status, 202, patch.text);
    await waitForOperation(patch.headers["azure-asyncoperation"]!);
    assert.equal((await execute("tokpy", old)).status, 200);

    await fx.deletePool("tokpy", RG);
    assertRefused(await execute("tokpy", old), "old token, pool deleted");

    await recreate("tokpy", python);
    const refused = await execute("tokpy", old);
    assertRefused(refused, "old token on /executions");
    assert.equal(refused.status, 401);
    assert.equal((refused.body as { error: { code: string } }).error.code, "InvalidAuthenticationToken");
    assert.match((refused.body as { error: { message: string } }).error.message, /deleted/);
    assertRefused(await legacyExecute("tokpy", old), "old token on /code/execute");
    assertRefused(
      await call("GET", `${fx.endpoint("tokpy", RG)}/session?api-version=${DP}&identifier=tok-user-1`, {
        token: old,
      }),
      "old token on /session",
    );

    const fresh = await poolToken("tokpy");
    const ok = await execute("tokpy", fresh);
    assert.equal(ok.status, 200, ok.text);
    const legacy = await legacyExecute("tokpy", fresh);
    assert.equal(legacy.status, 200, legacy.text);
  });

  it("refuses a custom container pool's token on the proxy path after delete and re-create", async () => {
    const created = await fx.createPool("tokcc", custom(), RG);
    assert.equal(created["status"], "Succeeded", JSON.stringify(created));
    const old = await poolToken("tokcc");
    const first = await proxied("tokcc", old);
    assert.equal(first.status, 200, first.text);

    await recreate("tokcc", custom());
    assertRefused(await proxied("tokcc", old), "old token on the proxy path");
    assertRefused(
      await call("GET", `${fx.endpoint("tokcc", RG)}/any/path?identifier=tok-user-1`, { token: old }),
      "old token on a deeper proxied path",
    );
    const fresh = await poolToken("tokcc");
    const ok = await proxied("tokcc", fresh);
    assert.equal(ok.status, 200, ok.text);
  });

  it("refuses a correctly signed token without exp", async () => {
    await fx.createPool("tokexp", python, RG);
    const good = await poolToken("tokexp");
    assert.equal((await execute("tokexp", good, "tok-exp-1")).status, 200);
    const claims = decodeJwt(good);
    assert.equal(typeof claims.exp, "number", "issued tokens carry exp");
    const { exp: _exp, ...rest } = claims;
    const key = Buffer.from(
      readFileSync(join(fx.dataDir, "keys", "token-signing.key"), "utf8").trim(),
      "base64",
    );
    const eternal = await new SignJWT(rest).setProtectedHeader({ alg: "HS256", typ: "JWT" }).sign(key);
    const r = await execute("tokexp", eternal, "tok-exp-1");
    assertRefused(r, "token without exp");
    assert.equal(r.status, 401);
    // The same claims with exp back are accepted: only the missing exp is refused.
    const withExp = await new SignJWT({ ...rest, exp: claims.exp })
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .sign(key);
    assert.equal((await execute("tokexp", withExp, "tok-exp-1")).status, 200);
  });
});

describe("pools stored before pools had a uid", () => {
  it("get one when the store is upgraded, and their tokens work", async () => {
    await fx.createPool("tokold", python, RG);
    await fx.stop();
    // Turn the data dir back into schema version 1: no uid column (nor the later sessions.environment and owner,
    // members and leases).
    const db = new DatabaseSync(join(fx.dataDir, "sessionpool.db"));
    try {
      db.exec(
        "ALTER TABLE pools DROP COLUMN uid; ALTER TABLE sessions DROP COLUMN environment; ALTER TABLE sessions DROP COLUMN owner; DROP TABLE members; DROP TABLE leases; DELETE FROM schema_version WHERE version >= 2;",
      );
    } finally {
      db.close();
    }
    await fx.restart();
    const token = await poolToken("tokold");
    const r = await execute("tokold", token, "tok-old-1");
    assert.equal(r.status, 200, r.text);
    const uid = decodeJwt(token)["puid"];
    assert.equal(typeof uid, "string");
    assert.notEqual(uid, "", "the upgraded pool has a uid");

    await recreate("tokold", python);
    assertRefused(await execute("tokold", token, "tok-old-1"), "the upgraded pool's token after re-create");
  });
});
