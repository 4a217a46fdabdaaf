// A custom container that does not answer a WebSocket handshake: the client is told so in the data plane's
// envelope (502 SessionUnreachable, x-ms-error-code), as a proxied HTTP request is, not with a bare 502.
import assert from "node:assert/strict";
import { createServer, type IncomingMessage } from "node:http";
import { type AddressInfo, connect, createServer as createTcpServer } from "node:net";
import type { Duplex } from "node:stream";
import { after, before, it } from "node:test";
import type { LiveSandbox } from "../../src/core/sessions/session-manager.ts";
import { proxyUpgrade } from "../../src/http/dataplane/custom-proxy.ts";
import { TrustedProxies } from "../../src/http/dataplane/proxy-trust.ts";

const servers: { close(): unknown }[] = [];
let proxyPort = 0;
let hangUpPort = 0;
let refusedPort = 0;

before(async () => {
  // A "container" that takes the connection and hangs up before any status line.
  const hangUp = createTcpServer((socket) => socket.once("data", () => socket.end()));
  await new Promise<void>((resolve) => hangUp.listen(0, "127.0.0.1", resolve));
  hangUpPort = (hangUp.address() as AddressInfo).port;
  servers.push(hangUp);
  // A port nobody listens on: taken, then let go.
  const gone = createTcpServer();
  await new Promise<void>((resolve) => gone.listen(0, "127.0.0.1", resolve));
  refusedPort = (gone.address() as AddressInfo).port;
  await new Promise<void>((resolve) => gone.close(() => resolve()));

  const proxy = createServer();
  proxy.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const port = req.url === "/refused" ? refusedPort : hangUpPort;
    const live = { address: "127.0.0.1", port } as unknown as LiveSandbox;
    proxyUpgrade(
      req,
      socket,
      head,
      { live, path: "/ws", prefix: "/p", onDone: () => {} },
      TrustedProxies.NONE,
    );
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  proxyPort = (proxy.address() as AddressInfo).port;
  servers.push(proxy);
});
after(() => {
  for (const s of servers) s.close();
});

/** Sends a WebSocket handshake through the proxy; resolves with everything it answers before closing. */
function handshake(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(proxyPort, "127.0.0.1");
    const chunks: Buffer[] = [];
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("error", reject);
    socket.on("close", () => resolve(Buffer.concat(chunks).toString("utf8")));
    socket.write(
      `GET ${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
  });
}

for (const [what, path] of [
  ["hangs up before a status line", "/hangup"],
  ["refuses the connection", "/refused"],
] as const) {
  it(`answers 502 SessionUnreachable in the envelope when the container ${what}`, async () => {
    const answer = await handshake(path);
    const [head = "", body = ""] = answer.split("\r\n\r\n");
    assert.match(head, /^HTTP\/1\.1 502 /, answer);
    assert.match(head, /^x-ms-error-code: SessionUnreachable$/im);
    assert.match(head, /^content-type: application\/json/im);
    const error = (JSON.parse(body) as { error: { code: string; message: string } }).error;
    assert.equal(error.code, "SessionUnreachable");
    assert.match(error.message, /did not answer the upgrade/);
  });
}
