// The custom-container proxy against requests a normal client cannot send, with the real engine: raw sockets from
// the test to the server, and the test web app (test/helpers/webapp/server.py) logging every request line it
// parsed, so a request smuggled inside another's body would show up as one of its own. Bodies of every method
// arrive framed, an upgrade's bytes wait for the container's 101, percent-encoded endpoint paths reach the right
// container path (and stopSession stays the server's), X-Forwarded-* say what the server saw unless the peer is a
// trusted proxy, and a container answering with bare LF line endings is served.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { connect } from "node:net";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { Agent } from "undici";
import { ensureWebappImage, WEBAPP_PORT } from "../helpers/custom-image.ts";
import { type RuntimeFixture, startRuntimeServer } from "../helpers/runtime.ts";
import { ADMIN_TOKEN, call, SUB } from "../helpers/server.ts";

const run = promisify(execFile);
const RG = `ph${Math.random().toString(36).slice(2, 7)}`;
const POOL = "hardened";
const BARE_LF = "barelf";
/** Loopback port 1 is closed: the engine's pull fails at once and the pool uses the engine's local copy. */
const IMAGE = `127.0.0.1:1/sessionpool-proxy-hardening:${randomBytes(4).toString("hex")}`;
/** The test connects from here to be a trusted proxy (the whole 127/8 is loopback on Linux). */
const TRUSTED_PEER = "127.0.0.2";
const STOP_API = "api-version=2025-10-02-preview";

/** Answers every request with bare-LF line endings, as quick CGI scripts and busybox httpd do. */
const BARE_LF_SERVER = `
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", ${WEBAPP_PORT}))
s.listen(16)
while True:
    c, _ = s.accept()
    data = b""
    while b"\\r\\n\\r\\n" not in data:
        d = c.recv(65536)
        if not d:
            break
        data += d
    if data:
        c.sendall(b"HTTP/1.0 200 OK\\nContent-Type: text/plain\\n\\nhello")
    c.close()
`;

let fx: RuntimeFixture;
let host: string;

function pool(container: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    containerType: "CustomContainer",
    poolManagementType: "Dynamic",
    scaleConfiguration: { maxConcurrentSessions: 5, readySessionInstances: 1 },
    dynamicPoolConfiguration: {
      lifecycleConfiguration: { lifecycleType: "Timed", cooldownPeriodInSeconds: 300 },
    },
    customContainerTemplate: {
      containers: [{ image: IMAGE, name: "app", resources: { cpu: 0.25, memory: "0.5Gi" }, ...container }],
      ingress: { targetPort: WEBAPP_PORT },
    },
  };
}

before(async () => {
  const local = await ensureWebappImage();
  await run("docker", ["tag", local, IMAGE], { timeout: 60_000 });
  fx = await startRuntimeServer({ rg: RG, trustedProxies: [`${TRUSTED_PEER}/32`] });
  host = new URL(fx.url).host;
  const ops = await Promise.all([
    fx.createPool(POOL, pool()),
    fx.createPool(BARE_LF, pool({ command: ["python3"], args: ["-u", "-c", BARE_LF_SERVER] })),
  ]);
  for (const op of ops) assert.equal(op["status"], "Succeeded", JSON.stringify(op));
});

after(async () => {
  try {
    await fx?.close();
  } finally {
    await run("docker", ["rmi", IMAGE], { timeout: 60_000 }).catch(() => {});
  }
});

// ---- helpers ----

/** The endpoint path of `name`, its pool segment as given (e.g. percent-encoded). */
function endpointPath(name = POOL): string {
  return `/subscriptions/${SUB}/resourceGroups/${RG}/sessionPools/${name}`;
}

interface RawReply {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * Writes `bytes` as they are on a new connection to the server and reads one response (by Content-Length, or
 * to the connection's end; none for a HEAD), then hangs up.
 */
function rawExchange(
  bytes: string,
  options: { head?: boolean; localAddress?: string } = {},
): Promise<RawReply> {
  const { port, hostname } = new URL(fx.url);
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: hostname,
      port: Number(port),
      ...(options.localAddress ? { localAddress: options.localAddress } : {}),
    });
    let data = Buffer.alloc(0);
    let settled = false;
    const parse = (ended: boolean): RawReply | undefined => {
      const end = data.indexOf("\r\n\r\n");
      if (end === -1) return undefined;
      const [statusLine = "", ...lines] = data.subarray(0, end).toString("latin1").split("\r\n");
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const i = line.indexOf(":");
        headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      const body = data.subarray(end + 4);
      const length = options.head ? 0 : headers["content-length"];
      if (length === undefined ? !ended : body.length < Number(length)) return undefined;
      return { status: Number(statusLine.split(" ")[1]), headers, body: body.toString("latin1") };
    };
    const finish = (ended: boolean) => {
      if (settled) return;
      const reply = parse(ended);
      if (reply) {
        settled = true;
        socket.destroy();
        resolve(reply);
      } else if (ended) {
        settled = true;
        reject(
          new Error(`the connection ended without a whole response: ${JSON.stringify(data.toString())}`),
        );
      }
    };
    socket.on("data", (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      finish(false);
    });
    socket.on("end", () => finish(true));
    socket.on("close", () => finish(true));
    socket.on("error", (err) => {
      if (!settled) reject(err);
    });
    socket.write(bytes);
  });
}

