// Fleet forwarding (src/http/dataplane/fleet-forwarding.ts) between two real servers in this process, each with its
// own SQLite data dir and fake engine (test/helpers/fake-driver.ts) but the same keys and admin token, and a stub
// FleetRouting that places identifiers "remote-*" on server B and "down-*" on a server that is not running.
// Code-interpreter requests show routing, execution and streamed answers; a custom container pool (the "container"
// is a server of this test on 127.0.0.1, one per fleet server, saying which it is) shows bodies and events streaming
// through both hops, and upgrades.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { type AddressInfo, connect, type Socket } from "node:net";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import { dockerBackend } from "../../src/backend-wiring.ts";
import { type FleetRouting, FORWARDED_BY_HEADER, type Route } from "../../src/core/fleet/fleet-routing.ts";
import type { StoredMember } from "../../src/store/store.ts";
import { FakeSandboxDriver } from "../helpers/fake-driver.ts";
import { multipartFile } from "../helpers/runtime.ts";
import {
  ADMIN_TOKEN,
  call,
  poolUrl,
  SUB,
  startTestServer,
  type TestServer,
  tempDir,
  waitForOperation,
} from "../helpers/server.ts";

const API = "api-version=2025-10-02-preview";
const PY = "fleetpy";
const APP = "fleetapp";

/** Where each identifier lives, as every server's stub sees it: "remote-*" on B, "down-*" on C (not running). */
function ownerOf(identifier: string): string | undefined {
  if (identifier.startsWith("remote-")) return "B";
  if (identifier.startsWith("down-")) return "C";
  return undefined;
}

function member(id: string, address: string): StoredMember {
  const now = new Date().toISOString();
  return {
    id,
    address,
    capacity: 100,
    engineUp: true,
    ready: {},
    allocated: {},
    startedAt: now,
    heartbeatAt: now,
  };
}

/** The router a test controls; it records every question it is asked. */
class StubFleet implements FleetRouting {
  readonly selfId: string;
  readonly members = new Map<string, StoredMember>();
  readonly calls: { identifier: string; forwarded: boolean }[] = [];
  /** Says "forward" to this member for every request, forwarded ones too (a broken router). */
  misrouteTo: string | undefined;

  constructor(selfId: string) {
    this.selfId = selfId;
  }

  async route(_poolKey: string, identifier: string, options: { forwarded: boolean }): Promise<Route> {
    this.calls.push({ identifier, forwarded: options.forwarded });
    if (this.misrouteTo !== undefined) return { kind: "forward", member: this.members.get(this.misrouteTo)! };
    const owner = ownerOf(identifier) ?? this.selfId;
    if (options.forwarded || owner === this.selfId) return { kind: "local" };
    return { kind: "forward", member: this.members.get(owner)! };
  }

  peers(): readonly StoredMember[] {
    return [...this.members.values()];
  }
}

// ---- the "containers" of the custom pool: a server of this test for each fleet server's sessions ----

let releaseEvents: () => void = () => {};
let eventsReleased = new Promise<void>((r) => (releaseEvents = r));

