// Property-based tests over the data plane, with the real server and the real Docker engine: arbitrary query
// strings, identifiers, execution bodies, file names and multipart bodies never get a 5xx and every refusal is
// the documented envelope ({"error":{"code","message"}}, the code in x-ms-error-code and in docs/errors.md).
// Then every data-plane route, the custom-container proxy and its WebSocket upgrade refuse a missing, malformed,
// forged, expired or other-pool credential, and change nothing. Bugs the fuzz found have named regressions.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { connect } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import fc from "fast-check";
import { decodeJwt, SignJWT } from "jose";
import { PoolTokenService } from "../../src/auth/pool-tokens.ts";
import { DATA_PLANE_API_VERSIONS } from "../../src/http/dataplane/dataplane-routes.ts";
import { armPoolUrl, multipartFile, type RuntimeFixture, startRuntimeServer } from "../helpers/runtime.ts";
import { ADMIN_TOKEN, call, type Reply, ROOT, SUB, spawnServer } from "../helpers/server.ts";

const run = promisify(execFile);
const RG = `fuzz${Math.random().toString(36).slice(2, 7)}`;
const API = "2025-10-02-preview";
const LEGACY_API = "2024-02-02-preview";
const VERSIONS = DATA_PLANE_API_VERSIONS;
const PY = "fuzzpy";
const SHELL = "fuzzshell";
const OTHER = "fuzzother";
const CUSTOM = "fuzzcustom";
/** Loopback port 1 is closed: the engine's pull fails at once and the pool uses the engine's local copy. */
const CUSTOM_IMAGE = `127.0.0.1:1/sessionpool-fuzz:${randomBytes(4).toString("hex")}`;
const CUSTOM_PORT = 8080;
/** The identifier rule of the contract (docs/errors.md InvalidIdentifier): 4-128 of these characters. */
const IDENTIFIER = /^[a-zA-Z0-9_|}{[\]:";'<>?/.,@#$%^&*()\-+=!~`]{4,128}$/;
/** The only valid identifiers the fuzz may use, so it cannot exhaust the pool (odd but valid on purpose). */
const VALID_IDS = ["fuzz-one", `q"<'>?/.,@#$%^&*()!~\`|{}[]:;`, `z${"9".repeat(127)}`];

let fx: RuntimeFixture;
const DOCUMENTED = new Set(
  [...readFileSync(join(ROOT, "docs/errors.md"), "utf8").matchAll(/^\| `([A-Za-z]+)` \|/gm)].map(
    (m) => m[1]!,
  ),
);

before(async () => {
  await run("docker", ["tag", "sessionpool/python:latest", CUSTOM_IMAGE], { timeout: 60_000 });
  fx = await startRuntimeServer({ rg: RG });
  const ops = await Promise.all([
    fx.createPool(PY, { scaleConfiguration: { maxConcurrentSessions: 20, readySessionInstances: 2 } }),
    fx.createPool(SHELL, {
      containerType: "Shell",
      scaleConfiguration: { maxConcurrentSessions: 3, readySessionInstances: 0 },
    }),
    fx.createPool(OTHER, { scaleConfiguration: { maxConcurrentSessions: 1, readySessionInstances: 0 } }),
    fx.createPool(CUSTOM, {
      containerType: "CustomContainer",
      scaleConfiguration: { maxConcurrentSessions: 3, readySessionInstances: 1 },
      dynamicPoolConfiguration: {
        lifecycleConfiguration: { lifecycleType: "Timed", cooldownPeriodInSeconds: 300 },
      },
      customContainerTemplate: {
        containers: [
          {
            image: CUSTOM_IMAGE,
            name: "http",
            resources: { cpu: 0.25, memory: "0.5Gi" },
            command: ["python3"],
            args: ["-m", "http.server", String(CUSTOM_PORT), "--directory", "/tmp"],
          },
        ],
        ingress: { targetPort: CUSTOM_PORT },
      },
    }),
  ]);
  for (const op of ops) assert.equal(op["status"], "Succeeded", JSON.stringify(op));
});

after(async () => {
  try {
    await fx?.close();
  } finally {
    await run("docker", ["rmi", CUSTOM_IMAGE], { timeout: 60_000 }).catch(() => {});
  }
});

// ---- helpers ----

/** Never a 5xx; a refusal is JSON {"error":{"code","message"[,"target"]}} with a documented code, echoed in the header. */
function assertDocumented(r: Reply, what: string): void {
  const said = `${what}\n-> ${r.status} ${r.text.slice(0, 500)}`;
  assert.ok(r.status < 500, `5xx: ${said}`);
  if (r.status < 400) return;
  assert.match(r.headers["content-type"] ?? "", /^application\/json/, `not JSON: ${said}`);
  const error = (r.body as { error?: Record<string, unknown> } | undefined)?.error;
  assert.ok(error && typeof error === "object", `no error object: ${said}`);
  assert.equal(typeof error["code"], "string", `no code: ${said}`);
  assert.equal(typeof error["message"], "string", `no message: ${said}`);
  assert.deepEqual(
    Object.keys(error).filter((k) => !["code", "message", "target"].includes(k)),
    [],
    `extra fields in the data-plane envelope: ${said}`,
  );
  assert.ok(DOCUMENTED.has(error["code"] as string), `code not in docs/errors.md: ${said}`);
  assert.equal(r.headers["x-ms-error-code"], error["code"], `x-ms-error-code differs: ${said}`);
}

/** A successful execution answer in its generation's shape (the Shell shape carries the exit code as status). */
function assertExecutionShape(r: Reply, kind: "current" | "legacy" | "shell", what: string): void {
  const said = `${what}\n-> ${r.status} ${r.text.slice(0, 500)}`;
  const body = r.body as Record<string, unknown>;
  if (kind === "legacy") {
    const p = body["properties"] as Record<string, unknown>;
    assert.ok(["Success", "Failure"].includes(p["status"] as string), said);
    for (const k of ["stdout", "stderr"]) assert.equal(typeof p[k], "string", said);
    assert.equal(typeof p["executionTimeInMilliseconds"], "number", said);
    return;
  }
  assert.equal(typeof body["id"], "string", said);
  assert.equal(typeof body["identifier"], "string", said);
  if (body["status"] === "Running") return;
  const result = body["result"] as Record<string, unknown>;
  for (const k of ["stdout", "stderr"]) assert.equal(typeof result[k], "string", said);
  assert.equal(typeof result["executionTimeInMilliseconds"], "number", said);
  if (kind === "shell") {
    assert.match(String(body["status"]), /^(-?\d+|Failed)$/, said);
    assert.ok(!("executionResult" in result), said);
  } else {
    assert.ok(["Succeeded", "Failed"].includes(body["status"] as string), said);
    assert.ok("executionResult" in result, said);
  }
}

function errorCode(r: Reply): string | undefined {
  return (r.body as { error?: { code?: string } } | undefined)?.error?.code;
}

const q = (params: [string, string][]) =>
  params.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&");
const url = (pool: string, path: string, identifier: string, apiVersion = API) =>
  `${fx.endpoint(pool)}${path}?${q([
    ["api-version", apiVersion],
    ["identifier", identifier],
  ])}`;

async function poolToken(pool: string): Promise<string> {
  const r = await call("POST", armPoolUrl(fx.url, pool, RG).replace("?", "/getAuthtoken?"));
  assert.equal(r.status, 200, r.text);
  return (r.body as { properties: { token: string } }).properties.token;
}

function upload(
  target: string,
  filename: string,
  content: string | Buffer = "x",
  token?: string | null,
): Promise<Reply> {
  const { body, contentType } = multipartFile(filename, content);
  return call("POST", target, {
    raw: body,
    headers: { "content-type": contentType },
    ...(token === undefined ? {} : { token }),
  });
}

/** A WebSocket upgrade request: the status line, headers and body of the refusal (or 101). */
function upgradeRequest(
  target: string,
  authorization: string | undefined,
): Promise<{ status: number; headers: Record<string, string>; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(target, {
      headers: {
        connection: "Upgrade",
        upgrade: "websocket",
        "sec-websocket-version": "13",
        "sec-websocket-key": randomBytes(16).toString("base64"),
        ...(authorization === undefined ? {} : { authorization }),
      },
    });
    req.on("upgrade", (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, headers: {}, text: "" });
    });
    req.on("response", (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (text += d));
      res.on("end", () => {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(res.headers)) headers[k] = String(v);
        resolve({ status: res.statusCode ?? 0, headers, text });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

// ---- credentials ----

describe("every data-plane route refuses a bad credential and changes nothing", () => {
  const KEEPER = "auth-keeper";
  const VICTIM = "auth-victim";
  const PWN = "x = 0\nopen('/mnt/data/pwned.txt', 'w').write('pwned')";

  /** [method, path, body]: every route dataplane-routes.ts registers, and paths no route takes. */
  const routes = (identifier: string): [string, string, (() => Record<string, unknown>) | undefined][] => {
    const file = () => {
      const m = multipartFile("pwned.txt", "pwned");
      return { raw: m.body, headers: { "content-type": m.contentType } };
    };
    const legacyUrl = (path: string) => url(PY, path, identifier, LEGACY_API);
    return [
      [
        "POST",
        legacyUrl("/code/execute"),
        () => ({
          body: { properties: { code: PWN, codeInputType: "inline", executionType: "synchronous" } },
        }),
      ],
      ["POST", url(PY, "/executions", identifier), () => ({ body: { code: PWN } })],
      [
        "POST",
        url(PY, "/executions", identifier),
        () => ({ body: { code: PWN, executionType: "Asynchronous" } }),
      ],
      ["GET", url(PY, "/executions/00000000-0000-0000-0000-000000000000", identifier), undefined],
      ["POST", legacyUrl("/files/upload"), file],
      ["POST", url(PY, "/files", identifier), file],
      ["GET", url(PY, "/files", identifier), undefined],
      ["GET", legacyUrl("/files"), undefined],
      ["GET", url(PY, "/files/kept.txt", identifier), undefined],
      ["GET", url(PY, "/files/kept.txt/content", identifier), undefined],
      ["GET", legacyUrl("/files/content/kept.txt"), undefined],
      ["DELETE", url(PY, "/files/kept.txt", identifier), undefined],
      ["GET", url(PY, "/session", identifier), undefined],
      ["DELETE", url(PY, "/session", identifier), undefined],
      ["POST", url(PY, "/.management/stopSession", identifier), undefined],
      ["GET", `${fx.endpoint(PY)}/listSessions?api-version=${API}`, undefined],
      ["GET", `${fx.endpoint(PY)}/metadata?api-version=${API}`, undefined],
      ["GET", url(PY, "", identifier), undefined],
      ["PUT", url(PY, "/executions", identifier), () => ({ body: { code: PWN } })],
      ["GET", url(PY, "/no/such/route", identifier), undefined],
      // Custom container pools: every other path is proxied to the session's container; stopSession is ours.
      ["GET", url(CUSTOM, "/", identifier), undefined],
      ["POST", url(CUSTOM, "/anything/at/all", identifier), () => ({ body: { any: "thing" } })],
      ["POST", url(CUSTOM, "/.management/stopSession", identifier), undefined],
      ["GET", url(CUSTOM, "/listSessions", identifier), undefined],
    ];
  };

  /** [what, Authorization header (undefined: none), status, code]. */
  let credentials: [string, string | undefined, number, string][];
  let pyToken: string;
  let customToken: string;
  let keeperEtag: string;
  let customEtag: string;

  before(async () => {
    pyToken = await poolToken(PY);
    customToken = await poolToken(CUSTOM);
    const otherToken = await poolToken(OTHER);
    // Tokens made the way the server makes them: HS256 over the pool claim, with the server's key (expired),
    // with another key (bad signature), or unsigned.
    const claims = decodeJwt(pyToken);
    const key = readFileSync(join(fx.dataDir, "keys", "token-signing.key"), "utf8").trim();
    const expired = (
      await new PoolTokenService(key, 60, async () => undefined).issue(
        { key: claims["pool"] as string, uid: claims["puid"] as string },
        new Date(Date.now() - 7_200_000),
      )
    ).token;
    const forged = await new SignJWT(claims)
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .sign(randomBytes(32));
    const [head, payload, signature] = pyToken.split(".") as [string, string, string];
    const unsigned = `${Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url")}.${payload}.`;
    const flipped = `${head}.${payload}.${signature.slice(0, -2)}${signature.endsWith("AA") ? "BB" : "AA"}`;
    const invalid = "InvalidAuthenticationToken";
    credentials = [
      ["no Authorization header", undefined, 401, "AuthenticationFailed"],
      ["an empty Authorization header", "", 401, "AuthenticationFailed"],
      ["Bearer without a token", "Bearer", 401, invalid],
      ["Bearer with garbage", "Bearer not-a-token-at-all", 401, invalid],
      ["Bearer with three garbage parts", "Bearer a.b.c", 401, invalid],
      ["Bearer with two tokens", `Bearer ${pyToken} ${pyToken}`, 401, invalid],
      ["a Basic credential", `Basic ${Buffer.from("admin:admin").toString("base64")}`, 401, invalid],
      ["the pool token under another scheme", `Token ${pyToken}`, 401, invalid],
      ["a JWT signed with another key", `Bearer ${forged}`, 401, invalid],
      ["a JWT with a damaged signature", `Bearer ${flipped}`, 401, invalid],
      ["an unsigned JWT (alg none)", `Bearer ${unsigned}`, 401, invalid],
      ["an expired token for this pool", `Bearer ${expired}`, 401, invalid],
      ["the admin credential with a typo", `Bearer ${ADMIN_TOKEN.slice(0, -1)}x`, 401, invalid],
      ["a token for another pool", `Bearer ${otherToken}`, 403, "Forbidden"],
    ];

    // State the refused requests must leave alone: a Python session with a variable and a file, a custom one.
    const setup = await call("POST", url(PY, "/executions", KEEPER), {
      token: pyToken,
      body: { code: "x = 41\nopen('/mnt/data/kept.txt', 'w').write('kept')" },
    });
    assert.equal(setup.status, 200, setup.text);
    keeperEtag = await etagOf(PY, KEEPER);
    const custom = await call("GET", url(CUSTOM, "/", KEEPER), { token: customToken });
    assert.equal(custom.status, 200, custom.text);
    customEtag = await etagOf(CUSTOM, KEEPER);
  });

  /**
   * The session's container: GET /session on a PythonLTS pool. Every path of a custom pool but stopSession is
   * proxied, so there it is the pool's containers once the warm pool is refilled (the session and 1 ready).
   */
  async function etagOf(pool: string, identifier: string): Promise<string> {
    if (pool === CUSTOM) {
      for (let i = 0; ; i++) {
        const ids = await fx.containers(CUSTOM);
        if (ids.length === 2) return ids.sort().join(",");
        assert.ok(i < 600, `the custom pool has ${ids.length} containers, not 2`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const r = await call("GET", url(pool, "/session", identifier), { token: pyToken });
    assert.equal(r.status, 200, r.text);
    return (r.body as { etag: string }).etag;
  }

  it("accepts this pool's token (the control)", async () => {
    const r = await call("POST", url(PY, "/executions", KEEPER), { token: pyToken, body: { code: "x" } });
    assert.equal(r.status, 200, r.text);
    assert.equal((r.body as { result: { executionResult: unknown } }).result.executionResult, 41);
  });

  it("refuses every bad credential on every route with 401 (403 for another pool's token)", async () => {
    for (const identifier of [KEEPER, VICTIM]) {
      for (const [method, target, body] of routes(identifier)) {
        for (const [what, authorization, status, code] of credentials) {
          const options = (body ? body() : {}) as { headers?: Record<string, string> };
          const r = await call(method, target, {
            ...options,
            ...(authorization === undefined
              ? { token: null }
              : { headers: { ...options.headers, authorization } }),
          });
          const said = `${method} ${target} with ${what}`;
          assertDocumented(r, said);
          assert.equal(r.status, status, `${said}: ${r.status} ${r.text}`);
          assert.equal(errorCode(r), code, said);
          if (status === 401) assert.match(r.headers["www-authenticate"] ?? "", /^Bearer /, said);
          // Every GET route answers HEAD too (without a body): refused the same way.
          if (method === "GET") {
            const head = await call(
              "HEAD",
              target,
              authorization === undefined ? { token: null } : { headers: { authorization } },
            );
            assert.equal(head.status, status, `HEAD ${target} with ${what}`);
            assert.equal(head.headers["x-ms-error-code"], code, `HEAD ${target} with ${what}`);
          }
        }
      }
    }
  });

  it("refuses every bad credential on a WebSocket upgrade to a custom container session", async () => {
    for (const identifier of [KEEPER, VICTIM]) {
      const target = url(CUSTOM, "/ws", identifier);
      for (const [what, authorization, status, code] of credentials) {
        const r = await upgradeRequest(target, authorization);
        const said = `upgrade ${target} with ${what}`;
        assert.equal(r.status, status, `${said}: ${r.status} ${r.text}`);
        assert.equal(r.headers["x-ms-error-code"], code, said);
        assert.equal((JSON.parse(r.text) as { error: { code: string } }).error.code, code, said);
        assert.ok(DOCUMENTED.has(code));
      }
    }
  });

  it("left every session as it was and created none", async () => {
    // The keeper still runs in the same container, with its variable and without the refused file.
    assert.equal(await etagOf(PY, KEEPER), keeperEtag);
    const x = await call("POST", url(PY, "/executions", KEEPER), {
      token: pyToken,
      body: { code: "import os\n(x, sorted(os.listdir('/mnt/data')))" },
    });
    assert.equal(x.status, 200, x.text);
    assert.equal(
      (x.body as { result: { executionResult: unknown } }).result.executionResult,
      "(41, ['kept.txt'])",
    );
    // No session for the identifier only refused requests named.
    const list = await call("GET", `${fx.endpoint(PY)}/listSessions?api-version=${API}`, { token: pyToken });
    assert.equal(list.status, 200, list.text);
    const identifiers = (list.body as { sessions: { identifier: string }[] }).sessions.map(
      (s) => s.identifier,
    );
    assert.ok(identifiers.includes(KEEPER), identifiers.join(", "));
    assert.ok(!identifiers.includes(VICTIM), identifiers.join(", "));
    const victim = await call("GET", url(PY, "/session", VICTIM), { token: pyToken });
    assert.equal(victim.status, 404, victim.text);
    assert.equal(errorCode(victim), "SessionNotFound");
    // The custom pool: the same containers as before (none created, none stopped), and no session for VICTIM.
    assert.equal(await etagOf(CUSTOM, KEEPER), customEtag);
    const stop = await call("POST", url(CUSTOM, "/.management/stopSession", VICTIM), { token: customToken });
    assert.equal(stop.status, 404, stop.text);
    assert.equal(errorCode(stop), "SessionNotFound");
    // The other pool never got a session either.
    const other = await call("GET", `${fx.endpoint(OTHER)}/listSessions?api-version=${API}`);
    assert.equal(other.status, 200, other.text);
    assert.deepEqual((other.body as { sessions: unknown[] }).sessions, []);
  });
});

// ---- fuzz ----

/** Strings that cannot be identifiers (wrong length or a character outside the set), some very odd. */
const invalidIdentifier = fc.oneof(
  fc.string({ maxLength: 3 }),
  fc.string({ unit: "binary", minLength: 4, maxLength: 40 }).filter((s) => !IDENTIFIER.test(s)),
  fc.constantFrom(
    "x".repeat(129),
    "y".repeat(5000),
    "has space",
    "tab\there",
    "new\nline",
    "nul\u0000byte",
    "ünïcödé-id",
    "emoji-🙂🙂",
    "\u202eevil",
    "ｆｕｌｌｗｉｄｔｈ",
  ),
);
const identifierParam = fc.oneof(
  { weight: 2, arbitrary: fc.constantFrom(...VALID_IDS) },
  { weight: 3, arbitrary: invalidIdentifier },
);
const apiVersionParam = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...VERSIONS) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      "",
      "2025-10-02",
      "2025-10-02-PREVIEW",
      " 2025-10-02-preview",
      "2099-01-01-preview",
      "2025-07-01",
      "latest",
      "2025-10-02-preview\u0000",
    ),
  },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 30 }) },
);
/** A query parameter: a known name or any, with any value; left out, given once or repeated. */
const extraParam = fc.tuple(
  fc.oneof(
    fc.constantFrom("identifier", "api-version", "path", "skip", "recursive", "", "IDENTIFIER", "__proto__"),
    fc.string({ unit: "binary", maxLength: 12 }),
  ),
  fc.oneof(
    fc.string({ unit: "binary", maxLength: 30 }),
    fc.constantFrom("0", "-1", "1e3", "99999999999999999999999", "true", "../..", "/etc"),
  ),
);
/** Raw, not percent-encoded, text dropped into the query: broken escapes, separators, lone surrogates. */
const rawQueryJunk = fc.constantFrom(
  "",
  "&",
  "&&=&",
  "%",
  "%zz",
  "%ED%A0%80",
  "%C0%AF",
  "%00",
  "a+b=c+d",
  "identifier",
  "identifier=&identifier=",
  "api-version=%",
  ";identifier=fuzz-one",
);

