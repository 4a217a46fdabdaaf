// Who may call the management API (401 with WWW-Authenticate for every bad credential, on every route), what
// survives a restart (SIGTERM and SIGKILL, as a child process on the same data dir), where secret values must
// never appear (responses, logs, the database and its WAL), and the serve command's credential and TLS set-up.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { existsSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { after, before, describe, it } from "node:test";
import { Agent } from "undici";
import { gatedBackend } from "../helpers/fake-backend.ts";
import {
  ADMIN_TOKEN,
  type ChildServer,
  call,
  filesContaining,
  poolUrl,
  rebase,
  runCli,
  SUB,
  spawnServer,
  startTestServer,
  type TestServer,
  tempDir,
  waitForOperation,
} from "../helpers/server.ts";

type Json = Record<string, unknown>;

const ENV_ID = `/subscriptions/${SUB}/resourceGroups/rg2/providers/Microsoft.App/managedEnvironments/env1`;
const authtokenUrl = (base: string, name: string, rg = "rg1") =>
  poolUrl(base, name, "2025-07-01", rg).replace("?", "/getAuthtoken?");
const listUrl = (base: string, rg?: string) =>
  `${base}/subscriptions/${SUB}${rg ? `/resourceGroups/${rg}` : ""}/providers/Microsoft.App/sessionPools?api-version=2025-07-01`;

// ---------------------------------------------------------------------------------------------------------------

