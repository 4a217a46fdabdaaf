// An empty body is "no body": every route that takes no body answers as usual when the client sends
// `Content-Type: application/json` (az rest, curl with a default header, most HTTP wrappers) or another type with
// an empty body and `Content-Length: 0`. Routes that need a body still refuse an empty one by name. Real HTTP,
// real engine.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { armPoolUrl, type RuntimeFixture, startRuntimeServer } from "../helpers/runtime.ts";
import { call, type Reply, SUB, waitForOperation } from "../helpers/server.ts";

const RG = `eb${Math.random().toString(36).slice(2, 7)}`;
const POOL = "emptybody";
const DP = "2025-10-02-preview";
const ID = "empty-body-user";
let fx: RuntimeFixture;

before(async () => {
  fx = await startRuntimeServer({ rg: RG });
  const op = await fx.createPool(POOL, {
    scaleConfiguration: { maxConcurrentSessions: 3, readySessionInstances: 1 },
  });
  assert.equal(op["status"], "Succeeded", JSON.stringify(op));
});
after(async () => {
  await fx?.close();
});

/** The framings of "no body" clients send. */
const EMPTY: [string, Record<string, string>][] = [
  ["application/json, Content-Length: 0", { "content-type": "application/json", "content-length": "0" }],
  [
    "application/json; charset=utf-8, Content-Length: 0",
    { "content-type": "application/json; charset=utf-8", "content-length": "0" },
  ],
  ["text/plain, Content-Length: 0", { "content-type": "text/plain", "content-length": "0" }],
  [
    "application/octet-stream, Content-Length: 0",
    { "content-type": "application/octet-stream", "content-length": "0" },
  ],
];

const send = (method: string, url: string, headers: Record<string, string>) =>
  call(method, url, { raw: "", headers });

function assertNotRefusedForItsBody(r: Reply, what: string, status: number): void {
  assert.notEqual(r.headers["x-ms-error-code"], "InvalidRequestContent", `${what}: ${r.text}`);
  assert.notEqual(r.headers["x-ms-error-code"], "UnsupportedMediaType", `${what}: ${r.text}`);
  assert.equal(r.status, status, `${what}: ${r.text}`);
}

describe("routes that take no body accept an empty one with any Content-Type", () => {
  const arm = (path = "", apiVersion = "2025-07-01") =>
    armPoolUrl(fx.url, POOL, RG, apiVersion).replace("?", `${path}?`);
  const dp = (path: string, query = "") =>
    `${fx.endpoint(POOL, RG)}${path}?api-version=${DP}&identifier=${ID}${query}`;

  for (const [framing, headers] of EMPTY) {
    it(`management API: ${framing}`, async () => {
      assertNotRefusedForItsBody(await send("POST", arm("/getAuthtoken"), headers), "POST getAuthtoken", 200);
      assertNotRefusedForItsBody(await send("GET", arm(), headers), "GET pool", 200);
      assertNotRefusedForItsBody(
        await send(
          "GET",
          `${fx.url}/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.App/sessionPools?api-version=2025-07-01`,
          headers,
        ),
        "GET list",
        200,
      );
      // DELETE of a pool that does not exist: 204, as for any DELETE of nothing.
      assertNotRefusedForItsBody(
        await send("DELETE", armPoolUrl(fx.url, "nosuchpool", RG), headers),
        "DELETE absent pool",
        204,
      );
    });

    it(`data plane: ${framing}`, async () => {
      const exec = await fx.exec(POOL, ID, "open('/mnt/data/e.txt', 'w').write('x')");
      assert.equal(exec.status, 200, exec.text);
      // Every route is tried, and every one answering wrongly is named, not only the first.
      const wrong: string[] = [];
      const check = async (method: string, path: string, status: number) => {
        const r = await send(method, dp(path), headers);
        if (r.status !== status) wrong.push(`${method} ${path}: ${r.status} ${r.text}`);
      };
      await check("GET", "/session", 200);
      await check("GET", "/listSessions", 200);
      await check("GET", "/files", 200);
      await check("GET", "/files/e.txt", 200);
      await check("DELETE", "/files/e.txt", 204);
      await check("POST", "/.management/stopSession", 200);
      const again = await fx.exec(POOL, ID, "1");
      assert.equal(again.status, 200, again.text);
      await check("DELETE", "/session", 204);
      assert.deepEqual(wrong, []);
    });
  }

  it("DELETE of a pool with application/json and an empty body is accepted (202), and its operation is served", async () => {
    const op = await fx.createPool("emptydel", {});
    assert.equal(op["status"], "Succeeded", JSON.stringify(op));
    const r = await send("DELETE", armPoolUrl(fx.url, "emptydel", RG), EMPTY[0]![1]);
    assertNotRefusedForItsBody(r, "DELETE pool", 202);
    const done = await waitForOperation(r.headers["azure-asyncoperation"]!);
    assert.equal(done["status"], "Succeeded");
  });
});

describe("routes that need a body still refuse an empty one, by name", () => {
  it("PUT of a pool: 400 InvalidRequestContent", async () => {
    const r = await send("PUT", armPoolUrl(fx.url, "emptyput", RG), EMPTY[0]![1]);
    assert.equal(r.status, 400, r.text);
    assert.equal(r.headers["x-ms-error-code"], "InvalidRequestContent");
  });

  it("POST /executions: 400 in the data-plane shape", async () => {
    const r = await send(
      "POST",
      `${fx.endpoint(POOL, RG)}/executions?api-version=${DP}&identifier=${ID}`,
      EMPTY[0]![1],
    );
    assert.equal(r.status, 400, r.text);
    const error = (r.body as { error: { code: string; message: string } }).error;
    assert.equal(r.headers["x-ms-error-code"], error.code);
    assert.ok(error.message.length > 0);
  });

  it("a non-empty body of a type no route reads is still 415", async () => {
    const r = await call("DELETE", armPoolUrl(fx.url, "nosuchpool", RG), {
      raw: "x",
      headers: { "content-type": "application/octet-stream" },
    });
    assert.equal(r.status, 415, r.text);
    assert.equal(r.headers["x-ms-error-code"], "UnsupportedMediaType");
  });
});
