// CustomContainer pools against the real engine and a real private registry on loopback: a pool in the shape of
// the official example pulls the test web app (test/helpers/webapp/server.py) with registry credentials from
// pool secrets; requests under the pool endpoint reach each identifier's own container (env and secretRef,
// headers, streamed bodies both ways, 100-continue, SSE, WebSocket); stopSession, OnContainerExit (process exit
// and maxAlivePeriodInSeconds), cooldown and Liveness probes end sessions; the session limit answers 429; bad
// credentials, a missing image or a container that never serves fail the pool; and sessions reach neither the
// host nor each other, with egress disabled or enabled. One pool per concern, created concurrently up front
// and shared by the tests in file order (the clock only moves forward, near the end).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { request as httpRequest } from "node:http";
import { connect, createServer, type Server, type Socket } from "node:net";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { request } from "undici";
import { networkGateway, type PushedImage, pushWebappImage, WEBAPP_PORT } from "../helpers/custom-image.ts";
import { startRegistry, type TestRegistry } from "../helpers/registry.ts";
import { armPoolUrl, type RuntimeFixture, startRuntimeServer, until } from "../helpers/runtime.ts";
import { ADMIN_TOKEN, call, type Reply, SUB, waitForOperation } from "../helpers/server.ts";

const run = promisify(execFile);
const RG = `cc${Math.random().toString(36).slice(2, 7)}`;
const MAIN = "webapp";
const MAIN_PORT = 8081;
const API_KEY = `api-key-${randomBytes(8).toString("hex")}`;
const AUTH = { authorization: `Bearer ${ADMIN_TOKEN}` };

let fx: RuntimeFixture;
let registry: TestRegistry;
let image: PushedImage;
let mainEndpoint: string;
/** Pool creation answers, kept for the tests that look at them. */
const created: Record<string, Record<string, unknown>> = {};

type Json = Record<string, unknown>;
interface Whoami {
  id: string;
  hostname: string;
  uid: number;
  gid: number;
}

function mainPoolBody(): Json {
  // Reference §1.7 (SessionPools_LifecycleOnContainerExit_CreateOrUpdate), with a private registry's
  // credentials, env (a value and a secretRef) and a target port the image does not expose by itself.
  return {
    location: "East US",
    identity: { type: "SystemAssigned" },
    properties: {
      environmentId: `/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.App/managedEnvironments/demokube`,
      poolManagementType: "Dynamic",
      containerType: "CustomContainer",
      scaleConfiguration: { maxConcurrentSessions: 10, readySessionInstances: 2 },
      dynamicPoolConfiguration: {
        lifecycleConfiguration: { lifecycleType: "OnContainerExit", maxAlivePeriodInSeconds: 86400 },
      },
      secrets: [
        { name: "registry-password", value: registry.password },
        { name: "api-key", value: API_KEY },
      ],
      customContainerTemplate: {
        containers: [
          {
            image: image.ref,
            name: "testwebapp",
            resources: { cpu: 0.25, memory: "0.5Gi" },
            command: ["python3"],
            args: ["-u", "/opt/webapp/server.py"],
            env: [
              { name: "GREETING", value: "hello from the pool" },
              { name: "PORT", value: String(MAIN_PORT) },
              { name: "API_KEY", secretRef: "api-key" },
            ],
          },
        ],
        ingress: { targetPort: MAIN_PORT },
        registryCredentials: {
          server: registry.host,
          username: registry.username,
          passwordSecretRef: "registry-password",
        },
      },
      sessionNetworkConfiguration: { status: "EgressEnabled" },
      managedIdentitySettings: [{ identity: "system", lifecycle: "Main" }],
    },
  };
}

/**
 * A small custom pool from the same registry: Timed, at most 2 sessions with 1 ready (valid under either
 * readySessionInstances rule), no sessionNetworkConfiguration (so egress is disabled by default).
 */
function customPool(extra: { image?: string; password?: string; container?: Json } = {}): Json {
  return {
    containerType: "CustomContainer",
    poolManagementType: "Dynamic",
    environmentId: `/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.App/managedEnvironments/demokube`,
    scaleConfiguration: { maxConcurrentSessions: 2, readySessionInstances: 1 },
    dynamicPoolConfiguration: {
      lifecycleConfiguration: { lifecycleType: "Timed", cooldownPeriodInSeconds: 300 },
    },
    secrets: [{ name: "registry-password", value: extra.password ?? registry.password }],
    customContainerTemplate: {
      containers: [
        {
          image: extra.image ?? image.ref,
          name: "webapp",
          resources: { cpu: 0.25, memory: "0.5Gi" },
          ...extra.container,
        },
      ],
      ingress: { targetPort: WEBAPP_PORT },
      registryCredentials: {
        server: registry.host,
        username: registry.username,
        passwordSecretRef: "registry-password",
      },
    },
  };
}