describe("authentication on every management route", () => {
  let s: TestServer;
  let other: TestServer;
  let routes: { method: string; url: string; body?: unknown }[];
  let expiredToken: string;
  let foreignToken: string;

  before(async () => {
    // Everything this server signs is dated two hours back, so its one-hour pool tokens are already expired.
    s = await startTestServer({ now: () => new Date(Date.now() - 2 * 3600_000) });
    other = await startTestServer();
    const put = await call("PUT", poolUrl(s.url, "authpool"), { body: { location: "eastus" } });
    assert.equal(put.status, 201, put.text);
    expiredToken = (
      (await call("POST", authtokenUrl(s.url, "authpool"))).body as { properties: { token: string } }
    ).properties.token;
    await call("PUT", poolUrl(other.url, "authpool"), { body: { location: "eastus" } });
    foreignToken = (
      (await call("POST", authtokenUrl(other.url, "authpool"))).body as { properties: { token: string } }
    ).properties.token;
    routes = [
      { method: "GET", url: listUrl(s.url) },
      { method: "GET", url: listUrl(s.url, "rg1") },
      { method: "GET", url: poolUrl(s.url, "authpool") },
      { method: "PUT", url: poolUrl(s.url, "authpool"), body: { location: "eastus" } },
      { method: "PATCH", url: poolUrl(s.url, "authpool"), body: { tags: {} } },
      { method: "DELETE", url: poolUrl(s.url, "authpool") },
      { method: "POST", url: authtokenUrl(s.url, "authpool") },
      { method: "GET", url: put.headers["azure-asyncoperation"]! },
      { method: "GET", url: put.headers["location"]! },
      // Even a route that does not exist for this method: authentication comes first.
      { method: "POST", url: poolUrl(s.url, "authpool") },
    ];
  });
  after(async () => {
    await s.close();
    await other.close();
  });

  const credentials: { name: string; header: () => string | undefined; code: string }[] = [
    { name: "no Authorization header", header: () => undefined, code: "AuthenticationFailed" },
    { name: "Basic credentials", header: () => "Basic dXNlcjpwYXNz", code: "InvalidAuthenticationToken" },
    { name: "'Bearer' without a token", header: () => "Bearer", code: "InvalidAuthenticationToken" },
    {
      name: "two tokens",
      header: () => `Bearer ${ADMIN_TOKEN} ${ADMIN_TOKEN}`,
      code: "InvalidAuthenticationToken",
    },
    { name: "a wrong token", header: () => "Bearer not-the-admin-token", code: "InvalidAuthenticationToken" },
    {
      name: "the admin token with a suffix",
      header: () => `Bearer ${ADMIN_TOKEN}x`,
      code: "InvalidAuthenticationToken",
    },
    {
      name: "an expired pool token",
      header: () => `Bearer ${expiredToken}`,
      code: "InvalidAuthenticationToken",
    },
    {
      name: "another server's pool token",
      header: () => `Bearer ${foreignToken}`,
      code: "InvalidAuthenticationToken",
    },
  ];

  for (const cred of credentials) {
    it(`${cred.name}: 401 with WWW-Authenticate on every route, and nothing changes`, async () => {
      const before = await call("GET", poolUrl(s.url, "authpool"));
      for (const route of routes) {
        const header = cred.header();
        const r = await call(route.method, route.url, {
          token: null,
          ...(header === undefined ? {} : { headers: { authorization: header } }),
          ...(route.body === undefined ? {} : { body: route.body }),
        });
        const where = `${route.method} ${route.url} -> ${r.status} ${r.text}`;
        assert.equal(r.status, 401, where);
        assert.match(r.headers["www-authenticate"] ?? "", /^Bearer realm="sessionpool"/, where);
        assert.equal((r.body as { error: Json }).error["code"], cred.code, where);
        assert.equal(r.headers["x-ms-error-code"], cred.code, where);
      }
      const afterwards = await call("GET", poolUrl(s.url, "authpool"));
      assert.equal(afterwards.status, 200);
      assert.equal(afterwards.headers["etag"], before.headers["etag"]);
    });
  }

  it("the scheme is case-insensitive: 'bearer <admin token>' is accepted", async () => {
    const r = await call("GET", poolUrl(s.url, "authpool"), {
      token: null,
      headers: { authorization: `bearer ${ADMIN_TOKEN}` },
    });
    assert.equal(r.status, 200, r.text);
  });

  it("a pool's valid token is authenticated but not allowed: 403", async () => {
    await call("PUT", poolUrl(other.url, "authpool2"), { body: { location: "eastus" } });
    const token = (
      (await call("POST", authtokenUrl(other.url, "authpool2"))).body as { properties: { token: string } }
    ).properties.token;
    const r = await call("GET", listUrl(other.url), { token });
    assert.equal(r.status, 403, r.text);
    assert.equal((r.body as { error: Json }).error["code"], "AuthorizationFailed");
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe("secrets and operations in the store", () => {
  it("a PUT of a GET body (secret names only) keeps the sealed values; a new value replaces one", async () => {
    const s = await startTestServer();
    const db = () => new DatabaseSync(join(s.dataDir, "sessionpool.db"), { readOnly: true });
    const sealed = () => {
      const conn = db();
      try {
        return Object.fromEntries(
          (
            conn.prepare("SELECT name, sealed FROM pool_secrets ORDER BY name").all() as {
              name: string;
              sealed: string;
            }[]
          ).map((r) => [r.name, r.sealed]),
        );
      } finally {
        conn.close();
      }
    };
    try {
      const value = `roundtrip-${randomUUID()}`;
      const put = await call("PUT", poolUrl(s.url, "roundtrip"), {
        body: {
          location: "eastus",
          properties: {
            secrets: [
              { name: "a", value },
              { name: "b", value: "second" },
            ],
          },
        },
      });
      assert.equal(put.status, 201, put.text);
      const original = sealed();
      assert.deepEqual(Object.keys(original), ["a", "b"]);
      assert.ok(!JSON.stringify(original).includes(value));

      const got = await call("GET", poolUrl(s.url, "roundtrip"));
      assert.deepEqual((got.body as { properties: Json }).properties["secrets"], [
        { name: "a" },
        { name: "b" },
      ]);
      const again = await call("PUT", poolUrl(s.url, "roundtrip"), { body: got.body });
      assert.equal(again.status, 200, again.text);
      assert.deepEqual(sealed(), original);

      const patched = await call("PATCH", poolUrl(s.url, "roundtrip"), {
        body: { properties: { secrets: [{ name: "a" }, { name: "b", value: "changed" }] } },
      });
      assert.equal(patched.status, 202, patched.text);
      const now = sealed();
      assert.equal(now["a"], original["a"]);
      assert.notEqual(now["b"], original["b"]);
    } finally {
      await s.close();
    }
  });

  it("operations in progress when the server stops resume and finish after the restart", async () => {
    const dataDir = tempDir();
    const first = gatedBackend();
    let s = await startTestServer({ dataDir, backend: first.factory });
    try {
      const creating = await call("PUT", poolUrl(s.url, "resumeput"), { body: { location: "eastus" } });
      assert.equal(creating.status, 201, creating.text);
      const doomed = await call("PUT", poolUrl(s.url, "resumedel"), { body: { location: "eastus" } });
      await first.finish("provision", "resumedel");
      await waitForOperation(doomed.headers["azure-asyncoperation"]!);
      const deleting = await call("DELETE", poolUrl(s.url, "resumedel"));
      assert.equal(deleting.status, 202, deleting.text);
      await s.close();

      const second = gatedBackend();
      s = await startTestServer({ dataDir, backend: second.factory });
      const createOp = rebase(creating.headers["azure-asyncoperation"]!, s.url);
      const deleteOp = rebase(deleting.headers["azure-asyncoperation"]!, s.url);
      assert.equal(((await call("GET", createOp)).body as Json)["status"], "InProgress");
      assert.equal(((await call("GET", deleteOp)).body as Json)["status"], "InProgress");
      await second.finish("provision", "resumeput");
      await second.finish("deprovision", "resumedel");
      assert.equal((await waitForOperation(createOp))["status"], "Succeeded");
      assert.equal((await waitForOperation(deleteOp))["status"], "Succeeded");
      assert.equal((await call("GET", poolUrl(s.url, "resumedel"))).status, 404);
      const pool = await call("GET", poolUrl(s.url, "resumeput"));
      assert.equal((pool.body as { properties: Json }).properties["provisioningState"], "Succeeded");
      assert.equal((await call("GET", rebase(deleting.headers["location"]!, s.url))).status, 204);
    } finally {
      await s.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it("a generated admin token is kept in the data dir and reused on the next start", async () => {
    const dataDir = tempDir();
    let s = await startTestServer({ dataDir, adminToken: undefined });
    try {
      const path = s.server.adminTokenPath!;
      assert.equal(path, join(dataDir, "admin-token"));
      const token = readFileSync(path, "utf8").trim();
      assert.ok(token.length >= 32);
      assert.equal((await call("GET", listUrl(s.url), { token })).status, 200);
      assert.equal((await call("GET", listUrl(s.url), { token: ADMIN_TOKEN })).status, 401);
      await s.close();
      s = await startTestServer({ dataDir, adminToken: undefined });
      assert.equal(readFileSync(path, "utf8").trim(), token);
      assert.equal((await call("GET", listUrl(s.url), { token })).status, 200);
    } finally {
      await s.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe("child processes: restarts and the serve command", { concurrency: true }, () => {
  // Each test below waits mostly on a child process starting; running them side by side keeps the file quick.
  describe("restarts as a child process (SIGTERM, then SIGKILL)", () => {
    const secret1 = `sv1-${randomUUID()}`;
    const secret2 = `sv2-${randomUUID()}`;
    const secret3 = `sv3-${randomUUID()}`;
    const secrets = [secret1, secret2, secret3];
    const args = ["--no-runtime", "--log-level", "debug", "--public-url", "https://sessions.example.test"];
    const dataDir = tempDir();
    const outputs: string[] = [];
    let server: ChildServer | undefined;

    const noSecrets = (text: string, where: string) => {
      for (const value of secrets) assert.ok(!text.includes(value), `a secret value appears in ${where}`);
    };

    after(async () => {
      await server?.kill();
      rmSync(dataDir, { recursive: true, force: true });
    });

    it("keeps pools, operations, identities and secrets across SIGTERM and SIGKILL, never showing a secret", async () => {
      server = await spawnServer(args, {}, dataDir);
      const base = () => server!.url;

      const keep1 = await call("PUT", poolUrl(base(), "keep1"), {
        body: {
          location: "East US",
          identity: { type: "SystemAssigned" },
          tags: { app: "one" },
          properties: { secrets: [{ name: "api-key", value: secret1 }] },
        },
      });
      assert.equal(keep1.status, 201, keep1.text);
      const keep2 = await call("PUT", poolUrl(base(), "keep2", "2025-07-01", "rg2"), {
        body: {
          location: "westeurope",
          properties: {
            containerType: "CustomContainer",
            environmentId: ENV_ID,
            secrets: [{ name: "registry-password", value: secret2 }],
            customContainerTemplate: {
              registryCredentials: {
                server: "registry.example.test",
                username: "puller",
                passwordSecretRef: "registry-password",
              },
              containers: [
                {
                  image: "registry.example.test/app:1",
                  name: "app",
                  env: [{ name: "PASSWORD", secretRef: "registry-password" }],
                },
              ],
              ingress: { targetPort: 8080 },
            },
          },
        },
      });
      assert.equal(keep2.status, 201, keep2.text);
      const patched = await call("PATCH", poolUrl(base(), "keep1"), {
        body: { properties: { secrets: [{ name: "api-key" }, { name: "other", value: secret3 }] } },
      });
      assert.equal(patched.status, 202, patched.text);
      for (const r of [keep1, keep2, patched]) noSecrets(r.text, "a PUT/PATCH response");
      assert.deepEqual((patched.body as { properties: Json }).properties["secrets"], [
        { name: "api-key" },
        { name: "other" },
      ]);

      const ops = [keep1, keep2, patched].map((r) => ({
        async: r.headers["azure-asyncoperation"]!,
        location: r.headers["location"]!,
      }));
      assert.ok(
        ops.every((o) => o.async.startsWith("https://sessions.example.test/")),
        "LRO URLs use the public URL",
      );
      const opBodies: unknown[] = [];
      for (const op of ops) opBodies.push(await waitForOperation(rebase(op.async, base())));
      const tokenBefore = (
        (await call("POST", authtokenUrl(base(), "keep1"))).body as { properties: { token: string } }
      ).properties.token;

      const snapshot = async () => {
        const out: Record<string, unknown> = {};
        for (const [name, rg] of [
          ["keep1", "rg1"],
          ["keep2", "rg2"],
          ["afterkill", "rg1"],
        ] as const) {
          const r = await call("GET", poolUrl(base(), name, "2025-07-01", rg));
          noSecrets(r.text, "a GET response");
          out[name] = r.status === 200 ? r.body : r.status;
        }
        for (const url of [listUrl(base()), listUrl(base(), "rg1"), listUrl(base(), "rg2")]) {
          const r = await call("GET", url);
          assert.equal(r.status, 200, r.text);
          noSecrets(r.text, "a list response");
          out[url.replace(base(), "")] = (r.body as { value: Json[] }).value.map((p) => p["name"]);
        }
        return out;
      };
      const beforeStop = await snapshot();
      assert.equal(
        ((beforeStop["keep1"] as Json)["properties"] as Json)["poolManagementEndpoint"],
        `https://sessions.example.test/subscriptions/${SUB}/resourceGroups/rg1/sessionPools/keep1`,
      );

      // SIGTERM: a clean exit, then everything is back on the next start.
      assert.equal(await server.stop(), 0);
      outputs.push(server.output());
      assert.deepEqual(filesContaining(dataDir, secret1), [], "a secret value is in the data dir in clear");
      server = await spawnServer(args, {}, dataDir);
      assert.deepEqual(await snapshot(), beforeStop);
      for (const [i, op] of ops.entries()) {
        const again = await call("GET", rebase(op.async, base()));
        assert.equal(again.status, 200, again.text);
        assert.deepEqual(again.body, opBodies[i]);
        const result = await call("GET", rebase(op.location, base()));
        assert.equal(result.status, 200, result.text);
        noSecrets(result.text, "an operation result");
      }
      // The token-signing key survived too: the old pool token still verifies (and, being a pool token, is refused).
      assert.equal((await call("GET", listUrl(base()), { token: tokenBefore })).status, 403);

      // Changes after the restart, then SIGKILL: no shutdown at all, the WAL holds the latest writes.
      const late = await call("PUT", poolUrl(base(), "afterkill"), {
        body: { location: "eastus", properties: { secrets: [{ name: "late", value: secret1 }] } },
      });
      assert.equal(late.status, 201, late.text);
      await waitForOperation(rebase(late.headers["azure-asyncoperation"]!, base()));
      const tagged = await call("PATCH", poolUrl(base(), "keep2", "2025-07-01", "rg2"), {
        body: { tags: { after: "restart" } },
      });
      assert.equal(tagged.status, 202, tagged.text);
      await waitForOperation(rebase(tagged.headers["azure-asyncoperation"]!, base()));
      const beforeKill = await snapshot();
      await server.kill();
      outputs.push(server.output());
      assert.ok(
        existsSync(join(dataDir, "sessionpool.db-wal")),
        "after SIGKILL the WAL is still there to be read",
      );
      for (const value of secrets) {
        assert.deepEqual(
          filesContaining(dataDir, value),
          [],
          "a secret value is in the database or its WAL in clear",
        );
      }

      server = await spawnServer(args, {}, dataDir);
      assert.deepEqual(await snapshot(), beforeKill);
      assert.equal(await server.signal("SIGINT"), 0, "SIGINT shuts down cleanly too");
      outputs.push(server.output());

      // Debug logs of all three runs: requests were logged, secret values and the admin token never.
      const logs = outputs.join("\n");
      assert.match(logs, /"msg":"request completed"/);
      noSecrets(logs, "the server's log output");
      assert.ok(!logs.includes(ADMIN_TOKEN), "the admin token appears in the log output");
      server = undefined;
    });
  });

  describe("sessionpool serve", { concurrency: true }, () => {
    it("generates the admin token file (0600) and never prints it; --tls-self-signed serves HTTPS its CA verifies", async () => {
      // On 0.0.0.0, which TLS makes acceptable without --insecure-http; only loopback traffic reaches it here.
      const server = await spawnServer(["--no-runtime", "--tls-self-signed", "--host", "0.0.0.0"], {
        SESSIONPOOL_ADMIN_TOKEN: "",
      });
      try {
        assert.ok(server.url.startsWith("https://127.0.0.1:"), server.url);
        const tokenPath = join(server.dataDir, "admin-token");
        assert.match(server.output(), new RegExp(`Admin token file: ${tokenPath}`));
        assert.equal(statSync(tokenPath).mode & 0o777, 0o600);
        const token = readFileSync(tokenPath, "utf8").trim();
        assert.ok(token.length >= 32);

        const caPath = /^TLS CA certificate: (\S+)$/m.exec(server.output())?.[1];
        assert.equal(caPath, join(server.dataDir, "tls", "ca.pem"));
        const verifying = new Agent({ connect: { ca: readFileSync(caPath!) } });
        try {
          const r = await call("GET", listUrl(server.url), { token, dispatcher: verifying });
          assert.equal(r.status, 200, r.text);
        } finally {
          await verifying.close();
        }
        // Without the CA the certificate does not verify: it really is the private CA's.
        const strict = new Agent();
        try {
          await assert.rejects(
            call("GET", listUrl(server.url), { token, dispatcher: strict }),
            (err: Error) => {
              assert.match(
                String((err as { code?: string }).code ?? err.message),
                /CERT|SELF_SIGNED|VERIFY/i,
              );
              return true;
            },
          );
        } finally {
          await strict.close();
        }
        assert.equal(await server.stop(), 0, "SIGTERM exits 0");
        assert.ok(!server.output().includes(token), "the generated admin token was printed");
      } finally {
        await server.kill();
        rmSync(server.dataDir, { recursive: true, force: true });
      }
    });

    it("refuses plain HTTP on a non-loopback address with a clear message", async () => {
      const dataDir = tempDir();
      const r = await runCli([
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        "0",
        "--data-dir",
        dataDir,
        "--no-runtime",
      ]);
      assert.notEqual(r.code, 0);
      assert.match(r.output, /0\.0\.0\.0/);
      assert.match(r.output, /--insecure-http/);
      assert.match(r.output, /--tls-self-signed|--tls-cert/);
      assert.doesNotMatch(r.output, /listening/);
      rmSync(dataDir, { recursive: true, force: true });
    });

    it("serves plain HTTP on a non-loopback address with --insecure-http", async () => {
      const direct = await startTestServer({ host: "0.0.0.0", insecureHttp: true });
      try {
        assert.equal((await call("GET", listUrl(direct.url))).status, 200);
      } finally {
        await direct.close();
      }
    });
  });
});
