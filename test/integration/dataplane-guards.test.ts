// What the data plane refuses before any code runs: credentials for another pool, missing or bad identifiers
// and api-versions, paths that leave /mnt/data, uploads over 128 MB or past the memory all uploads may hold;
// always in the data-plane envelope.
import assert from "node:assert/strict";
import { request as httpRequest } from "node:http";
import { after, before, describe, it } from "node:test";
import {
  armPoolUrl,
  metric,
  multipartFile,
  type RuntimeFixture,
  startRuntimeServer,
  until,
} from "../helpers/runtime.ts";
import { ADMIN_TOKEN, call } from "../helpers/server.ts";

let fx: RuntimeFixture;
const RG = `guard${Math.random().toString(36).slice(2, 7)}`;

before(async () => {
  fx = await startRuntimeServer({ rg: RG });
  await Promise.all([
    fx.createPool("guarded", { scaleConfiguration: { maxConcurrentSessions: 3, readySessionInstances: 1 } }),
    fx.createPool("other", { scaleConfiguration: { maxConcurrentSessions: 1, readySessionInstances: 0 } }),
  ]);
});
after(async () => {
  await fx?.close();
});

const errorOf = (r: { body: unknown; headers: Record<string, string> }) => {
  const e = (r.body as { error: { code: string; message: string } }).error;
  assert.equal(r.headers["x-ms-error-code"], e.code, "x-ms-error-code repeats the body's code");
  return e;
};

async function poolToken(pool: string): Promise<string> {
  const r = await call("POST", armPoolUrl(fx.url, pool, RG).replace("?", "/getAuthtoken?"));
  assert.equal(r.status, 200, r.text);
  return (r.body as { properties: { token: string } }).properties.token;
}

describe("credentials", () => {
  it("accepts a token for this pool and refuses one for another pool with 403", async () => {
    const url = `${fx.endpoint("guarded")}/executions?api-version=2025-10-02-preview&identifier=token-user`;
    const mine = await call("POST", url, { token: await poolToken("guarded"), body: { code: "1+1" } });
    assert.equal(mine.status, 200);
    const theirs = await call("POST", url, { token: await poolToken("other"), body: { code: "1+1" } });
    assert.equal(theirs.status, 403);
    assert.equal(errorOf(theirs).code, "Forbidden");
    const none = await call("POST", url, { token: null, body: { code: "1+1" } });
    assert.equal(none.status, 401);
    assert.ok(none.headers["www-authenticate"]);
  });
});