/** Every answer says which fleet server's sessions it serves (x-container). */
function containerApp(tag: string): Server {
  const stored = new Map<string, Buffer>();
  const app = createServer((req, res) => {
    res.setHeader("x-container", tag);
    const url = new URL(req.url ?? "/", "http://container");
    const id = url.searchParams.get("identifier") ?? "";
    if (url.pathname.endsWith("/upload")) {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks);
        stored.set(id, body);
        res.writeHead(200, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            bytes: body.length,
            sha256: createHash("sha256").update(body).digest("hex"),
            contentType: req.headers["content-type"],
          }),
        );
      });
      return;
    }
    if (url.pathname.endsWith("/download")) {
      const body = stored.get(id);
      if (!body) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { "content-type": "application/octet-stream" });
      res.end(body);
      return;
    }
    if (url.pathname.endsWith("/events")) {
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      res.write("event: tick\ndata: 1\n\n");
      void eventsReleased.then(() => res.end("event: tick\ndata: 2\n\n"));
      return;
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ path: url.pathname, headers: req.headers }));
  });
  // An echo after the handshake: whatever the client sends comes back.
  app.on("upgrade", (req: IncomingMessage, socket: Socket) => {
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${req.headers.upgrade}\r\nConnection: Upgrade\r\nx-container: ${tag}\r\nx-saw-forwarded-by: ${req.headers[FORWARDED_BY_HEADER] ?? "no"}\r\n\r\n`,
    );
    socket.pipe(socket);
  });
  return app;
}

// ---- the two servers ----

const stubA = new StubFleet("A");
const stubB = new StubFleet("B");
const driverA = new FakeSandboxDriver();
const driverB = new FakeSandboxDriver();
let a: TestServer;
let b: TestServer;
const containers: Server[] = [];
let dirB: string;

async function createPool(s: TestServer, name: string, properties: Record<string, unknown>): Promise<void> {
  const put = await call("PUT", poolUrl(s.url, name), { body: { location: "eastus", properties } });
  assert.equal(put.status, 201, put.text);
  assert.equal((await waitForOperation(put.headers["azure-asyncoperation"]!))["status"], "Succeeded");
}

/** A port nothing listens on (a member that is down). */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

before(async () => {
  for (const tag of ["A", "B"]) {
    const app = containerApp(tag);
    await new Promise<void>((r) => app.listen(0, "127.0.0.1", r));
    containers.push(app);
  }

  a = await startTestServer({ backend: dockerBackend({ driver: driverA, fleet: stubA }) });
  // B shares A's keys (as the servers of a fleet share them), so each accepts what the other signed and sealed.
  dirB = tempDir();
  mkdirSync(join(dirB, "keys"), { recursive: true, mode: 0o700 });
  for (const key of ["secrets.key", "token-signing.key"]) {
    copyFileSync(join(a.dataDir, "keys", key), join(dirB, "keys", key));
  }
  b = await startTestServer({ dataDir: dirB, backend: dockerBackend({ driver: driverB, fleet: stubB }) });
  const down = `http://127.0.0.1:${await closedPort()}`;
  stubA.members.set("B", member("B", b.url)).set("C", member("C", down));
  stubB.members.set("A", member("A", a.url));

  for (const [i, s] of [a, b].entries()) {
    await createPool(s, PY, { scaleConfiguration: { maxConcurrentSessions: 10, readySessionInstances: 0 } });
    await createPool(s, APP, {
      containerType: "CustomContainer",
      scaleConfiguration: { maxConcurrentSessions: 10, readySessionInstances: 1 },
      customContainerTemplate: {
        containers: [{ image: "registry.example.test/app:1", name: "app" }],
        // The same pool on both; in this test each server's sandboxes are its own container server.
        ingress: { targetPort: (containers[i]!.address() as AddressInfo).port },
      },
    });
  }
});

after(async () => {
  await a?.close();
  await b?.close();
  if (dirB) rmSync(dirB, { recursive: true, force: true });
  driverA.dispose();
  driverB.dispose();
  releaseEvents();
  for (const app of containers) {
    app.closeAllConnections();
    await new Promise<void>((r) => app.close(() => r()));
  }
});

const endpoint = (s: TestServer, pool: string) =>
  `${s.url}/subscriptions/${SUB}/resourceGroups/rg1/sessionPools/${pool}`;
const at = (s: TestServer, pool: string, path: string, identifier: string) =>
  `${endpoint(s, pool)}${path}?${API}&identifier=${encodeURIComponent(identifier)}`;

/** The identifiers a server holds itself (a forwarded listSessions answers with the server's own sessions). */
async function ownIdentifiers(s: TestServer, pool: string): Promise<string[]> {
  const r = await call("GET", `${endpoint(s, pool)}/listSessions?${API}`, {
    headers: { [FORWARDED_BY_HEADER]: "test" },
  });
  assert.equal(r.status, 200, r.text);
  return (r.body as { sessions: { identifier: string }[] }).sessions.map((x) => x.identifier);
}