/** [method, path] on the Python pool; file routes name a fixed file (file names have their own property). */
const PY_ROUTES: [string, string][] = [
  ["POST", "/code/execute"],
  ["POST", "/executions"],
  ["GET", "/executions/00000000-0000-0000-0000-000000000000"],
  ["POST", "/files/upload"],
  ["POST", "/files"],
  ["GET", "/files"],
  ["GET", "/files/q.txt"],
  ["GET", "/files/q.txt/content"],
  ["GET", "/files/content/q.txt"],
  ["DELETE", "/files/q.txt"],
  ["GET", "/session"],
  ["DELETE", "/session"],
  ["POST", "/.management/stopSession"],
  ["GET", "/listSessions"],
  ["GET", "/metadata"],
  ["PATCH", "/executions"],
  ["GET", ""],
];

function bodyFor(method: string, path: string): Record<string, unknown> {
  if (method !== "POST") return {};
  if (path === "/code/execute") {
    return { body: { properties: { code: "1+1", codeInputType: "inline", executionType: "synchronous" } } };
  }
  if (path === "/executions") return { body: { code: "1+1" } };
  if (path.startsWith("/files")) {
    const m = multipartFile("q.txt", "fuzz");
    return { raw: m.body, headers: { "content-type": m.contentType } };
  }
  return {};
}