describe("operational endpoints", () => {
  it("answers /healthz and /readyz without credentials, and /metrics only with the admin credential", async () => {
    const health = await call("GET", `${fx.url}/healthz`, { token: null });
    assert.equal(health.status, 200);
    assert.deepEqual(health.body, { status: "ok", engine: "up", sandboxRuntime: fx.sandboxRuntime });
    const ready = await call("GET", `${fx.url}/readyz`, { token: null });
    assert.equal(ready.status, 200);
    assert.equal((ready.body as { engine: string }).engine, "up");
    assert.equal((await call("GET", `${fx.url}/metrics`, { token: null })).status, 401);
    assert.equal((await call("GET", `${fx.url}/metrics`, { token: await poolToken("guarded") })).status, 401);
    const metrics = await call("GET", `${fx.url}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(metrics.text, /^sessionpool_pool_ready_sessions\{pool="[^"]+\/guarded"\} \d+$/m);
    assert.doesNotMatch(metrics.text, /token-user|identifier="/, "metric labels never carry identifiers");
  });
});

describe("requests", () => {
  it("needs an identifier of 4-128 allowed characters and a known api-version", async () => {
    const base = `${fx.endpoint("guarded")}/executions`;
    const cases: [string, number, string][] = [
      [`${base}?api-version=2025-10-02-preview`, 400, "MissingIdentifier"],
      [`${base}?api-version=2025-10-02-preview&identifier=abc`, 400, "InvalidIdentifier"],
      [`${base}?api-version=2025-10-02-preview&identifier=${"x".repeat(129)}`, 400, "InvalidIdentifier"],
      [`${base}?identifier=valid-id`, 400, "MissingApiVersionParameter"],
      [`${base}?api-version=2099-01-01&identifier=valid-id`, 400, "InvalidApiVersionParameter"],
    ];
    for (const [url, status, code] of cases) {
      const r = await call("POST", url, { body: { code: "1" } });
      assert.equal(r.status, status, url);
      assert.equal(errorOf(r).code, code, url);
    }
    const unknownPool = await call(
      "POST",
      `${fx.endpoint("nosuchpool")}/executions?api-version=2025-10-02-preview&identifier=valid-id`,
      {
        body: { code: "1" },
      },
    );
    assert.equal(unknownPool.status, 404);
    assert.equal(errorOf(unknownPool).code, "SessionPoolNotFound");
    const badTimeout = await fx.exec("guarded", "valid-id", "1", { timeoutInSeconds: 221 });
    assert.equal(badTimeout.status, 400);
    assert.match(errorOf(badTimeout).message, /timeoutInSeconds/);
  });

  it("refuses paths that leave /mnt/data", async () => {
    const files = `${fx.endpoint("guarded")}/files`;
    const q = "api-version=2025-10-02-preview&identifier=path-user";
    for (const path of ["../etc", "/etc", "a/../../etc"]) {
      const r = await call("GET", `${files}?${q}&path=${encodeURIComponent(path)}`);
      assert.equal(r.status, 400, path);
      assert.equal(errorOf(r).code, "InvalidFilePath", path);
    }
    const { body, contentType } = multipartFile("../../escape.txt", "x");
    const up = await call("POST", `${files}?${q}`, { raw: body, headers: { "content-type": contentType } });
    assert.equal(up.status, 400);
    assert.equal(errorOf(up).code, "InvalidFilePath");
    // A path inside /mnt/data is kept as given (LangChain's remote_file_path may name a subdirectory).
    const nested = multipartFile("nested/dir/kept.txt", "kept");
    const kept = await call("POST", `${files}?${q}`, {
      raw: nested.body,
      headers: { "content-type": nested.contentType },
    });
    assert.equal(kept.status, 200, kept.text);
    assert.equal((kept.body as { directory: string }).directory, "nested/dir");
    // A symlink made from code points out of /mnt/data: the agent refuses to follow it.
    await fx.exec("guarded", "path-user", "import os\nos.symlink('/etc/passwd', '/mnt/data/link')");
    const link = await call("GET", `${files}/link/content?${q}`);
    assert.equal(link.status, 400, link.text);
    assert.doesNotMatch(link.text, /root:x:0:0/);
  });

  it("answers 413 for an upload over 128 MB, and the session goes on", async () => {
    const { body, contentType } = multipartFile("big.bin", Buffer.alloc(128 * 1024 * 1024 + 1024, 1));
    const r = await call(
      "POST",
      `${fx.endpoint("guarded")}/files?api-version=2025-10-02-preview&identifier=big-user`,
      {
        raw: body,
        headers: { "content-type": contentType },
      },
    );
    assert.equal(r.status, 413);
    assert.equal(errorOf(r).code, "FileTooLarge");
    const list = await call(
      "GET",
      `${fx.endpoint("guarded")}/files?api-version=2025-10-02-preview&identifier=big-user`,
    );
    assert.equal(list.status, 200);
    assert.deepEqual((list.body as { value: unknown[] }).value, [], "nothing partial was written");
  });
});

describe("upload memory", () => {
  let small: RuntimeFixture;
  before(async () => {
    small = await startRuntimeServer({ rg: `${RG}up`, uploadBufferBytes: 1024 * 1024 });
    await small.createPool("uploads", {
      scaleConfiguration: { maxConcurrentSessions: 2, readySessionInstances: 1 },
    });
  });
  after(async () => {
    await small?.close();
  });

  it("refuses an upload that would pass the memory all uploads may hold (503 ServerBusy), then takes it", async () => {
    const url = `${small.endpoint("uploads")}/files?api-version=2025-10-02-preview&identifier=uploader`;
    // Upload A sends 900 KiB of its file and holds the request open: the server holds those bytes.
    const boundary = "----sessionpoolbudget";
    const slow = httpRequest(new URL(url), {
      method: "POST",
      headers: {
        authorization: `Bearer ${ADMIN_TOKEN}`,
        "content-type": `multipart/form-data; boundary=${boundary}`,
        "transfer-encoding": "chunked",
      },
    });
    const slowAnswer = new Promise<number>((resolve, reject) => {
      slow.on("response", (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      slow.on("error", reject);
    });
    slow.write(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`,
    );
    slow.write(Buffer.alloc(900 * 1024, 1));
    // The server holds A's bytes once its gauge says so.
    await until(
      "the server to hold upload A",
      async () => (await metric(small.url, "sessionpool_upload_buffered_bytes")) >= 900 * 1024,
    );

    // Upload B would take the total past 1 MiB.
    const b = multipartFile("b.bin", Buffer.alloc(200 * 1024, 2));
    const busy = await call("POST", url, { raw: b.body, headers: { "content-type": b.contentType } });
    assert.equal(busy.status, 503, busy.text);
    assert.equal(errorOf(busy).code, "ServerBusy");
    assert.ok(busy.headers["retry-after"]);

    // A finishes and lets go of its bytes; B then goes through.
    slow.end(`\r\n--${boundary}--\r\n`);
    assert.equal(await slowAnswer, 200);
    const again = await call("POST", url, { raw: b.body, headers: { "content-type": b.contentType } });
    assert.equal(again.status, 200, again.text);
    const list = await call("GET", url);
    const names = (list.body as { value: { name: string }[] }).value.map((f) => f.name).sort();
    assert.deepEqual(names, ["a.bin", "b.bin"]);
  });
});
