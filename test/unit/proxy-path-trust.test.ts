// The custom-container proxy's pure parts: the path it forwards, cut from the raw URL by segments (decoded, then
// canonically re-encoded), the stopSession exemption on the decoded path, and the --trusted-proxy list.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isSessionPoolError } from "../../src/errors.ts";
import { proxyPathOf } from "../../src/http/dataplane/proxy-path.ts";
import { TrustedProxies } from "../../src/http/dataplane/proxy-trust.ts";

const EP = "/subscriptions/s-1/resourceGroups/rg1/sessionPools";

describe("proxyPathOf", () => {
  it("cuts after the pool segment however the client encoded the prefix", () => {
    for (const url of [
      `${EP}/secpool/api/x?identifier=a`,
      `${EP}/%73ecpool/api/x?identifier=a`,
      `/%73ubscriptions/s%2D1/ResourceGroups/rg%31/SESSIONPOOLS/secpool/api/x?identifier=a`,
    ]) {
      const t = proxyPathOf(url);
      assert.equal(t?.path, "/api/x?identifier=a", url);
      assert.equal(t?.poolName, "secpool", url);
      assert.equal(t?.prefix, `${EP}/secpool`, url);
    }
  });

  it("forwards decoded segments re-encoded canonically, the query byte for byte", () => {
    const t = proxyPathOf(`${EP}/p/a%2Fb/%7euser/c%20d/e:f@g;h=i/%41?q=%2F+x&y`);
    assert.equal(t?.path, "/a%2Fb/~user/c%20d/e:f@g;h=i/A?q=%2F+x&y");
    assert.equal(proxyPathOf(`${EP}/p`)?.path, "/");
    assert.equal(proxyPathOf(`${EP}/p/`)?.path, "/");
    assert.equal(proxyPathOf(`${EP}/p/x#frag`)?.path, "/x");
  });

  it("never forwards a dot-segment the container could resolve", () => {
    assert.equal(proxyPathOf(`${EP}/p/a/%2e%2e/b`)?.path, "/a/%2E%2E/b");
    assert.equal(proxyPathOf(`${EP}/p/a/./b`)?.path, "/a/%2E/b");
  });

  it("recognises stopSession on the decoded path, and only it", () => {
    for (const rest of [
      "/.management/stopSession",
      "/.MANAGEMENT/stopsession/",
      "/%2Emanagement/stop%53ession",
    ]) {
      assert.equal(proxyPathOf(`${EP}/%70ool${rest}?identifier=a`)?.stopSession, true, rest);
    }
    for (const rest of [
      "/.management%2FstopSession",
      "/.management//stopSession",
      "/x/.management/stopSession",
    ]) {
      assert.equal(proxyPathOf(`${EP}/pool${rest}?identifier=a`)?.stopSession, false, rest);
    }
  });

  it("is undefined outside a pool endpoint and a 400 on a broken escape", () => {
    assert.equal(proxyPathOf("/subscriptions/s/resourceGroups/g/providers/x"), undefined);
    assert.equal(proxyPathOf("/healthz"), undefined);
    assert.throws(
      () => proxyPathOf(`${EP}/p/a%zz`),
      (err) => isSessionPoolError(err) && err.code === "BadRequest" && err.statusCode === 400,
    );
  });
});

describe("TrustedProxies", () => {
  it("trusts nobody by default", () => {
    assert.equal(TrustedProxies.NONE.trusts("127.0.0.1"), false);
    assert.equal(new TrustedProxies([]).trusts("::1"), false);
  });

  it("matches addresses and CIDR ranges, IPv4 peers of dual-stack sockets included", () => {
    const t = new TrustedProxies(["10.0.0.0/8", " 192.168.1.7 ", "fd00::/8", ""]);
    assert.deepEqual(t.entries, ["10.0.0.0/8", "192.168.1.7", "fd00::/8"]);
    assert.equal(t.trusts("10.1.2.3"), true);
    assert.equal(t.trusts("::ffff:10.1.2.3"), true);
    assert.equal(t.trusts("192.168.1.7"), true);
    assert.equal(t.trusts("192.168.1.8"), false);
    assert.equal(t.trusts("fd12::1"), true);
    assert.equal(t.trusts("fe80::1"), false);
    assert.equal(t.trusts(undefined), false);
  });

  it("refuses an entry that is neither an address nor a CIDR range", () => {
    for (const bad of ["localhost", "10.0.0.0/33", "10.0.0.0/8/1", "10.0.0.0/x", "::1/129", "1.2.3"]) {
      assert.throws(
        () => new TrustedProxies([bad]),
        (err) => isSessionPoolError(err) && err.code === "InvalidConfiguration" && err.message.includes(bad),
        bad,
      );
    }
  });
});