describe("requests for another server's session", () => {
  it("an execution sent to A for a session of B runs on B", async () => {
    const r = await call("POST", at(a, PY, "/executions", "remote-1"), { body: { code: "1+1" } });
    assert.equal(r.status, 200, r.text);
    const body = r.body as { identifier: string; status: string; result: { executionResult: unknown } };
    assert.equal(body.identifier, "remote-1");
    assert.equal(body.status, "Succeeded");
    assert.equal(body.result.executionResult, 2);
    assert.ok(r.headers["x-ms-session-guid"], "B's allocation headers come back through A");
    assert.deepEqual(
      stubA.calls.filter((c) => c.identifier === "remote-1"),
      [{ identifier: "remote-1", forwarded: false }],
    );

    // The session is B's: B shows it, A (asked as a peer would ask it) has none.
    const onB = await call("GET", at(b, PY, "/session", "remote-1"));
    assert.equal(onB.status, 200, onB.text);
    assert.equal((onB.body as { identifier: string }).identifier, "remote-1");
    const onA = await call("GET", at(a, PY, "/session", "remote-1"), {
      headers: { [FORWARDED_BY_HEADER]: "B" },
    });
    assert.equal(onA.status, 404, onA.text);
    assert.equal(onA.headers["x-ms-error-code"], "SessionNotFound");
    assert.ok((await ownIdentifiers(b, PY)).includes("remote-1"));
    assert.ok(!(await ownIdentifiers(a, PY)).includes("remote-1"));

    // A session of A's own stays on A.
    const local = await call("POST", at(a, PY, "/executions", "local-1"), { body: { code: "1+1" } });
    assert.equal(local.status, 200, local.text);
    assert.ok((await ownIdentifiers(a, PY)).includes("local-1"));
    assert.ok(!(await ownIdentifiers(b, PY)).includes("local-1"));
  });

  it("a streamed execution comes through A as server-sent events", async () => {
    const res = await request(at(a, PY, "/executions", "remote-sse"), {
      method: "POST",
      headers: {
        authorization: `Bearer ${ADMIN_TOKEN}`,
        "content-type": "application/json",
        accept: "text/event-stream",
      },
      body: JSON.stringify({ code: "1+1" }),
    });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers["content-type"]), /^text\/event-stream/);
    assert.ok(res.headers["operation-id"], "the execution's id is in the headers");
    const text = await res.body.text();
    const events = [...text.matchAll(/^event: (\w+)$/gm)].map((m) => m[1]);
    assert.equal(events.at(-1), "result", text);
    const result = JSON.parse(/^event: result\ndata: (.*)$/m.exec(text)![1]!) as { status: string };
    assert.equal(result.status, "Succeeded");
    assert.ok((await ownIdentifiers(b, PY)).includes("remote-sse"));
    assert.ok(!(await ownIdentifiers(a, PY)).includes("remote-sse"));
  });

  it("a custom container's event stream comes through A event by event", async () => {
    const res = await request(at(a, APP, "/events", "remote-events"), {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, accept: "text/event-stream" },
    });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers["content-type"]), /^text\/event-stream/);
    assert.equal(res.headers["cache-control"], "no-cache");
    assert.equal(res.headers["x-container"], "B", "B's session answers");
    const chunks = res.body[Symbol.asyncIterator]();
    let seen = "";
    // The container sends its second event only once released: the first arrives through both hops before.
    while (!seen.includes("data: 1\n\n")) {
      const next = await chunks.next();
      assert.ok(!next.done, `the stream ended before its first event: ${seen}`);
      seen += Buffer.from(next.value as Uint8Array).toString();
    }
    assert.ok(!seen.includes("data: 2"), "the second event is not sent yet");
    releaseEvents();
    for (let next = await chunks.next(); !next.done; next = await chunks.next()) {
      seen += Buffer.from(next.value as Uint8Array).toString();
    }
    assert.equal(seen, "event: tick\ndata: 1\n\nevent: tick\ndata: 2\n\n");
    eventsReleased = new Promise<void>((r) => (releaseEvents = r));
  });

  it("a multipart upload through A reaches B's session whole; B hands back the same bytes", async () => {
    const content = randomBytes(3 * 1024 * 1024 + 17);
    const { body, contentType } = multipartFile("data.bin", content);
    // Chunked, in pieces: A streams the body on as it comes.
    const pieces = Readable.from(
      (function* () {
        for (let i = 0; i < body.length; i += 256 * 1024) yield body.subarray(i, i + 256 * 1024);
      })(),
    );
    const up = await request(at(a, APP, "/upload", "remote-files"), {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": contentType },
      body: pieces,
    });
    const answer = (await up.body.json()) as { bytes: number; sha256: string; contentType: string };
    assert.equal(up.statusCode, 200);
    assert.equal(answer.bytes, body.length);
    assert.equal(answer.sha256, createHash("sha256").update(body).digest("hex"));
    assert.equal(answer.contentType, contentType);
    assert.equal(up.headers["x-container"], "B", "B's session took the upload");

    for (const s of [b, a]) {
      const down = await request(at(s, APP, "/download", "remote-files"), {
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      assert.equal(down.statusCode, 200);
      assert.equal(down.headers["x-container"], "B");
      assert.ok(Buffer.from(await down.body.arrayBuffer()).equals(body), "the same bytes come back");
    }
  });

  it("B's container never sees the caller's Authorization or the fleet's header", async () => {
    const r = await call("GET", at(a, APP, "/whoami", "remote-who"));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers["x-container"], "B");
    const headers = (r.body as { headers: Record<string, string> }).headers;
    assert.equal(headers[FORWARDED_BY_HEADER], undefined);
    assert.equal(headers["authorization"], undefined);
    assert.match(headers["x-forwarded-for"] ?? "", /127\.0\.0\.1/);
  });

  it("pipes a WebSocket upgrade through A to B's session", async () => {
    const path = `${new URL(endpoint(a, APP)).pathname}/ws?identifier=remote-ws`;
    const ws = await rawUpgrade(a, path, { authorization: `Bearer ${ADMIN_TOKEN}` });
    try {
      assert.match(ws.head, /^HTTP\/1\.1 101 /);
      assert.match(ws.head, /x-container: B/i, "B's session took the upgrade");
      assert.match(ws.head, /x-saw-forwarded-by: no/i);
      ws.socket.write("hello through two hops");
      assert.equal(await ws.read(22), "hello through two hops");
    } finally {
      ws.socket.destroy();
    }
  });
});

