// What Node's HTTP parser refuses before any route exists (headers or URL over 16 KiB, bytes that are not HTTP)
// is answered in the same error shape as everything else, and the server goes on serving.
import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, describe, it } from "node:test";
import { call, SUB, startTestServer, type TestServer } from "../helpers/server.ts";

let server: TestServer;
before(async () => {
  server = await startTestServer();
});
after(async () => {
  await server?.server.close();
});

/** Sends `raw` on a fresh connection and reads until the server closes it. */
function rawRequest(raw: string): Promise<{ status: number; headers: string; body: unknown }> {
  const url = new URL(server.url);
  return new Promise((resolve, reject) => {
    let data = "";
    const socket = connect(Number(url.port), url.hostname, () => socket.write(raw));
    socket.setTimeout(10_000, () => socket.destroy(new Error("no answer within 10 s")));
    socket.on("data", (d) => (data += d.toString()));
    socket.on("error", reject);
    socket.on("close", () => {
      const [head = "", body = ""] = data.split("\r\n\r\n");
      resolve({ status: Number(head.split(" ")[1]), headers: head, body: JSON.parse(body) });
    });
  });
}

describe("requests the HTTP parser refuses", () => {
  it("headers over 16 KiB: 431 in the documented shape", async () => {
    const r = await rawRequest(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`);
    assert.equal(r.status, 431);
    assert.equal((r.body as { error: { code: string } }).error.code, "RequestHeaderFieldsTooLarge");
    assert.match(r.headers, /x-ms-error-code: RequestHeaderFieldsTooLarge/i);
  });

  it("a URL over 16 KiB: 431 as well", async () => {
    const r = await rawRequest(`GET /subscriptions/${"a".repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.equal(r.status, 431);
    assert.equal((r.body as { error: { code: string } }).error.code, "RequestHeaderFieldsTooLarge");
  });

  it("bytes that are not HTTP: 400 BadRequest, and the server answers the next request", async () => {
    const r = await rawRequest("BLAH\r\n\r\n");
    assert.equal(r.status, 400);
    assert.deepEqual(r.body, { error: { code: "BadRequest", message: "The request is not valid HTTP." } });
    const list = await call(
      "GET",
      `${server.url}/subscriptions/${SUB}/providers/Microsoft.App/sessionPools?api-version=2025-07-01`,
    );
    assert.equal(list.status, 200, list.text);
  });
});