before(async () => {
  registry = await startRegistry();
  image = await pushWebappImage(registry);
  fx = await startRuntimeServer({ rg: RG });
  const put = await call("PUT", armPoolUrl(fx.url, MAIN, RG), { body: mainPoolBody() });
  assert.equal(put.status, 201, put.text);
  const probes = [
    {
      type: "Startup",
      httpGet: { path: "/health", port: WEBAPP_PORT },
      periodSeconds: 1,
      failureThreshold: 10,
    },
    {
      type: "Liveness",
      httpGet: {
        path: "/health",
        port: WEBAPP_PORT,
        host: "probe.example",
        httpHeaders: [{ name: "X-Probe", value: "liveness" }],
      },
      periodSeconds: 1,
      failureThreshold: 2,
    },
  ];
  // Independent pools provision concurrently.
  const [main, timed, probed, badpass, badimage, crashing] = await Promise.all([
    waitForOperation(put.headers["azure-asyncoperation"]!),
    fx.createPool("timed", customPool()),
    fx.createPool("probed", customPool({ container: { probes } })),
    fx.createPool("badpass", customPool({ password: "not-the-password" })),
    fx.createPool("badimage", customPool({ image: `${registry.host}/sessionpool-test/no-such-image:1` })),
    fx.createPool(
      "crashing",
      customPool({ container: { command: ["python3"], args: ["-c", "raise SystemExit(3)"] } }),
    ),
  ]);
  Object.assign(created, { main, timed, probed, badpass, badimage, crashing });
  mainEndpoint = String(
    ((await call("GET", armPoolUrl(fx.url, MAIN, RG))).body as { properties: Json }).properties[
      "poolManagementEndpoint"
    ],
  );
});

after(async () => {
  try {
    if (fx) {
      await fx.deletePool(MAIN, RG).catch(() => {});
      const left = await fx.containers(MAIN).catch(() => []);
      if (left.length > 0) await run("docker", ["rm", "-f", ...left]).catch(() => {});
      await fx.close();
    }
  } finally {
    await image?.untag();
    await registry?.stop();
  }
});

// ---- helpers ----

function at(pool: string, path: string, identifier: string): string {
  const base = pool === MAIN ? mainEndpoint : fx.endpoint(pool);
  return `${base}${path}${path.includes("?") ? "&" : "?"}identifier=${encodeURIComponent(identifier)}`;
}

async function get(pool: string, path: string, identifier: string): Promise<Reply> {
  return call("GET", at(pool, path, identifier));
}

async function whoami(pool: string, identifier: string): Promise<Whoami> {
  const r = await get(pool, "/whoami", identifier);
  assert.equal(r.status, 200, r.text);
  return r.body as Whoami;
}

/** Whether the pool still has the container whose hostname (short id) is `hostname`. */
async function running(pool: string, hostname: string): Promise<boolean> {
  return (await fx.containers(pool)).some((id) => id.startsWith(hostname));
}

async function inspect(container: string): Promise<Json> {
  const { stdout } = await run("docker", ["inspect", container]);
  return (JSON.parse(stdout) as Json[])[0]!;
}

async function addressOf(container: string): Promise<string> {
  const { stdout } = await run("docker", [
    "inspect",
    "-f",
    "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
    container,
  ]);
  return stdout.trim();
}

/** A TCP listener on every host address that counts who connects (to show nothing got through). */
async function listener(): Promise<{ port: number; hits: () => number; close: () => Promise<void> }> {
  let hits = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    hits++;
    sockets.add(s);
    s.on("error", () => {});
    s.on("close", () => sockets.delete(s));
    s.end("hello\n");
  });
  await new Promise<void>((resolve) => server.listen(0, "0.0.0.0", resolve));
  const address = server.address();
  return {
    port: typeof address === "object" && address ? address.port : 0,
    hits: () => hits,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

async function probeFrom(pool: string, identifier: string, host: string, port: number): Promise<string> {
  const r = await get(pool, `/probe?host=${host}&port=${port}`, identifier);
  assert.equal(r.status, 200, r.text);
  return (r.body as { result: string }).result;
}

/** The default route's gateway in /proc/net/route text (little-endian hex), as a dotted address. */
function gatewayOf(routes: string): string | undefined {
  for (const line of routes.split("\n").slice(1)) {
    const [, destination, gateway] = line.trim().split(/\s+/);
    if (destination === "00000000" && gateway) {
      return Buffer.from(gateway, "hex").reverse().join(".");
    }
  }
  return undefined;
}

/** The host's own IPv4 address on a Docker network's bridge (the default bridge's IPAM may not name it). */
async function bridgeAddress(network: string): Promise<string> {
  const { stdout } = await run("docker", [
    "network",
    "inspect",
    "-f",
    '{{index .Options "com.docker.network.bridge.name"}}',
    network,
  ]);
  // `ip`, not os.networkInterfaces(): libuv leaves out a bridge without carrier (no container on it yet).
  const ip = await run("ip", ["-4", "-o", "addr", "show", "dev", stdout.trim()]);
  const address = /\binet (\d+\.\d+\.\d+\.\d+)\//.exec(ip.stdout)?.[1];
  assert.ok(address, `the bridge of network '${network}' has no IPv4 address on this host`);
  return address;
}

function connectOnce(host: string, port: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const s = connect(port, host, () => {
      s.destroy();
      resolve();
    });
    s.once("error", reject);
  });
}