describe("forwarding failures", () => {
  it("a request forwarded once is never forwarded again", async () => {
    stubB.misrouteTo = "A";
    try {
      const callsOnA = stubA.calls.length;
      const r = await call("POST", at(a, PY, "/executions", "remote-loop"), { body: { code: "1+1" } });
      assert.equal(r.status, 503, r.text);
      assert.equal(r.headers["x-ms-error-code"], "FleetForwardLoop");
      assert.ok(r.headers["retry-after"]);
      const error = (r.body as { error: { code: string; message: string } }).error;
      assert.equal(error.code, "FleetForwardLoop");
      assert.match(error.message, /'A'/);
      // A was asked once, by the client; B never sent the request back.
      assert.deepEqual(stubA.calls.slice(callsOnA), [{ identifier: "remote-loop", forwarded: false }]);
      assert.deepEqual(stubB.calls.at(-1), { identifier: "remote-loop", forwarded: true });
      assert.ok(!(await ownIdentifiers(a, PY)).includes("remote-loop"));
      assert.ok(!(await ownIdentifiers(b, PY)).includes("remote-loop"));
    } finally {
      stubB.misrouteTo = undefined;
    }
  });

  it("a member that is down answers 503 FleetMemberUnreachable with Retry-After", async () => {
    const r = await call("POST", at(a, PY, "/executions", "down-1"), { body: { code: "1+1" } });
    assert.equal(r.status, 503, r.text);
    assert.equal(r.headers["x-ms-error-code"], "FleetMemberUnreachable");
    assert.ok(Number(r.headers["retry-after"]) > 0);
    const error = (r.body as { error: { code: string; message: string } }).error;
    assert.equal(error.code, "FleetMemberUnreachable");
    assert.match(error.message, /'C'/);
    assert.ok(!error.message.includes("127.0.0.1"), "the member's address stays internal");
    assert.ok(!(await ownIdentifiers(a, PY)).includes("down-1"));

    const path = `${new URL(endpoint(a, APP)).pathname}/ws?identifier=down-ws`;
    const ws = await rawUpgrade(a, path, { authorization: `Bearer ${ADMIN_TOKEN}` });
    try {
      assert.match(ws.head, /^HTTP\/1\.1 503 /);
      assert.match(ws.head, /x-ms-error-code: FleetMemberUnreachable/i);
      assert.match(ws.head, /retry-after: \d+/i);
    } finally {
      ws.socket.destroy();
    }
  });

  it("an unauthenticated request is refused before any routing", async () => {
    const calls = stubA.calls.length;
    const r = await call("POST", at(a, PY, "/executions", "remote-anon"), {
      token: null,
      body: { code: "1" },
    });
    assert.equal(r.status, 401, r.text);
    assert.equal(stubA.calls.length, calls, "the router was not asked");
  });
});