describe("fuzz: no input gets a 5xx, every refusal is documented", () => {
  it("query strings: api-version, identifier and other parameters, given, missing, empty or repeated", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...PY_ROUTES),
        fc.option(apiVersionParam, { nil: undefined }),
        fc.option(identifierParam, { nil: undefined }),
        fc.array(extraParam, { maxLength: 3 }),
        rawQueryJunk,
        fc.boolean(),
        async ([method, path], apiVersion, identifier, extra, junk, junkFirst) => {
          const params: [string, string][] = [];
          if (apiVersion !== undefined) params.push(["api-version", apiVersion]);
          if (identifier !== undefined) params.push(["identifier", identifier]);
          params.push(...extra);
          const encoded = q(params);
          const query = junkFirst ? `${junk}&${encoded}` : `${encoded}&${junk}`;
          const target = `${fx.endpoint(PY)}${path}?${query}`;
          const r = await call(method, target, bodyFor(method, path));
          assertDocumented(r, `${method} ${target}`);
        },
      ),
      { numRuns: 400 },
    );
  });

  it("identifiers on the custom container proxy: an invalid one never reaches a container", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.option(invalidIdentifier, { nil: undefined }),
        fc.constantFrom("GET", "POST", "DELETE"),
        fc.constantFrom("/", "/listSessions", "/executions", "/some/app/path"),
        async (identifier, method, path) => {
          const target = `${fx.endpoint(CUSTOM)}${path}${identifier === undefined ? "" : `?${q([["identifier", identifier]])}`}`;
          const r = await call(method, target);
          assertDocumented(r, `${method} ${target}`);
          assert.equal(r.status, 400, `${method} ${target}: ${r.text}`);
          assert.ok(["MissingIdentifier", "InvalidIdentifier"].includes(errorCode(r)!), r.text);
        },
      ),
      { numRuns: 60 },
    );
  });

  // Execution bodies: the fields the readers look at, with wrong types, odd numbers and nesting.
  const oddNumber = fc.oneof(
    fc.constantFrom(0, -1, 1, 220, 221, 1.5, 1e308, -1e308, 2 ** 53 + 2, Number.MIN_VALUE, 10_000_001),
    fc.integer(),
    fc.double(),
  );
  const anyValue = fc.oneof(
    fc.jsonValue({ maxDepth: 3 }),
    oddNumber,
    fc.constantFrom(
      "",
      "1",
      "60",
      "Inline",
      "inlinebase64",
      "InlineText",
      "Asynchronous",
      "synchronous",
      "x".repeat(70_000),
    ),
  );
  /** Code that is always quick, whatever else the body says (random code would be random programs). */
  const safeCode = fc.constantFrom(
    "1+1",
    "print('é🙂')",
    "'\\ud800'",
    "\u0000",
    "\ud800",
    "1/0",
    "raise SystemExit(3)",
    "import sys; sys.stdout.buffer.write(b'\\xff\\xfe')",
    "print('a' * 50_000)",
    "def f(:",
    "MQ==",
    "",
  );
  const execKey = fc.constantFrom(
    "code",
    "Code",
    "codeInputType",
    "executionType",
    "timeoutInSeconds",
    "outputStreamsMaxLength",
    "shellCommand",
    "execCommandAndArgs",
    "stdin",
    "properties",
    "__proto__",
    "constructor",
    "identifier",
  );
  /** A body a client could well send (so the fuzz reaches the interpreter), then with a field or two broken. */
  const plausibleBody = fc.record(
    {
      code: safeCode,
      codeInputType: fc.constantFrom("Inline", "inline", "InlineBase64", "InlineText"),
      executionType: fc.constantFrom("Synchronous", "synchronous", "Asynchronous"),
      timeoutInSeconds: fc.oneof(fc.integer({ min: 1, max: 30 }), fc.constantFrom("5", "30")),
      outputStreamsMaxLength: fc.integer({ min: 0, max: 100_000 }),
    },
    { requiredKeys: ["code"] },
  );
  const brokenBody = fc
    .tuple(plausibleBody, fc.dictionary(execKey, anyValue, { minKeys: 1, maxKeys: 2 }))
    .map(([body, broken]) => ({ ...body, ...broken }));
  const executionBody = fc.oneof(
    { weight: 3, arbitrary: plausibleBody },
    { weight: 1, arbitrary: plausibleBody.map((properties) => ({ properties })) },
    { weight: 3, arbitrary: brokenBody },
    { weight: 1, arbitrary: brokenBody.map((properties) => ({ properties })) },
    { weight: 1, arbitrary: fc.dictionary(execKey, fc.oneof(safeCode, anyValue), { maxKeys: 5 }) },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 4 }) },
  );
  /** How the body goes on the wire: JSON as JSON, under another content type, or not JSON at all. */
  const wire = fc.oneof(
    { weight: 4, arbitrary: fc.constant({ kind: "json" as const }) },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant("typed" as const),
        contentType: fc.constantFrom(
          "text/plain",
          "application/json; charset=utf-16",
          "application/JSON",
          "application/x-www-form-urlencoded",
          "multipart/form-data",
          "multipart/form-data; boundary=x",
          "application/octet-stream",
          "*/*",
          "garbage",
          "",
        ),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant("raw" as const),
        text: fc.oneof(
          fc.string({ unit: "binary", maxLength: 60 }),
          fc.constantFrom(
            "",
            "{",
            "[1,",
            '{"code":',
            "null",
            "1e999",
            '{"code":"1"}{"code":"2"}',
            "\ufeff{}",
          ),
        ),
      }),
    },
  );
  const operationId = fc.option(
    fc.oneof(fc.constantFrom("op-fuzz-1", "op-fuzz-2"), fc.stringMatching(/^[\x21-\x7e]{1,60}$/)),
    { nil: undefined },
  );

  it("execution bodies on /executions and /code/execute of a PythonLTS pool", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(
          ["/executions", API],
          ["/executions", "2024-10-02-preview"],
          ["/code/execute", LEGACY_API],
          ["/code/execute", "2024-08-02-preview"],
        ),
        executionBody,
        wire,
        operationId,
        async ([path, version], body, how, opId) => {
          const target = url(PY, path, VALID_IDS[0]!, version);
          const headers: Record<string, string> = opId === undefined ? {} : { "operation-id": opId };
          let options: Parameters<typeof call>[2];
          if (how.kind === "json") options = { body, headers };
          else if (how.kind === "typed")
            options = { raw: JSON.stringify(body), headers: { ...headers, "content-type": how.contentType } };
          else options = { raw: how.text, headers: { ...headers, "content-type": "application/json" } };
          const r = await call("POST", target, options);
          const said = `POST ${target} ${how.kind} ${JSON.stringify(body)?.slice(0, 300)}`;
          assertDocumented(r, said);
          if (r.status < 300) assertExecutionShape(r, path === "/code/execute" ? "legacy" : "current", said);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("execution bodies on /executions of a Shell pool", async () => {
    const command = fc.constantFrom("echo hi", "exit 3", "printf 'a\\0b'", "cat", "true", "echo é🙂 >&2", "");
    const args = fc.array(fc.constantFrom("echo", "printf", "true", "x", "", "\u0000", "é🙂", "-n"), {
      minLength: 1,
      maxLength: 3,
    });
    const plausible = fc.record(
      {
        shellCommand: command,
        stdin: fc.string({ unit: "binary", maxLength: 40 }),
        timeoutInSeconds: fc.integer({ min: 1, max: 30 }),
        outputStreamsMaxLength: fc.integer({ min: 0, max: 100_000 }),
      },
      { requiredKeys: ["shellCommand"] },
    );
    const plausibleArgv = fc.record(
      { execCommandAndArgs: args, stdin: fc.string({ unit: "binary", maxLength: 40 }) },
      { requiredKeys: ["execCommandAndArgs"] },
    );
    const shellKey = fc.constantFrom(
      "shellCommand",
      "execCommandAndArgs",
      "stdin",
      "timeoutInSeconds",
      "outputStreamsMaxLength",
      "code",
      "codeInputType",
      "executionType",
      "properties",
    );
    const shellBody = fc.oneof(
      { weight: 2, arbitrary: plausible },
      { weight: 2, arbitrary: plausibleArgv },
      {
        weight: 3,
        arbitrary: fc
          .tuple(
            fc.oneof(plausible, plausibleArgv),
            fc.dictionary(shellKey, anyValue, { minKeys: 1, maxKeys: 2 }),
          )
          .map(([body, broken]) => ({ ...body, ...broken })),
      },
      { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
    );
    await fc.assert(
      fc.asyncProperty(shellBody, wire, async (body, how) => {
        const target = url(SHELL, "/executions", VALID_IDS[0]!);
        const options =
          how.kind === "raw"
            ? { raw: how.text, headers: { "content-type": "application/json" } }
            : how.kind === "typed"
              ? { raw: JSON.stringify(body), headers: { "content-type": how.contentType } }
              : { body };
        const r = await call("POST", target, options);
        const said = `POST ${target} ${how.kind} ${JSON.stringify(body)?.slice(0, 300)}`;
        assertDocumented(r, said);
        if (r.status < 300) assertExecutionShape(r, "shell", said);
      }),
      { numRuns: 120 },
    );
  });

  // File names and paths: traversal, absolute, NUL, unicode, very long, percent signs, backslashes.
  const fileName = fc.oneof(
    fc.string({ unit: "binary", minLength: 1, maxLength: 30 }),
    fc.string({ unit: "grapheme", minLength: 1, maxLength: 20 }),
    fc.constantFrom(
      "..",
      ".",
      "../x",
      "a/../../x",
      "/etc/passwd",
      "/mnt/data",
      "/mnt/data/../etc",
      "/mnt/datax/y",
      "\\..\\x",
      "a\u0000b",
      "%2e%2e",
      "100%",
      "a%41",
      "dir/",
      "dir//x",
      "./x",
      " ",
      "con",
      "é🙂.txt",
      "x".repeat(255),
      "x".repeat(256),
      "é".repeat(200),
      "d/".repeat(2100),
      "x".repeat(5000),
    ),
  );
  const FILE_VERSIONS = [API, LEGACY_API, "2024-10-02-preview"];

  it("file names and paths on list, read, metadata, delete and upload", async () => {
    const route = fc.constantFrom(
      "list",
      "meta",
      "content",
      "legacyContent",
      "delete",
      "upload",
      "legacyUpload",
    );
    await fc.assert(
      fc.asyncProperty(
        route,
        fileName,
        fc.option(fileName, { nil: undefined }),
        fc.constantFrom(...FILE_VERSIONS),
        fc.constantFrom("encoded", "segments"),
        async (kind, name, dir, version, encoding) => {
          const identifier = VALID_IDS[1]!;
          const params: [string, string][] = [
            ["api-version", version],
            ["identifier", identifier],
          ];
          if (dir !== undefined) params.push(["path", dir]);
          if (kind === "list") params.push(["recursive", "true"]);
          // The name in the URL path: one encoded segment, or its '/'-separated parts encoded one by one.
          const inPath =
            encoding === "encoded"
              ? encodeURIComponent(name)
              : name.split("/").map(encodeURIComponent).join("/");
          const base = fx.endpoint(PY);
          const query = q(params);
          let r: Reply;
          let said: string;
          switch (kind) {
            case "list":
              said = `GET ${base}/files?${query}`;
              r = await call("GET", `${base}/files?${query}`);
              break;
            case "meta":
              said = `GET ${base}/files/${inPath}?${query}`;
              r = await call("GET", `${base}/files/${inPath}?${query}`);
              break;
            case "content":
              said = `GET ${base}/files/${inPath}/content?${query}`;
              r = await call("GET", `${base}/files/${inPath}/content?${query}`);
              break;
            case "legacyContent":
              said = `GET ${base}/files/content/${inPath}?${query}`;
              r = await call("GET", `${base}/files/content/${inPath}?${query}`);
              break;
            case "delete":
              said = `DELETE ${base}/files/${inPath}?${query}`;
              r = await call("DELETE", `${base}/files/${inPath}?${query}`);
              break;
            case "upload":
            case "legacyUpload": {
              const path = kind === "upload" ? "/files" : "/files/upload";
              said = `POST ${base}${path}?${query} filename=${JSON.stringify(name)}`;
              r = await upload(`${base}${path}?${query}`, name, "fuzz");
              break;
            }
          }
          assertDocumented(r, said);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("malformed multipart bodies: bad boundaries, no file part, cut short, several files", async () => {
    const token = fc.stringMatching(/^[A-Za-z0-9'()+_,.-]{1,70}$/);
    const boundary = fc.oneof(
      { weight: 4, arbitrary: token },
      {
        weight: 1,
        arbitrary: fc.constantFrom("", " ", '"quoted"', "a b", "x".repeat(71), "x".repeat(300), "é"),
      },
    );
    const part = fc.record({
      name: fc.constantFrom("file", "File", "upload", "", "__proto__", 'file"', "x"),
      filename: fc.option(
        fc.oneof(fc.constantFrom("p.txt", "", 'a"b', "../p", "é.txt"), fc.string({ maxLength: 12 })),
        {
          nil: undefined,
        },
      ),
      filenameStar: fc.boolean(),
      contentType: fc.option(fc.constantFrom("text/plain", "application/octet-stream", "", "garbage"), {
        nil: undefined,
      }),
      junkHeader: fc.option(fc.constantFrom("X-Junk: 1", "Garbage", ":", "Content-Disposition: nonsense"), {
        nil: undefined,
      }),
      content: fc.oneof(fc.string({ unit: "binary", maxLength: 40 }), fc.constantFrom("", "\r\n--", "--x--")),
    });
    const contentType = fc.constantFrom(
      (b: string) => `multipart/form-data; boundary=${b}`,
      (b: string) => `multipart/form-data; boundary="${b}"`,
      (b: string) => `Multipart/Form-Data;boundary=${b};charset=utf-8`,
      () => "multipart/form-data",
      () => "multipart/form-data; boundary=",
      (b: string) => `multipart/mixed; boundary=${b}`,
      (b: string) => `multipart/form-data; boundary=${b}; boundary=other`,
    );
    await fc.assert(
      fc.asyncProperty(
        boundary,
        fc.array(part, { maxLength: 3 }),
        contentType,
        fc.constantFrom("closed", "unclosed", "noCrlf", "junkBefore"),
        fc.option(fc.nat(), { nil: undefined }),
        fc.constantFrom("/files", "/files/upload"),
        async (b, parts, typeOf, ending, cutAt, path) => {
          const chunks = parts.map((p) => {
            const disposition = [
              `form-data; name="${p.name}"`,
              ...(p.filename === undefined
                ? []
                : [
                    p.filenameStar
                      ? `filename*=UTF-8''${encodeURIComponent(p.filename)}`
                      : `filename="${p.filename}"`,
                  ]),
            ].join("; ");
            const headers = [
              `Content-Disposition: ${disposition}`,
              ...(p.contentType === undefined ? [] : [`Content-Type: ${p.contentType}`]),
              ...(p.junkHeader === undefined ? [] : [p.junkHeader]),
            ];
            return `--${b}\r\n${headers.join("\r\n")}\r\n\r\n${p.content}\r\n`;
          });
          let text = chunks.join("");
          if (ending === "closed") text += `--${b}--\r\n`;
          if (ending === "noCrlf") text = text.replace(/\r\n/g, "\n") + `--${b}--`;
          if (ending === "junkBefore") text = `preamble junk\r\n${text}--${b}--\r\n`;
          let raw = Buffer.from(text);
          if (cutAt !== undefined && raw.length > 0) raw = raw.subarray(0, cutAt % raw.length);
          const version = path === "/files" ? API : LEGACY_API;
          const target = url(PY, path, VALID_IDS[2]!, version);
          const r = await call("POST", target, { raw, headers: { "content-type": typeOf(b) } });
          assertDocumented(
            r,
            `POST ${target} content-type=${typeOf(b)} body=${JSON.stringify(raw.toString())}`,
          );
        },
      ),
      { numRuns: 250 },
    );
  });
});

// ---- regressions for what the fuzz found ----

describe("regressions", () => {
  it("a file name with '%' in it is addressed by its name (the URL was decoded twice: 500, or another file)", async () => {
    const id = VALID_IDS[0]!;
    for (const name of ["100%.txt", "a%41.txt"]) {
      const up = await upload(url(PY, "/files", id), name, `content of ${name}`);
      assert.equal(up.status, 200, up.text);
      assert.equal((up.body as { name: string }).name, name);
      const meta = await call("GET", url(PY, `/files/${encodeURIComponent(name)}`, id));
      assert.equal(meta.status, 200, meta.text);
      assert.equal((meta.body as { name: string }).name, name);
      const down = await call("GET", url(PY, `/files/${encodeURIComponent(name)}/content`, id));
      assert.equal(down.status, 200, down.text);
      assert.equal(down.text, `content of ${name}`);
      const legacy = await call("GET", url(PY, `/files/content/${encodeURIComponent(name)}`, id, LEGACY_API));
      assert.equal(legacy.status, 200, legacy.text);
      assert.equal(legacy.text, `content of ${name}`);
      const del = await call("DELETE", url(PY, `/files/${encodeURIComponent(name)}`, id));
      assert.equal(del.status, 204, del.text);
    }
    // "aA.txt" was never uploaded: the double decoding used to find "a%41.txt" under this name's spelling.
    const other = await call("GET", url(PY, "/files/aA.txt", id));
    assert.equal(other.status, 404, other.text);
    assert.equal(errorCode(other), "FileNotFound");
  });

  it("a URL the router cannot decode answers 400 in the surface's envelope (was Fastify's own body)", async () => {
    const id = VALID_IDS[0]!;
    const query = q([
      ["api-version", API],
      ["identifier", id],
    ]);
    for (const path of ["/files/%/content", "/files/%ED%A0%80", "/executions/%zz", "/files/content/%"]) {
      const r = await call("GET", `${fx.endpoint(PY)}${path}?${query}`);
      assertDocumented(r, path);
      assert.equal(r.status, 400, r.text);
      assert.equal(errorCode(r), "BadRequest");
    }
    // A pool name past the router's parameter limit.
    const long = await call("GET", `${fx.endpoint("p".repeat(1100))}/files?${query}`);
    assertDocumented(long, "long pool name");
    assert.equal(errorCode(long), "BadRequest");
    // The management API answers the same mistake in ARM's envelope.
    const arm = await call(
      "GET",
      `${fx.url}/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.App/sessionPools/%?api-version=2025-07-01`,
    );
    assert.equal(arm.status, 400, arm.text);
    assert.equal(errorCode(arm), "BadRequest");
    assert.deepEqual((arm.body as { error: { details: unknown } }).error.details, []);
    assert.equal(arm.headers["x-ms-error-code"], "BadRequest");
  });

  it("a multipart body the parser cannot read answers 400 InvalidMultipartRequest (was 500)", async () => {
    const target = url(PY, "/files", VALID_IDS[0]!);
    const complete = multipartFile("cut.txt", "0123456789");
    const cases: [string, string, string | Buffer][] = [
      ["no boundary", "multipart/form-data", "--x\r\n"],
      ["an empty boundary", "multipart/form-data; boundary=", "--\r\n"],
      ["a boundary over 256 characters", `multipart/form-data; boundary=${"b".repeat(300)}`, "x"],
      ["a body cut short", complete.contentType, complete.body.subarray(0, complete.body.length - 20)],
      ["a body cut inside the part headers", complete.contentType, complete.body.subarray(0, 30)],
    ];
    for (const [what, contentType, raw] of cases) {
      const r = await call("POST", target, { raw, headers: { "content-type": contentType } });
      assertDocumented(r, what);
      assert.equal(r.status, 400, `${what}: ${r.text}`);
      assert.equal(errorCode(r), "InvalidMultipartRequest", what);
    }
    const list = await call("GET", url(PY, "/files", VALID_IDS[0]!));
    const names = (list.body as { value: { name: string }[] }).value.map((f) => f.name);
    assert.ok(!names.includes("cut.txt"), "nothing partial was written");
  });

  it("a name over 255 bytes answers InvalidFilePath before it reaches the sandbox", async () => {
    const id = VALID_IDS[0]!;
    for (const name of ["x".repeat(256), "é".repeat(128)]) {
      const up = await upload(url(PY, "/files", id), name);
      assert.equal(up.status, 400, up.text);
      assert.equal(errorCode(up), "InvalidFilePath");
      const get = await call("GET", url(PY, `/files/${encodeURIComponent(name)}`, id));
      assert.equal(get.status, 400, get.text);
      assert.equal(errorCode(get), "InvalidFilePath");
    }
    const ok = await upload(url(PY, "/files", id), "x".repeat(255));
    assert.equal(ok.status, 200, ok.text);
  });

  it("a Shell command the sandbox cannot exec answers 400 InvalidExecutionRequest (was 200 in the Python shape)", async () => {
    const identifier = "shell-nul-user";
    const bodies = [
      { execCommandAndArgs: [""] },
      { execCommandAndArgs: ["", "x"] },
      { execCommandAndArgs: ["echo", "a\u0000b"] },
      { shellCommand: "echo a\u0000b" },
    ];
    for (const body of bodies) {
      const r = await call("POST", url(SHELL, "/executions", identifier), { body });
      assertDocumented(r, JSON.stringify(body));
      assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
      assert.equal(errorCode(r), "InvalidExecutionRequest");
    }
    // Refused before a session was allocated; NUL in stdin is data and goes through.
    const session = await call("GET", url(SHELL, "/session", identifier));
    assert.equal(errorCode(session), "SessionNotFound");
    const ok = await call("POST", url(SHELL, "/executions", identifier), {
      body: { shellCommand: "od -An -c", stdin: "a\u0000b" },
    });
    assert.equal(ok.status, 200, ok.text);
    assertExecutionShape(ok, "shell", "stdin with NUL");
    assert.equal((ok.body as { status: string }).status, "0");
    assert.match((ok.body as { result: { stdout: string } }).result.stdout, /a\s+\\0\s+b/);
  });

  it("a client that resets a WebSocket upgrade does not crash the server (the socket had no error listener)", async () => {
    // A server process of its own: the crash was an uncaught 'error' event, which kills `serve`.
    const server = await spawnServer([]);
    try {
      const { hostname, port } = new URL(server.url);
      const path = `/subscriptions/${SUB}/resourceGroups/${RG}/sessionPools/${CUSTOM}/ws?identifier=reset-user`;
      for (let i = 0; i < 30; i++) {
        await new Promise<void>((resolve) => {
          const socket = connect({ host: hostname, port: Number(port) }, () => {
            socket.write(
              `GET ${path} HTTP/1.1\r\nHost: ${hostname}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nAuthorization: Bearer bad\r\n\r\n`,
            );
            // Reset at once or a moment later, so the refusal meets a connection already gone.
            setTimeout(() => {
              socket.resetAndDestroy();
              resolve();
            }, i % 3);
          });
          socket.on("error", () => resolve());
        });
      }
      const health = await call("GET", `${server.url}/healthz`, { token: null });
      assert.equal(health.status, 200);
      assert.equal(server.child.exitCode, null, server.output());
      assert.doesNotMatch(server.output(), /ECONNRESET|uncaught/i);
    } finally {
      await server.kill();
      rmSync(server.dataDir, { recursive: true, force: true });
    }
  });
});

describe("after the fuzz", () => {
  it("the server still runs code, lists files and sessions", async () => {
    const r = await fx.exec(PY, "after-fuzz", "print(6 * 7)");
    assert.equal(r.status, 200, r.text);
    assert.equal((r.body as { result: { stdout: string } }).result.stdout, "42\n");
    const shell = await call("POST", url(SHELL, "/executions", "after-fuzz"), {
      body: { shellCommand: "echo ok" },
    });
    assert.equal(shell.status, 200, shell.text);
    assert.equal((shell.body as { result: { stdout: string } }).result.stdout, "ok\n");
    const files = await call("GET", url(PY, "/files", VALID_IDS[1]!));
    assert.equal(files.status, 200, files.text);
    const list = await call("GET", `${fx.endpoint(PY)}/listSessions?api-version=${API}`);
    assert.equal(list.status, 200, list.text);
    assert.ok(
      (list.body as { sessions: { identifier: string }[] }).sessions.some(
        (s) => s.identifier === "after-fuzz",
      ),
    );
    const custom = await call("GET", url(CUSTOM, "/", "after-fuzz"));
    assert.equal(custom.status, 200, custom.text);
    assert.match(custom.text, /Directory listing/);
  });
});
