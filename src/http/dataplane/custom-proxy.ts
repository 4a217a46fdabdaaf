// Ingress for CustomContainer pools: every request under the pool endpoint (but stopSession) goes to the
// container of the session named by `identifier`, on the pool's targetPort. Bodies stream both ways (uploads,
// chunked responses, SSE), WebSocket upgrades are piped at the socket level, the caller's Authorization never
// reaches the container, and X-Forwarded-* say where the request came from.
import {
  Agent,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
} from "node:http";
import { connect, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { Member } from "../../core/sessions/session-manager.ts";
import { SessionPoolError } from "../../errors.ts";
import { dataPlaneErrorBody, rawErrorResponse } from "./dataplane-errors.ts";

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "authorization",
  "host",
]);

const agent = new Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 16, timeout: 60_000 });

export interface ProxyTarget {
  member: Member;
  /** The path after the pool endpoint, with its query string ("/api/x?identifier=a"). */
  path: string;
  /** Called when the exchange ends (the idle clock restarts from the last byte). */
  onDone: () => void;
}

function forwardedHeaders(
  headers: IncomingHttpHeaders,
  remote: string | undefined,
  encrypted: boolean,
  prefix: string,
) {
  const out: Record<string, string | string[]> = {};
  const connectionTokens = new Set(
    String(headers["connection"] ?? "")
      .split(",")
      .map((t) => t.trim().toLowerCase())
      .filter((t) => t !== ""),
  );
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || connectionTokens.has(name)) continue;
    out[name] = value;
  }
  const prior = headers["x-forwarded-for"];
  out["x-forwarded-for"] = [prior, remote].filter((v) => v !== undefined && v !== "").join(", ");
  out["x-forwarded-proto"] = encrypted ? "https" : "http";
  if (headers.host) out["x-forwarded-host"] = headers.host;
  out["x-forwarded-prefix"] = prefix;
  return out;
}

/** Proxies one HTTP exchange; the reply is hijacked (Fastify no longer touches it). */
export function proxyHttp(
  request: FastifyRequest,
  reply: FastifyReply,
  target: ProxyTarget,
  prefix: string,
): void {
  const { member } = target;
  // Headers the data plane set before handing over (session replaced, allocation time, ...): a hijacked reply
  // never writes them itself. The container's own headers win on a clash.
  const own: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(reply.getHeaders())) {
    if (value !== undefined) own[name] = typeof value === "number" ? String(value) : value;
  }
  reply.hijack();
  const req = request.raw;
  const res = reply.raw;
  const headers = forwardedHeaders(req.headers, req.socket.remoteAddress, "encrypted" in req.socket, prefix);
  headers["host"] = `${member.address}:${member.port}`;
  let finished = false;
  const done = () => {
    if (finished) return;
    finished = true;
    target.onDone();
  };
  const upstream = httpRequest({
    host: member.address,
    port: member.port,
    method: req.method,
    path: target.path,
    headers,
    agent,
  });
  upstream.on("response", (up: IncomingMessage) => {
    const responseHeaders: Record<string, string | string[]> = { ...own };
    for (const [name, value] of Object.entries(up.headers)) {
      if (
        value !== undefined &&
        name !== "connection" &&
        name !== "keep-alive" &&
        name !== "transfer-encoding"
      ) {
        responseHeaders[name] = value;
      }
    }
    res.writeHead(up.statusCode ?? 502, up.statusMessage, responseHeaders);
    // Flush headers at once so server-sent events reach the client before the first event.
    res.flushHeaders();
    up.pipe(res);
    up.on("end", done);
    up.on("error", () => res.destroy());
  });
  upstream.on("error", (err) => {
    if (!res.headersSent) {
      const e = new SessionPoolError(
        "SessionUnreachable",
        502,
        `The session's container did not answer on port ${member.port}: ${err.message}`,
      );
      res.writeHead(502, {
        ...own,
        "content-type": "application/json; charset=utf-8",
        "x-ms-error-code": e.code,
      });
      res.end(JSON.stringify(dataPlaneErrorBody(e)));
    } else {
      res.destroy();
    }
    done();
  });
  res.on("close", () => {
    if (!res.writableFinished) upstream.destroy();
    done();
  });
  req.pipe(upstream);
}

/** Pipes an upgraded connection (WebSocket) to the container: the request head goes first, then raw bytes. */
export function proxyUpgrade(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  target: ProxyTarget,
  prefix: string,
): void {
  const { member } = target;
  // The client went away while its session was being allocated: nothing to pipe, and no 'close' is coming.
  if (socket.destroyed) {
    target.onDone();
    return;
  }
  const upstream: Socket = connect({ host: member.address!, port: member.port! });
  const headers = forwardedHeaders(req.headers, req.socket.remoteAddress, "encrypted" in req.socket, prefix);
  headers["host"] = `${member.address}:${member.port}`;
  headers["connection"] = "Upgrade";
  if (req.headers.upgrade) headers["upgrade"] = req.headers.upgrade;
  const lines = [`${req.method} ${target.path} HTTP/1.1`];
  for (const [name, value] of Object.entries(headers)) {
    for (const v of Array.isArray(value) ? value : [value]) lines.push(`${name}: ${v}`);
  }
  // Reached from both sockets' close and error events: the session's in-flight count drops once.
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    upstream.destroy();
    socket.destroy();
    target.onDone();
  };
  upstream.once("connect", () => {
    upstream.write(`${lines.join("\r\n")}\r\n\r\n`);
    if (head.length > 0) upstream.write(head);
    upstream.pipe(socket);
    socket.pipe(upstream);
  });
  upstream.on("error", () => {
    if (socket.writable)
      socket.end("HTTP/1.1 502 Bad Gateway\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
    close();
  });
  upstream.on("close", close);
  socket.on("error", close);
  socket.on("close", close);
}

/** Refuses an upgrade request with a plain HTTP error on the raw socket. */
export function refuseUpgrade(socket: Duplex, err: SessionPoolError): void {
  socket.end(rawErrorResponse(err));
}

export type { Server };