// ---- a minimal RFC 6455 client ----

function byteReader(socket: Socket) {
  let buf = Buffer.alloc(0);
  let closed = false;
  let wake: (() => void) | undefined;
  socket.on("data", (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    wake?.();
  });
  socket.on("close", () => {
    closed = true;
    wake?.();
  });
  const more = async (deadline: number) => {
    if (closed) throw new Error(`the connection closed (${buf.length} bytes unread)`);
    if (Date.now() > deadline) throw new Error("timed out reading from the connection");
    await new Promise<void>((resolve) => {
      wake = resolve;
      setTimeout(resolve, 200);
    });
  };
  return {
    async take(n: number, timeoutMs = 15_000): Promise<Buffer> {
      const deadline = Date.now() + timeoutMs;
      while (buf.length < n) await more(deadline);
      const out = buf.subarray(0, n);
      buf = buf.subarray(n);
      return out;
    },
    async head(timeoutMs = 15_000): Promise<string> {
      const deadline = Date.now() + timeoutMs;
      while (buf.indexOf("\r\n\r\n") < 0) await more(deadline);
      const end = buf.indexOf("\r\n\r\n") + 4;
      const out = buf.subarray(0, end).toString("latin1");
      buf = buf.subarray(end);
      return out;
    },
    async closed(timeoutMs = 15_000): Promise<boolean> {
      const deadline = Date.now() + timeoutMs;
      while (!closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      return closed;
    },
  };
}

function clientFrame(opcode: number, payload: Buffer): Buffer {
  const mask = randomBytes(4);
  const n = payload.length;
  let head: Buffer;
  if (n < 126) head = Buffer.from([0x80 | opcode, 0x80 | n]);
  else if (n < 65536) {
    head = Buffer.from([0x80 | opcode, 0x80 | 126, 0, 0]);
    head.writeUInt16BE(n, 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = 0x80 | opcode;
    head[1] = 0x80 | 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  const masked = Buffer.alloc(n);
  for (let i = 0; i < n; i++) masked[i] = payload[i]! ^ mask[i % 4]!;
  return Buffer.concat([head, mask, masked]);
}

async function readFrame(
  reader: ReturnType<typeof byteReader>,
): Promise<{ opcode: number; payload: Buffer }> {
  const [b0, b1] = await reader.take(2);
  assert.equal(b1! & 0x80, 0, "frames from the server are not masked");
  let length = b1! & 0x7f;
  if (length === 126) length = (await reader.take(2)).readUInt16BE(0);
  else if (length === 127) length = Number((await reader.take(8)).readBigUInt64BE(0));
  return { opcode: b0! & 0x0f, payload: await reader.take(length) };
}

async function openWebSocket(
  path: string,
  headers: Record<string, string>,
): Promise<{
  socket: Socket;
  reader: ReturnType<typeof byteReader>;
  status: number;
  head: string;
  key: string;
}> {
  const u = new URL(fx.url);
  const socket = connect(Number(u.port), u.hostname);
  const reader = byteReader(socket);
  const key = randomBytes(16).toString("base64");
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  const lines = [
    `GET ${path} HTTP/1.1`,
    `Host: ${u.host}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Key: ${key}`,
    "Sec-WebSocket-Version: 13",
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ];
  socket.write(`${lines.join("\r\n")}\r\n\r\n`);
  const head = await reader.head();
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]);
  return { socket, reader, status, head, key };
}

function headerOf(head: string, name: string): string | undefined {
  const m = new RegExp(`^${name}:\\s*(.*?)\\s*$`, "im").exec(head);
  return m?.[1];
}

// ---- tests ----

describe("a pool from a private registry in the official example's shape", () => {
  it("reaches Succeeded, keeps its secret values out of GET and list, and serves on its endpoint", async () => {
    assert.equal(created["main"]!["status"], "Succeeded", JSON.stringify(created["main"]));
    const r = await call("GET", armPoolUrl(fx.url, MAIN, RG));
    assert.equal(r.status, 200);
    const props = (r.body as { properties: Json }).properties;
    assert.equal(props["provisioningState"], "Succeeded");
    assert.equal(mainEndpoint, fx.endpoint(MAIN), "poolManagementEndpoint is where the pool answers");
    const list = await call(
      "GET",
      `${fx.url}/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.App/sessionPools?api-version=2025-07-01`,
    );
    assert.equal(list.status, 200);
    for (const text of [r.text, list.text, JSON.stringify(created["main"])]) {
      assert.ok(!text.includes(registry.password), "the registry password is never returned");
      assert.ok(!text.includes(API_KEY), "the env secret is never returned");
    }
    assert.deepEqual(
      (props["secrets"] as Json[]).map((s) => s["name"]).sort(),
      ["api-key", "registry-password"],
      "secrets are listed by name only",
    );
    // Two warm sandboxes were started from the pulled image.
    assert.equal((await fx.containers(MAIN)).length, 2);
  });

  it("passes env values and secretRefs to the process, which runs as the image's non-root user", async () => {
    const r = await get(MAIN, "/env", "env-user");
    assert.equal(r.status, 200, r.text);
    const env = r.body as Record<string, string>;
    assert.equal(env["GREETING"], "hello from the pool");
    assert.equal(env["API_KEY"], API_KEY, "secretRef resolved to the secret's value");
    assert.equal(env["PORT"], String(MAIN_PORT));
    const me = await whoami(MAIN, "env-user");
    assert.equal(me.uid, 1000, "the image's USER, not root");
    assert.equal(me.gid, 1000);
    const c = await inspect(me.hostname);
    const host = c["HostConfig"] as Json;
    assert.equal(host["NanoCpus"], 250_000_000, "resources.cpu 0.25");
    assert.equal(host["Memory"], 512 * 1024 * 1024, "resources.memory 0.5Gi");
    assert.deepEqual(host["CapDrop"], ["ALL"]);
    assert.equal(host["Privileged"], false);
    assert.deepEqual(c["Mounts"], [], "no engine socket or host path mounted");
    assert.equal(host["NetworkMode"], "sessionpool-egress", "EgressEnabled");
    assert.deepEqual((c["Config"] as Json)["Entrypoint"], ["python3"], "command");
    assert.deepEqual((c["Config"] as Json)["Cmd"], ["-u", "/opt/webapp/server.py"], "args");
  });

  it("routes two identifiers to two containers, and one identifier always to the same one", async () => {
    const [a, b] = await Promise.all([whoami(MAIN, "ident-a"), whoami(MAIN, "ident-b")]);
    assert.notEqual(a.id, b.id);
    assert.notEqual(a.hostname, b.hostname);
    for (let i = 0; i < 3; i++) assert.deepEqual(await whoami(MAIN, "ident-a"), a);
    // Concurrent first requests of a new identifier share one session.
    const same = await Promise.all([1, 2, 3].map(() => whoami(MAIN, "ident-c")));
    assert.equal(new Set(same.map((w) => w.id)).size, 1);
    assert.ok(![a.id, b.id].includes(same[0]!.id));
  });

  it("passes status and headers both ways, strips Authorization, adds X-Forwarded-*", async () => {
    const r = await call("GET", `${at(MAIN, "/headers", "ident-a")}&x=1`, {
      headers: { "x-custom-in": "hello", "x-forwarded-for": "203.0.113.7" },
    });
    assert.equal(r.status, 200, r.text);
    const seen = r.body as { method: string; path: string; headers: Record<string, string> };
    assert.equal(seen.path, "/headers?identifier=ident-a&x=1", "path and query unchanged");
    assert.equal(seen.headers["x-custom-in"], "hello");
    assert.equal(seen.headers["authorization"], undefined, "the caller's token never reaches the container");
    // The client's own X-Forwarded-For is not believed (no --trusted-proxy): the container sees the peer only.
    assert.equal(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert.equal(seen.headers["x-forwarded-proto"], "http");
    assert.equal(seen.headers["x-forwarded-host"], new URL(fx.url).host);

    const teapot = await get(MAIN, "/status?code=418&h=from-container", "ident-a");
    assert.equal(teapot.status, 418);
    assert.equal(teapot.headers["x-reply-header"], "from-container");
    const put = await call("PUT", at(MAIN, "/anything", "ident-a"), { raw: "12345" });
    assert.equal(put.status, 201);
    assert.deepEqual(put.body, { method: "PUT", length: 5 });
    assert.equal((await call("DELETE", at(MAIN, "/anything", "ident-a"))).status, 204);
    // The container's own 404, not a data-plane error; /session is the container's path on custom pools.
    for (const path of ["/no-such-path", "/session", "/listSessions"]) {
      const nf = await get(MAIN, path, "ident-a");
      assert.equal(nf.status, 404);
      assert.deepEqual(nf.body, { error: "no such path", path });
    }
    // A long path (over the router's 1024-character parameter limit) still reaches the container.
    const long = `/${"a".repeat(1500)}`;
    const longReply = await get(MAIN, long, "ident-a");
    assert.equal(longReply.status, 404);
    assert.deepEqual(longReply.body, { error: "no such path", path: long });
    // Requests without a valid token never reach a container.
    const anonymous = await call("GET", at(MAIN, "/whoami", "ident-a"), { token: null });
    assert.equal(anonymous.status, 401);
    const noIdentifier = await call("GET", `${mainEndpoint}/whoami`);
    assert.equal(noIdentifier.status, 400);
  });
});

describe("streaming through the endpoint", () => {
  it("echoes a 50 MiB chunked upload intact", async () => {
    const hash = createHash("sha256");
    const seed = randomBytes(1024 * 1024);
    async function* body() {
      for (let i = 0; i < 50; i++) {
        const chunk = Buffer.from(seed);
        chunk.writeUInt32BE(i, 0);
        hash.update(chunk);
        yield chunk;
      }
    }
    const res = await request(at(MAIN, "/echo", "stream-user"), {
      method: "POST",
      headers: { ...AUTH, "content-type": "application/octet-stream" },
      body: Readable.from(body()),
    });
    const back = createHash("sha256");
    let size = 0;
    for await (const chunk of res.body) {
      back.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
    const sent = hash.digest("hex");
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers["x-body-chunked"], "True", "the container got a chunked body");
    assert.equal(res.headers["x-body-sha256"], sent, "the container received every byte");
    assert.equal(size, 50 * 1024 * 1024);
    assert.equal(back.digest("hex"), sent, "and sent them all back");
  });

  it("streams a 64 MiB chunked download", async () => {
    const res = await request(at(MAIN, "/big?mb=64", "stream-user"), { headers: AUTH });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers["transfer-encoding"], "chunked");
    const expected = createHash("sha256");
    for (let i = 0; i < 64; i++) expected.update(Buffer.alloc(1024 * 1024, i % 251));
    const got = createHash("sha256");
    let size = 0;
    let reads = 0;
    for await (const chunk of res.body) {
      got.update(chunk as Buffer);
      size += (chunk as Buffer).length;
      reads++;
    }
    assert.equal(size, 64 * 1024 * 1024);
    assert.equal(got.digest("hex"), expected.digest("hex"));
    assert.ok(reads > 64, `arrived in pieces (${reads} reads), not as one buffered body`);
  });

  it("honours Expect: 100-continue (the client sends its body only after the interim answer)", async () => {
    const body = randomBytes(3 * 1024 * 1024);
    const u = new URL(at(MAIN, "/echo", "stream-user"));
    const reply = await new Promise<{ status: number; sha: string; continued: boolean; data: Buffer }>(
      (resolve, reject) => {
        let continued = false;
        const req = httpRequest(
          {
            host: u.hostname,
            port: u.port,
            method: "POST",
            path: `${u.pathname}${u.search}`,
            headers: { ...AUTH, expect: "100-continue", "content-length": String(body.length) },
          },
          (res) => {
            const parts: Buffer[] = [];
            res.on("data", (d: Buffer) => parts.push(d));
            res.on("end", () =>
              resolve({
                status: res.statusCode ?? 0,
                sha: String(res.headers["x-body-sha256"]),
                continued,
                data: Buffer.concat(parts),
              }),
            );
            res.on("error", reject);
          },
        );
        req.on("continue", () => {
          continued = true;
          req.end(body);
        });
        req.on("error", reject);
        req.setTimeout(30_000, () => req.destroy(new Error("no answer in 30 s")));
      },
    );
    assert.equal(reply.continued, true, "100 Continue came");
    assert.equal(reply.status, 200);
    assert.equal(reply.sha, createHash("sha256").update(body).digest("hex"));
    assert.ok(reply.data.equals(body));
  });

  it("delivers server-sent events as they are sent", async () => {
    const started = performance.now();
    const res = await request(at(MAIN, "/sse?n=4", "stream-user"), { headers: AUTH });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers["content-type"]), /^text\/event-stream/);
    const arrivals: number[] = [];
    let text = "";
    for await (const chunk of res.body) {
      text += (chunk as Buffer).toString();
      const complete = text.split("\n\n").length - 1;
      while (arrivals.length < complete) arrivals.push(performance.now() - started);
    }
    const ended = performance.now() - started;
    assert.equal(arrivals.length, 4, text);
    assert.match(text, /data: event 0\n\n[\s\S]*data: event 3\n\n/);
    // The container sends an event every 200 ms: delivered one by one, they spread over about 600 ms; a proxy
    // that buffered would hand them over together at the end.
    assert.ok(arrivals[3]! - arrivals[0]! >= 400, `events arrived at ${arrivals.map(Math.round)} ms`);
    assert.ok(
      arrivals[0]! < ended - 400,
      `the first event came before the stream ended (${Math.round(ended)} ms)`,
    );
  });

  it("pipes a WebSocket upgrade to the container, without the caller's Authorization", async () => {
    const path = `${new URL(mainEndpoint).pathname}/ws?identifier=ws-user`;
    const ws = await openWebSocket(path, AUTH);
    try {
      assert.equal(ws.status, 101, ws.head);
      const accept = createHash("sha1")
        .update(`${ws.key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
        .digest("base64");
      assert.equal(headerOf(ws.head, "sec-websocket-accept"), accept);
      assert.equal(headerOf(ws.head, "x-saw-authorization"), "no");
      ws.socket.write(clientFrame(1, Buffer.from("hello über websocket")));
      const text = await readFrame(ws.reader);
      assert.equal(text.opcode, 1);
      assert.equal(text.payload.toString(), "hello über websocket");
      const big = randomBytes(70_000);
      ws.socket.write(clientFrame(2, big));
      const binary = await readFrame(ws.reader);
      assert.equal(binary.opcode, 2);
      assert.ok(binary.payload.equals(big), "a 64-bit-length binary frame comes back intact");
      ws.socket.write(clientFrame(8, Buffer.from([0x03, 0xe8])));
      const close = await readFrame(ws.reader);
      assert.equal(close.opcode, 8);
      assert.ok(await ws.reader.closed(), "the connection closes after the close handshake");
    } finally {
      ws.socket.destroy();
    }
    const refused = await openWebSocket(path, {});
    try {
      assert.equal(refused.status, 401, "an upgrade without a token is refused");
    } finally {
      refused.socket.destroy();
    }
  });
});

describe("ending custom sessions", () => {
  it("stopSession ends the session at once; the next request gets a fresh container", async () => {
    const before = await whoami(MAIN, "stop-user");
    const r = await call(
      "POST",
      `${mainEndpoint}/.management/stopSession?identifier=stop-user&api-version=2025-10-02-preview`,
    );
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers["content-type"] ?? "", /^text\/plain/);
    assert.equal(r.text, `Session stop-user in session pool ${MAIN} stopped.`);
    assert.equal(await running(MAIN, before.hostname), false, "its container is gone");
    const fresh = await whoami(MAIN, "stop-user");
    assert.notEqual(fresh.id, before.id);
    assert.notEqual(fresh.hostname, before.hostname);
  });

  it("OnContainerExit: the process exiting ends the session; the next request gets a fresh container", async () => {
    const before = await whoami(MAIN, "exit-user");
    const r = await call("POST", at(MAIN, "/exit", "exit-user"), { raw: "" });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body, { exiting: before.id });
    await until("the exited container to be removed", async () => !(await running(MAIN, before.hostname)));
    const fresh = await whoami(MAIN, "exit-user");
    assert.notEqual(fresh.id, before.id);
    assert.notEqual(fresh.hostname, before.hostname);
  });

  it("Liveness: a sandbox whose probe starts failing is replaced", async () => {
    assert.equal(created["probed"]!["status"], "Succeeded", JSON.stringify(created["probed"]));
    const before = await whoami("probed", "sick-user");
    await until("a Liveness probe to reach the container", async () => {
      const seen = (await get("probed", "/health-log", "sick-user")).body as Record<string, string> | null;
      return seen?.["x-probe"] === "liveness";
    });
    const seen = (await get("probed", "/health-log", "sick-user")).body as Record<string, string>;
    assert.equal(seen["host"], "probe.example", "httpGet.host is the probe's Host header");
    const sick = await call("POST", at("probed", "/sick", "sick-user"), { raw: "" });
    assert.equal(sick.status, 200);
    assert.equal((await get("probed", "/health", "sick-user")).status, 500);
    await until(
      "the unhealthy container to be removed",
      async () => !(await running("probed", before.hostname)),
    );
    const replaced = await get("probed", "/whoami", "sick-user");
    assert.equal(replaced.status, 200, replaced.text);
    const after = replaced.body as Whoami;
    assert.notEqual(after.id, before.id, "a new, healthy container");
    assert.equal(replaced.headers["x-sessionpool-session-replaced"], "true", "the caller is told");
    assert.equal((await get("probed", "/health", "sick-user")).status, 200);
  });
});

describe("failures at provisioning", () => {
  it("a wrong registry password fails the pool with a reason that says so", async () => {
    const op = created["badpass"]!;
    assert.equal(op["status"], "Failed", JSON.stringify(op));
    const error = op["error"] as { code: string; message: string };
    assert.equal(error.code, "ImagePullUnauthorized");
    assert.match(error.message, new RegExp(`registry '${registry.host}' refused the credentials`));
    const r = await call("GET", armPoolUrl(fx.url, "badpass", RG));
    assert.equal((r.body as { properties: Json }).properties["provisioningState"], "Failed");
    assert.ok(!r.text.includes("not-the-password"));
    assert.deepEqual(await fx.containers("badpass"), []);
    // Its data plane says why instead of starting anything.
    const d = await get("badpass", "/whoami", "anyone-here");
    assert.equal(d.status, 503, d.text);
    assert.equal(d.headers["x-ms-error-code"], "SessionPoolNotReady");
    assert.match(d.text, /refused the credentials/);
  });

  it("a missing image fails the pool naming the image", async () => {
    const op = created["badimage"]!;
    assert.equal(op["status"], "Failed", JSON.stringify(op));
    const error = op["error"] as { code: string; message: string };
    assert.equal(error.code, "ImageNotFound");
    assert.ok(error.message.includes(`${registry.host}/sessionpool-test/no-such-image:1`), error.message);
    const r = await call("GET", armPoolUrl(fx.url, "badimage", RG));
    assert.equal((r.body as { properties: Json }).properties["provisioningState"], "Failed");
  });
});

describe("readiness", () => {
  it("a container that exits before serving on its target port fails the pool, saying so", async () => {
    const op = created["crashing"]!;
    assert.equal(op["status"], "Failed", JSON.stringify(op));
    const error = op["error"] as { code: string; message: string };
    assert.match(error.message, /exited \(code 3\) before serving on its target port 8080/);
    // (The manager keeps retrying in the background with backoff, so a new attempt may be running: no
    // assertion on the container list.) The data plane refuses with the reason.
    const d = await get("crashing", "/whoami", "anyone-here");
    assert.equal(d.status, 503, d.text);
    assert.match(d.text, /exited \(code 3\)/);
  });
});

describe("network isolation", () => {
  // Every target is on this machine: the bridge gateways (the host's own addresses) with a listener the test
  // opens, and containers the tests created. Docker 20.10 gives containers on an internal network a default
  // route too; what keeps them in is the engine's isolation rules and sessionpool's host firewall.
  it("egress disabled: nothing reaches the host, another network or another session", async (t) => {
    const [a, b, outside] = await Promise.all([
      whoami("timed", "net-a"),
      whoami("timed", "net-b"),
      whoami(MAIN, "ident-b"),
    ]);
    const { network, gateway } = await networkGateway(a.hostname);
    assert.equal(network, "sessionpool-internal");
    const routes = (await get("timed", "/routes", "net-a")).body as { routes: string; interfaces: string[] };
    assert.deepEqual(routes.interfaces, ["eth0", "lo"]);
    assert.equal(gatewayOf(routes.routes), gateway, "the container's own routes name the bridge gateway");
    const docker0 = await bridgeAddress("bridge");
    const [peer, egressPeer] = await Promise.all([addressOf(b.hostname), addressOf(outside.hostname)]);
    const l = await listener();
    try {
      await connectOnce(gateway, l.port); // control: the host reaches its listener on the bridge address
      await until("the control connection to be counted", async () => l.hits() === 1, 5000);
      const [self, host, otherHost, samePool, otherNetwork] = await Promise.all([
        probeFrom("timed", "net-a", "127.0.0.1", WEBAPP_PORT),
        probeFrom("timed", "net-a", gateway, l.port),
        probeFrom("timed", "net-a", docker0, l.port),
        probeFrom("timed", "net-a", peer, WEBAPP_PORT),
        probeFrom("timed", "net-a", egressPeer, MAIN_PORT),
      ]);
      t.diagnostic(
        `self ${self}, host ${host}, docker0 ${otherHost}, peer ${samePool}, egress ${otherNetwork}`,
      );
      assert.equal(self, "connected", "the probe itself works");
      assert.notEqual(host, "connected", `the host's ${gateway}:${l.port}`);
      assert.notEqual(otherHost, "connected", `the host's ${docker0}:${l.port}`);
      assert.notEqual(samePool, "connected", `the other session at ${peer}`);
      assert.notEqual(
        otherNetwork,
        "connected",
        `a session on the egress network at ${egressPeer} (routed out)`,
      );
      assert.equal(l.hits(), 1, "nothing from the container arrived at the host's listener");
    } finally {
      await l.close();
    }
  });

  it("egress enabled: still nothing reaches the host or another session", async (t) => {
    const [a, b] = await Promise.all([whoami(MAIN, "ident-a"), whoami(MAIN, "ident-b")]);
    const { network, gateway } = await networkGateway(a.hostname);
    assert.equal(network, "sessionpool-egress");
    const routes = (await get(MAIN, "/routes", "ident-a")).body as { routes: string };
    assert.equal(gatewayOf(routes.routes), gateway);
    const docker0 = await bridgeAddress("bridge");
    const other = await addressOf(b.hostname);
    const l = await listener();
    try {
      const [self, host, otherHost, peer] = await Promise.all([
        probeFrom(MAIN, "ident-a", "127.0.0.1", MAIN_PORT),
        probeFrom(MAIN, "ident-a", gateway, l.port),
        probeFrom(MAIN, "ident-a", docker0, l.port),
        probeFrom(MAIN, "ident-a", other, MAIN_PORT),
      ]);
      t.diagnostic(`self ${self}, host ${host}, docker0 ${otherHost}, peer ${peer}`);
      assert.equal(self, "connected", "the probe itself works");
      assert.notEqual(host, "connected", `the host's ${gateway}:${l.port}`);
      assert.notEqual(otherHost, "connected", `the host's ${docker0}:${l.port}`);
      assert.notEqual(peer, "connected", `the other session at ${other}`);
      assert.equal(l.hits(), 0, "nothing from the container arrived at the host's listener");
    } finally {
      await l.close();
    }
  });
});

