// A Timed pool may carry maxAlivePeriodInSeconds (the reference's "Timed lifecycle" example answers with it, so a
// client that PUTs back what it read sends it): it caps a session's whole life, so the session ends at the earlier
// of its cooldown expiry and its allocation + maxAlive. Real engine; the server's clock is moved, never waited on.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { armPoolUrl, type RuntimeFixture, startRuntimeServer, until } from "../helpers/runtime.ts";
import { call } from "../helpers/server.ts";

type Json = Record<string, unknown>;
const RG = `tm${Math.random().toString(36).slice(2, 7)}`;
const DP = "2025-10-02-preview";
const COOLDOWN = 600;
const MAX_ALIVE = 300;
let fx: RuntimeFixture;

before(async () => {
  fx = await startRuntimeServer({ rg: RG });
});
after(async () => {
  await fx?.close();
});

const lifecycleOf = (r: { body: unknown }) =>
  ((r.body as { properties: Json }).properties["dynamicPoolConfiguration"] as Json)["lifecycleConfiguration"];
const session = async (pool: string, id: string) => {
  const r = await call("GET", `${fx.endpoint(pool, RG)}/session?api-version=${DP}&identifier=${id}`);
  return {
    status: r.status,
    body: r.body as { createdAt: string; lastAccessedAt: string; expireAt: string },
  };
};
const plus = (iso: string, seconds: number) => new Date(Date.parse(iso) + seconds * 1000).toISOString();

describe("Timed lifecycle with maxAlivePeriodInSeconds", () => {
  it("is accepted, returned by GET, and a PUT of what GET returned is accepted too", async () => {
    const body = {
      location: "eastus",
      properties: {
        containerType: "PythonLTS",
        scaleConfiguration: { maxConcurrentSessions: 3, readySessionInstances: 1 },
        dynamicPoolConfiguration: {
          lifecycleConfiguration: {
            lifecycleType: "Timed",
            cooldownPeriodInSeconds: COOLDOWN,
            maxAlivePeriodInSeconds: MAX_ALIVE,
          },
        },
      },
    };
    const put = await call("PUT", armPoolUrl(fx.url, "capped", RG), { body });
    assert.equal(put.status, 201, put.text);
    const expected = {
      lifecycleType: "Timed",
      cooldownPeriodInSeconds: COOLDOWN,
      maxAlivePeriodInSeconds: MAX_ALIVE,
    };
    assert.deepEqual(lifecycleOf(put), expected);
    await fx.createPool("capped", body.properties, RG);
    const got = await call("GET", armPoolUrl(fx.url, "capped", RG));
    assert.equal(got.status, 200, got.text);
    assert.deepEqual(lifecycleOf(got), expected);

    const again = await call("PUT", armPoolUrl(fx.url, "capped", RG), { body: got.body });
    assert.equal(again.status, 200, again.text);
    assert.deepEqual(lifecycleOf(again), expected);

    // The reference example's shape: Timed with maxAlivePeriodInSeconds and no cooldown (the default applies).
    const example = await call("PUT", armPoolUrl(fx.url, "example", RG), {
      body: {
        location: "eastus",
        properties: {
          scaleConfiguration: { maxConcurrentSessions: 2, readySessionInstances: 0 },
          dynamicPoolConfiguration: {
            lifecycleConfiguration: { lifecycleType: "Timed", maxAlivePeriodInSeconds: 86400 },
          },
        },
      },
    });
    assert.equal(example.status, 201, example.text);
    assert.deepEqual(lifecycleOf(example), {
      lifecycleType: "Timed",
      cooldownPeriodInSeconds: 300,
      maxAlivePeriodInSeconds: 86400,
    });
  });

  it("caps a session's expiry at allocation + maxAlive, whatever its activity, and ends it then", async () => {
    const first = await fx.exec("capped", "capped-user", "x = 1");
    assert.equal(first.status, 200, first.text);
    const s1 = await session("capped", "capped-user");
    assert.equal(s1.status, 200);
    assert.equal(s1.body.expireAt, plus(s1.body.createdAt, MAX_ALIVE), "capped by maxAlive, not cooldown");

    // Activity later in the session's life does not push the end past the cap (cooldown alone would give
    // lastAccessedAt + 600 s).
    fx.clock.advance(MAX_ALIVE - 100);
    const later = await fx.exec("capped", "capped-user", "x + 1");
    assert.equal(later.status, 200, later.text);
    const s2 = await session("capped", "capped-user");
    assert.equal(s2.body.createdAt, s1.body.createdAt, "the same session");
    assert.equal(s2.body.expireAt, plus(s1.body.createdAt, MAX_ALIVE));
    const listed = await call("GET", `${fx.endpoint("capped", RG)}/listSessions?api-version=${DP}`);
    const entry = (listed.body as { sessions: { identifier: string; expireAt: string }[] }).sessions.find(
      (s) => s.identifier === "capped-user",
    );
    assert.equal(entry?.expireAt, plus(s1.body.createdAt, MAX_ALIVE), "listSessions agrees");

    fx.clock.advance(101);
    await until(
      "the capped session to end",
      async () => (await session("capped", "capped-user")).status === 404,
    );
  });

  it("without maxAlive, a Timed session expires a cooldown after its last request", async () => {
    await fx.createPool(
      "uncapped",
      {
        scaleConfiguration: { maxConcurrentSessions: 2, readySessionInstances: 1 },
        dynamicPoolConfiguration: {
          lifecycleConfiguration: { lifecycleType: "Timed", cooldownPeriodInSeconds: COOLDOWN },
        },
      },
      RG,
    );
    const r = await fx.exec("uncapped", "free-user", "1");
    assert.equal(r.status, 200, r.text);
    const s = await session("uncapped", "free-user");
    assert.equal(s.body.expireAt, plus(s.body.lastAccessedAt, COOLDOWN));
  });
});
