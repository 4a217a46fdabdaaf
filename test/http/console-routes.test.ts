// The web console's routes (src/http/console-routes.ts): `/` and the hashed assets with their security and cache
// headers, only the files of the built console, a plain page when it is not built, and the other paths unchanged.
import assert from "node:assert/strict";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import Fastify, { type FastifyInstance } from "fastify";
import { installArmErrorHandler } from "../../src/http/arm/arm-errors.ts";
import { CONSOLE_CSP, consoleRoutes } from "../../src/http/console-routes.ts";
import { call, startTestServer, type TestServer, tempDir } from "../helpers/server.ts";

/** The console's routes alone, on a built console in `dir`, with the app's error envelope. */
async function consoleApp(dir: string): Promise<FastifyInstance> {
  const app = Fastify();
  installArmErrorHandler(app);
  await app.register(async (scope) => consoleRoutes(scope, { dir }));
  return app;
}

async function get(app: FastifyInstance, url: string) {
  const r = await app.inject({ method: "GET", url });
  return { status: r.statusCode, headers: r.headers as Record<string, string>, text: r.body };
}

describe("console routes", () => {
  let dir: string;
  let app: FastifyInstance;
  before(async () => {
    dir = tempDir("sessionpool-console-dist-");
    mkdirSync(join(dir, "assets"));
    writeFileSync(
      join(dir, "index.html"),
      '<!doctype html><script type="module" src="/console/assets/main-ABC123.js"></script>',
    );
    writeFileSync(join(dir, "assets", "main-ABC123.js"), "console.log('hi');\n");
    writeFileSync(join(dir, "assets", "main-DEF456.css"), "body{}\n");
    writeFileSync(join(dir, "secret.txt"), "not an asset\n");
    app = await consoleApp(dir);
  });
  after(async () => {
    await app?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("serves index.html at / with the content security policy, uncached", async () => {
    const r = await get(app, "/");
    assert.equal(r.status, 200);
    assert.match(r.headers["content-type"]!, /^text\/html; charset=utf-8/);
    assert.equal(r.headers["content-security-policy"], CONSOLE_CSP);
    assert.match(CONSOLE_CSP, /default-src 'none'/);
    assert.doesNotMatch(CONSOLE_CSP, /https?:|\*|unsafe/);
    assert.equal(r.headers["x-content-type-options"], "nosniff");
    assert.equal(r.headers["cache-control"], "no-cache");
    assert.match(r.text, /main-ABC123\.js/);
  });

  it("serves hashed assets with their type and a year of immutable caching", async () => {
    const js = await get(app, "/console/assets/main-ABC123.js");
    assert.equal(js.status, 200);
    assert.match(js.headers["content-type"]!, /^text\/javascript/);
    assert.equal(js.headers["cache-control"], "public, max-age=31536000, immutable");
    assert.equal(js.headers["content-security-policy"], CONSOLE_CSP);
    assert.equal(js.headers["x-content-type-options"], "nosniff");
    const css = await get(app, "/console/assets/main-DEF456.css");
    assert.match(css.headers["content-type"]!, /^text\/css/);
  });

  it("serves nothing but the built assets (no traversal, no other file)", async () => {
    for (const path of [
      "/console/assets/..%2Findex.html",
      "/console/assets/..%2Fsecret.txt",
      "/console/assets/%2E%2E%2F%2E%2E%2Fpackage.json",
      "/console/assets/../secret.txt",
      "/console/assets/constructor",
      "/console/assets/__proto__",
      "/console/assets/main-NOPE.js",
      "/console/secret.txt",
    ]) {
      const r = await get(app, path);
      assert.equal(r.status, 404, `${path}: ${r.text}`);
      assert.doesNotMatch(r.text, /not an asset|console\.log/);
    }
  });

  it("answers a plain page naming scripts/setup.sh when the console is not built", async () => {
    const empty = tempDir("sessionpool-console-empty-");
    const bare = await consoleApp(join(empty, "missing"));
    try {
      const r = await get(bare, "/");
      assert.equal(r.status, 200);
      assert.match(r.headers["content-type"]!, /^text\/plain/);
      assert.match(r.text, /scripts\/setup\.sh/);
      assert.equal(r.headers["content-security-policy"], CONSOLE_CSP);
      const asset = await get(bare, "/console/assets/main-ABC123.js");
      assert.equal(asset.status, 404);
    } finally {
      await bare.close();
      rmSync(empty, { recursive: true, force: true });
    }
  });
});

describe("console on the server", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server?.close();
  });

  it("serves / and leaves the other paths as they were: ARM 404 envelope, auth on the API", async () => {
    const root = await call("GET", `${server.url}/`, { token: null });
    assert.equal(root.status, 200);
    assert.equal(root.headers["content-security-policy"], CONSOLE_CSP);
    const nowhere = await call("GET", `${server.url}/nowhere`, { token: null });
    assert.equal(nowhere.status, 404);
    assert.equal((nowhere.body as { error: { code: string } }).error.code, "NotFound");
    const arm = await call(
      "GET",
      `${server.url}/subscriptions/00000000-0000-0000-0000-000000000000/providers/Microsoft.App/sessionPools?api-version=2025-07-01`,
      { token: null },
    );
    assert.equal(arm.status, 401);
  });
});
