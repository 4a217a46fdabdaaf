// Pool tokens: what a verified token is worth on later requests (the service keeps the tokens it verified, so the
// HMAC is not checked again on every request): still refused once expired, once its pool is gone, or altered.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { AuthenticationError } from "../../src/auth/errors.ts";
import { PoolTokenService } from "../../src/auth/pool-tokens.ts";

const TTL_SECONDS = 3600;
const POOL = { key: "sub/rg/pool1", uid: "uid-1" };

function service(uids: Map<string, string>): PoolTokenService {
  return new PoolTokenService(randomBytes(32).toString("base64"), TTL_SECONDS, async (key) => uids.get(key));
}

describe("pool tokens", () => {
  it("a token verified once is accepted again, and refused once its pool is deleted", async () => {
    const uids = new Map([[POOL.key, POOL.uid]]);
    const tokens = service(uids);
    const { token } = await tokens.issue(POOL, new Date());
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(await tokens.authenticate(token), {
        kind: "pool",
        name: `pool-token:${POOL.key}`,
        nameType: "Key",
        poolKey: POOL.key,
      });
    }
    uids.set(POOL.key, "uid-2"); // deleted and created again under the same name
    await assert.rejects(tokens.authenticate(token), AuthenticationError);
  });

  it("an altered token is refused, though the original was accepted", async () => {
    const tokens = service(new Map([[POOL.key, POOL.uid]]));
    const { token } = await tokens.issue(POOL, new Date());
    assert.ok(await tokens.authenticate(token));
    const last = token.at(-1) === "A" ? "B" : "A";
    assert.equal(await tokens.authenticate(token.slice(0, -1) + last), undefined);
    const [header, , signature] = token.split(".");
    const otherPayload = Buffer.from(JSON.stringify({ pool: "sub/rg/other", puid: "x", exp: 9e9 })).toString(
      "base64url",
    );
    assert.equal(await tokens.authenticate(`${header}.${otherPayload}.${signature}`), undefined);
  });

  it("a token accepted before it expired is refused after", async () => {
    const tokens = service(new Map([[POOL.key, POOL.uid]]));
    // Issued so that it expires at the next whole second but one.
    const exp = Math.floor(Date.now() / 1000) + 2;
    const { token, expires } = await tokens.issue(POOL, new Date((exp - TTL_SECONDS) * 1000));
    assert.equal(expires.getTime(), exp * 1000);
    assert.ok(await tokens.authenticate(token), "accepted while valid");
    while (Math.floor(Date.now() / 1000) < exp) await sleep(50);
    assert.equal(await tokens.authenticate(token), undefined, "refused once expired");
  });

  it("many tokens in turn are each still verified and accepted (the kept ones are bounded)", async () => {
    const tokens = service(new Map([[POOL.key, POOL.uid]]));
    const first = (await tokens.issue(POOL, new Date())).token;
    assert.ok(await tokens.authenticate(first));
    for (let i = 0; i < 1100; i++)
      assert.ok(await tokens.authenticate((await tokens.issue(POOL, new Date())).token));
    assert.ok(await tokens.authenticate(first), "verified again after being pushed out");
  });
});