describe("limits and the Timed lifecycle", () => {
  it("answers 429 with Retry-After when the pool runs its maximum of sessions", async () => {
    // net-a and net-b hold both of the pool's sessions.
    await whoami("timed", "net-a");
    await whoami("timed", "net-b");
    const r = await get("timed", "/whoami", "net-c");
    assert.equal(r.status, 429, r.text);
    assert.equal(r.headers["x-ms-error-code"], "SessionLimitReached");
    assert.ok(Number(r.headers["retry-after"]) > 0);
  });

  it("proxied traffic resets the idle clock; idle sessions end after the cooldown", async () => {
    const a = await whoami("timed", "net-a");
    const b = await whoami("timed", "net-b");
    fx.clock.advance(200);
    await whoami("timed", "net-a"); // a proxied request: net-a's idle clock restarts here
    fx.clock.advance(200);
    await until("net-b's cooldown to end it", async () => !(await running("timed", b.hostname)));
    assert.equal(await running("timed", a.hostname), true, "net-a, used 200 s ago, is still alive");
    const c = await whoami("timed", "net-c"); // the ended session freed its slot
    fx.clock.advance(101);
    await until("net-a's cooldown to end it", async () => !(await running("timed", a.hostname)));
    assert.equal(await running("timed", c.hostname), true, "net-c, used 101 s ago, is still alive");
    const fresh = await whoami("timed", "net-a");
    assert.notEqual(fresh.id, a.id, "an ended identifier gets a fresh container");
  });

  it("OnContainerExit: a session ends at maxAlivePeriodInSeconds however busy it is", async () => {
    const a = await whoami(MAIN, "maxalive-user");
    fx.clock.advance(86_000);
    await whoami(MAIN, "maxalive-user"); // traffic does not extend an OnContainerExit session
    assert.equal(await running(MAIN, a.hostname), true, "alive before maxAlivePeriodInSeconds");
    fx.clock.advance(401);
    await until("maxAlivePeriodInSeconds to end the session", async () => !(await running(MAIN, a.hostname)));
    assert.notEqual((await whoami(MAIN, "maxalive-user")).id, a.id);
  });

  // Regression: the reaper used to end a Timed session whose last request started more than the cooldown ago
  // while that request's response was still streaming; open exchanges now hold the idle clock.
  it("a Timed session is not ended by its cooldown while a proxied response is still streaming", async () => {
    // The probed pool (Timed, cooldown 300 s): open a 6 s event stream, then move the clock past the cooldown.
    const res = await request(at("probed", "/sse?n=30", "long-stream"), { headers: AUTH });
    assert.equal(res.statusCode, 200);
    const me = await whoami("probed", "long-stream");
    let text = "";
    let moved = false;
    let error: unknown;
    try {
      for await (const chunk of res.body) {
        text += (chunk as Buffer).toString();
        if (!moved) {
          moved = true;
          fx.clock.advance(301);
        }
      }
    } catch (err) {
      error = err;
    }
    const events = text.split("\n\n").length - 1;
    assert.equal(error, undefined, `the stream broke after ${events} events: ${String(error)}`);
    assert.equal(events, 30, "every event arrived");
    assert.equal(await running("probed", me.hostname), true);
  });
});