describe("listSessions in a fleet", () => {
  it("lists the pool's sessions of every server that answers, in allocation order", async () => {
    for (const id of ["remote-list", "local-list"]) {
      const r = await call("POST", at(a, PY, "/executions", id), { body: { code: "1+1" } });
      assert.equal(r.status, 200, r.text);
    }
    const own = { a: await ownIdentifiers(a, PY), b: await ownIdentifiers(b, PY) };
    assert.ok(own.a.includes("local-list") && own.b.includes("remote-list"));

    for (const s of [a, b]) {
      const r = await call("GET", `${endpoint(s, PY)}/listSessions?${API}`);
      assert.equal(r.status, 200, r.text);
      const sessions = (r.body as { sessions: { identifier: string; createdAt: string }[] }).sessions;
      assert.deepEqual(sessions.map((x) => x.identifier).sort(), [...own.a, ...own.b].sort());
      const created = sessions.map((x) => x.createdAt);
      assert.deepEqual(created, [...created].sort(), "ordered by allocation time");
      assert.equal((r.body as { nextLink?: string }).nextLink, undefined);
    }
    // The merged list is paged as one server's: skip counts across servers.
    const all = await call("GET", `${endpoint(a, PY)}/listSessions?${API}`);
    const skipped = await call("GET", `${endpoint(a, PY)}/listSessions?${API}&skip=1`);
    assert.equal(skipped.status, 200, skipped.text);
    assert.deepEqual(
      (skipped.body as { sessions: unknown[] }).sessions,
      (all.body as { sessions: unknown[] }).sessions.slice(1),
    );
  });
});

/** An upgrade request on a raw socket; answers the response head and a reader of what follows. */
async function rawUpgrade(
  s: TestServer,
  path: string,
  headers: Record<string, string>,
): Promise<{ socket: Socket; head: string; read: (n: number) => Promise<string> }> {
  const u = new URL(s.url);
  const socket = connect(Number(u.port), u.hostname);
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  let buffered = Buffer.alloc(0);
  let wake: () => void = () => {};
  socket.on("data", (c: Buffer) => {
    buffered = Buffer.concat([buffered, c]);
    wake();
  });
  let ended = false;
  socket.on("close", () => {
    ended = true;
    wake();
  });
  const waitFor = async (done: () => boolean) => {
    while (!done()) {
      if (ended) throw new Error(`the connection closed: ${buffered.toString()}`);
      await new Promise<void>((r) => (wake = r));
    }
  };
  const lines = [
    `GET ${path} HTTP/1.1`,
    `Host: ${u.host}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}`,
    "Sec-WebSocket-Version: 13",
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ];
  socket.write(`${lines.join("\r\n")}\r\n\r\n`);
  await waitFor(() => buffered.includes("\r\n\r\n"));
  const end = buffered.indexOf("\r\n\r\n");
  const head = buffered.subarray(0, end).toString("latin1");
  buffered = buffered.subarray(end + 4);
  return {
    socket,
    head,
    async read(n) {
      await waitFor(() => buffered.length >= n);
      const out = buffered.subarray(0, n).toString();
      buffered = buffered.subarray(n);
      return out;
    },
  };
}