/** A request whose whole body is a second request, forged to look as if it had come through the proxy. */
function smuggled(marker: string): string {
  return [
    `GET /${marker} HTTP/1.1`,
    "Host: evil.example",
    "Authorization: Bearer forged-token",
    "X-Forwarded-For: 6.6.6.6",
    "Content-Length: 0",
    "",
    "",
  ].join("\r\n");
}

/** The request lines the container of `identifier` has parsed so far. */
async function requestLines(identifier: string): Promise<string[]> {
  const r = await call("GET", `${fx.endpoint(POOL)}/requests?identifier=${identifier}`);
  assert.equal(r.status, 200, r.text);
  return (r.body as Array<{ line: string }>).map((entry) => entry.line);
}

function sha256(text: string): string {
  return createHash("sha256").update(text, "latin1").digest("hex");
}

// ---- item 3: request smuggling ----

describe("request bodies reach the container framed", () => {
  const id = `smuggle-${randomBytes(4).toString("hex")}`;

  it("a chunked body of any method arrives as that request's body, never as a request of its own", async () => {
    const markers: string[] = [];
    for (const method of ["GET", "HEAD", "DELETE", "OPTIONS", "POST", "PUT", "PATCH"]) {
      const marker = `smuggled-${method.toLowerCase()}-${randomBytes(3).toString("hex")}`;
      markers.push(marker);
      const body = smuggled(marker);
      const r = await rawExchange(
        `${method} ${endpointPath()}/record?identifier=${id} HTTP/1.1\r\nHost: ${host}\r\n` +
          `Authorization: Bearer ${ADMIN_TOKEN}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n` +
          `${Buffer.byteLength(body).toString(16)}\r\n${body}\r\n0\r\n\r\n`,
        { head: method === "HEAD" },
      );
      assert.equal(r.status, 200, `${method}: ${r.body}`);
      assert.equal(r.headers["x-body-length"], String(Buffer.byteLength(body)), method);
      assert.equal(r.headers["x-body-sha256"], sha256(body), method);
    }
    const lines = await requestLines(id);
    assert.deepEqual(
      lines.filter((l) => markers.some((m) => l.includes(m))),
      [],
      "a smuggled request reached the container",
    );
    assert.equal(lines.filter((l) => l.includes("/record?identifier=")).length, 7, lines.join("\n"));
  });

  it("a GET body the container never reads (Content-Length) is not read as a further request", async () => {
    const marker = `smuggled-unread-${randomBytes(3).toString("hex")}`;
    const body = smuggled(marker);
    const r = await rawExchange(
      `GET ${endpointPath()}/headers?identifier=${id} HTTP/1.1\r\nHost: ${host}\r\n` +
        `Authorization: Bearer ${ADMIN_TOKEN}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(
      (await requestLines(id)).filter((l) => l.includes(marker)),
      [],
      "the unread body was parsed as a request",
    );
  });

  it("refuses Content-Length with Transfer-Encoding, and transfer codings it cannot pass on", async () => {
    const marker = `record/ambiguous-${randomBytes(3).toString("hex")}`;
    const ambiguous = await rawExchange(
      `POST ${endpointPath()}/${marker}?identifier=${id} HTTP/1.1\r\nHost: ${host}\r\n` +
        `Authorization: Bearer ${ADMIN_TOKEN}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n` +
        "0\r\n\r\n",
    );
    assert.equal(ambiguous.status, 400, ambiguous.body);
    const gzip = await rawExchange(
      `POST ${endpointPath()}/${marker}?identifier=${id} HTTP/1.1\r\nHost: ${host}\r\n` +
        `Authorization: Bearer ${ADMIN_TOKEN}\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n` +
        "0\r\n\r\n",
    );
    assert.equal(gzip.status, 501, gzip.body);
    assert.equal(gzip.headers["x-ms-error-code"], "UnsupportedTransferEncoding");
    assert.equal(JSON.parse(gzip.body).error.code, "UnsupportedTransferEncoding");
    assert.deepEqual(
      (await requestLines(id)).filter((l) => l.includes(marker)),
      [],
    );
  });

  it("holds an upgrade's bytes until the container switches protocols", async () => {
    const marker = `smuggled-upgrade-${randomBytes(3).toString("hex")}`;
    // /headers is no WebSocket endpoint: the container answers 200 and goes on reading HTTP on that connection.
    const r = await rawExchange(
      `GET ${endpointPath()}/headers?identifier=${id} HTTP/1.1\r\nHost: ${host}\r\n` +
        `Authorization: Bearer ${ADMIN_TOKEN}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n\r\n${smuggled(marker)}`,
    );
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(
      (await requestLines(id)).filter((l) => l.includes(marker)),
      [],
      "bytes after a refused upgrade were parsed as a request",
    );
  });
});

// ---- item 5: percent-encoded endpoint paths ----

describe("percent-encoded endpoint paths", () => {
  it("forward the path after the endpoint, decoded and re-encoded, whatever the prefix's encoding", async () => {
    const id = `encoded-${randomBytes(4).toString("hex")}`;
    // %68 is 'h': the router decodes the pool name, the forwarded path must still start after it.
    const r = await call(
      "GET",
      `${fx.url}${endpointPath("%68ardened")}/record/a%2Fb/%7Eu/c%20d?identifier=${id}&x=%2F`,
    );
    assert.equal(r.status, 200, r.text);
    const seen = r.body as { path: string; headers: Array<[string, string]> };
    assert.equal(seen.path, `/record/a%2Fb/~u/c%20d?identifier=${id}&x=%2F`);
    assert.deepEqual(
      seen.headers.filter(([name]) => name === "x-forwarded-prefix").map(([, v]) => v),
      [endpointPath()],
    );
  });

  it("keep stopSession the server's, however its path is encoded", async () => {
    for (const [i, [name, rest]] of [
      ["%68ardened", "/.management/stopSession"],
      [POOL, "/%2Emanagement/stopSession"],
      ["%68ardened", "/.management/stop%53ession/"],
    ].entries()) {
      const id = `stop-${i}-${randomBytes(3).toString("hex")}`;
      const started = await call("GET", `${fx.endpoint(POOL)}/headers?identifier=${id}`);
      assert.equal(started.status, 200, started.text);
      const url = `${fx.url}${endpointPath(name)}${rest}?identifier=${id}&${STOP_API}`;
      const stopped = await call("POST", url);
      assert.equal(stopped.status, 200, `${rest}: ${stopped.text}`);
      assert.equal(stopped.text, `Session ${id} in session pool ${POOL} stopped.`);
      const again = await call("POST", url);
      assert.equal(again.status, 404, again.text);
      assert.equal(again.headers["x-ms-error-code"], "SessionNotFound");
    }
  });
});

// ---- item 7: X-Forwarded-* ----

describe("X-Forwarded-* headers", () => {
  const forged = {
    "x-forwarded-for": "6.6.6.6",
    "x-forwarded-proto": "https",
    "x-forwarded-host": "app.example",
    "x-forwarded-prefix": "/outer",
    "x-forwarded-port": "443",
    forwarded: "for=6.6.6.6;proto=https",
    "x-real-ip": "6.6.6.6",
  };
  const seenHeaders = async (dispatcher?: Agent) => {
    const id = `fwd-${randomBytes(4).toString("hex")}`;
    const r = await call("GET", `${fx.endpoint(POOL)}/headers?identifier=${id}`, {
      headers: forged,
      ...(dispatcher ? { dispatcher } : {}),
    });
    assert.equal(r.status, 200, r.text);
    return (r.body as { headers: Record<string, string> }).headers;
  };

  it("say what the server saw, whatever a client claims", async () => {
    const h = await seenHeaders();
    assert.equal(h["x-forwarded-for"], "127.0.0.1");
    assert.equal(h["x-forwarded-proto"], "http");
    assert.equal(h["x-forwarded-host"], host);
    assert.equal(h["x-forwarded-prefix"], endpointPath());
    for (const name of ["x-forwarded-port", "forwarded", "x-real-ip"]) assert.equal(h[name], undefined, name);
  });

  it("are kept and extended from a --trusted-proxy peer", async () => {
    const fromProxy = new Agent({ localAddress: TRUSTED_PEER });
    try {
      const h = await seenHeaders(fromProxy);
      assert.equal(h["x-forwarded-for"], `6.6.6.6, ${TRUSTED_PEER}`);
      assert.equal(h["x-forwarded-proto"], "https");
      assert.equal(h["x-forwarded-host"], "app.example");
      assert.equal(h["x-forwarded-prefix"], `/outer${endpointPath()}`);
      assert.equal(h["forwarded"], "for=6.6.6.6;proto=https");
      assert.equal(h["x-forwarded-port"], "443");
    } finally {
      await fromProxy.close();
    }
  });
});

// ---- item 11: lenient with the container's answers ----

describe("a container answering with bare LF line endings", () => {
  it("is served (200 with its body), as curl would read it", async () => {
    const r = await call("GET", `${fx.endpoint(BARE_LF)}/cgi-bin/hello?identifier=lf-user`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.text, "hello");
    assert.match(r.headers["content-type"] ?? "", /^text\/plain/);
  });

  it("while the server's own parser stays strict with clients", async () => {
    const r = await rawExchange(
      `GET ${endpointPath(BARE_LF)}/x?identifier=lf-user HTTP/1.1\nHost: ${host}\nAuthorization: Bearer ${ADMIN_TOKEN}\n\n`,
    );
    assert.equal(r.status, 400, r.body);
  });
});
