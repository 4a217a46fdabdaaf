// Ingress for CustomContainer pools: every request under the pool endpoint (but stopSession) goes to the
// container of the session named by `identifier`, on the pool's targetPort. Bodies stream both ways (uploads,
// chunked responses, SSE), WebSocket upgrades are piped at the socket level, the caller's Authorization never
// reaches the container, and X-Forwarded-* say where the request came from as this server saw it.
import {
  Agent,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
} from "node:http";
import { connect, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { connect as tlsConnect } from "node:tls";
import type { FastifyReply, FastifyRequest } from "fastify";
import { FORWARDED_BY_HEADER } from "../../core/fleet/fleet-routing.ts";
import type { LiveSandbox } from "../../core/sessions/session-manager.ts";
import type { SessionPoolError } from "../../errors.ts";
import { BadRequestError } from "../errors.ts";
import {
  dataPlaneErrorBody,
  rawErrorResponse,
  SessionUnreachableError,
  UnsupportedTransferEncodingError,
} from "./dataplane-errors.ts";
import { type TrustedProxies, unmapped } from "./proxy-trust.ts";

/** Headers of one connection, never passed on by a proxy (RFC 9110 7.6.1). */
export const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);
/** The caller's credential and the fleet's own header are this server's business, never the container's. */
const NOT_FOR_CONTAINERS = new Set([...HOP_BY_HOP, "authorization", "host", FORWARDED_BY_HEADER]);

/** Where a request has been: believed from a trusted proxy only, else replaced by what this server saw. */
export const FORWARDING = /^(?:x-forwarded-.*|forwarded|x-real-ip)$/;

/** The header names a request's Connection header lists: hop-by-hop as well. */
export function connectionTokensOf(headers: IncomingHttpHeaders): Set<string> {
  return new Set(
    String(headers["connection"] ?? "")
      .split(",")
      .map((t) => t.trim().toLowerCase())
      .filter((t) => t !== ""),
  );
}

/**
 * Methods whose body servers commonly leave unread. A container that does not read one would take its bytes for
 * the next request on the connection, so such a request goes on a connection of its own, closed after it.
 */
const BODY_OFTEN_UNREAD = new Set(["GET", "HEAD", "DELETE", "OPTIONS", "TRACE"]);

// Lenient response parsing (insecureHTTPParser) on requests to containers only, never on the server's own parser:
// quick CGI scripts and busybox httpd answer with bare LF line endings, which curl accepts. A connection carries
// the requests of one container only (one address and port per session), so a lenient reading cannot mix up
// two sessions' answers.
const agent = new Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 16, timeout: 60_000 });
/**
 * For a request on a connection of its own: Node would put a socket back in the keep-alive pool after a request
 * that said "Connection: close" whenever the answer did not say it too, and the next request would meet the
 * container's hang-up.
 */
const oneShot = new Agent({ keepAlive: false, maxSockets: 256, timeout: 60_000 });

/** An upstream answer's headers as the client gets them: this hop's own framing dropped, `own` ones added first. */
export function answerHeaders(
  up: IncomingMessage,
  own: Record<string, string | string[]> = {},
): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = { ...own };
  for (const [name, value] of Object.entries(up.headers)) {
    if (
      value !== undefined &&
      name !== "connection" &&
      name !== "keep-alive" &&
      name !== "transfer-encoding"
    ) {
      headers[name] = value;
    }
  }
  return headers;
}

export interface ProxyTarget {
  live: LiveSandbox;
  /** The path after the pool endpoint, with its query string ("/api/x?identifier=a"), canonically encoded. */
  path: string;
  /** The pool endpoint's path, sent as X-Forwarded-Prefix. */
  prefix: string;
  /** Called when the exchange ends (the idle clock restarts from the last byte). */
  onDone: () => void;
}

export function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/**
 * The request's headers for the next hop (a container, or another server of the fleet): those in `drop` and those
 * the Connection header names left out, X-Forwarded-* from anyone but a trusted proxy left out as forgeries (a
 * client claiming another address, scheme or host), then X-Forwarded-For, -Proto and -Host extended with this hop.
 * `trusted`: whether the direct peer is a trusted proxy, for what a caller adds.
 */
export function nextHopHeaders(
  req: IncomingMessage,
  trust: TrustedProxies,
  drop: ReadonlySet<string>,
): { headers: Record<string, string | string[]>; trusted: boolean } {
  const { headers } = req;
  const peer = req.socket.remoteAddress === undefined ? undefined : unmapped(req.socket.remoteAddress);
  const trusted = trust.trusts(peer);
  const out: Record<string, string | string[]> = {};
  const connectionTokens = connectionTokensOf(headers);
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || drop.has(name) || connectionTokens.has(name)) continue;
    if (!trusted && FORWARDING.test(name)) continue;
    out[name] = value;
  }
  const scheme = "encrypted" in req.socket ? "https" : "http";
  const prior = trusted ? first(headers["x-forwarded-for"]) : undefined;
  out["x-forwarded-for"] = [prior, peer].filter((v) => v !== undefined && v !== "").join(", ");
  out["x-forwarded-proto"] = (trusted ? first(headers["x-forwarded-proto"]) : undefined) ?? scheme;
  const host = (trusted ? first(headers["x-forwarded-host"]) : undefined) ?? headers.host;
  if (host !== undefined) out["x-forwarded-host"] = host;
  return { headers: out, trusted };
}

function forwardedHeaders(req: IncomingMessage, trust: TrustedProxies, prefix: string) {
  const { headers: out, trusted } = nextHopHeaders(req, trust, NOT_FOR_CONTAINERS);
  // A trusted proxy that mounts this server under a path of its own says so; the container sees both.
  const priorPrefix = trusted ? (first(req.headers["x-forwarded-prefix"]) ?? "").replace(/\/+$/, "") : "";
  out["x-forwarded-prefix"] = `${priorPrefix}${prefix}`;
  return out;
}

/**
 * Refuses, before any session is allocated, a request whose body could not be forwarded unambiguously: a
 * transfer coding other than plain chunked (the body would reach the container still so coded, but unlabelled).
 * Node's parser has already refused Content-Length together with Transfer-Encoding, and broken chunking.
 */
export function assertForwardable(req: IncomingMessage): void {
  const te = req.headers["transfer-encoding"];
  if (te !== undefined && te.trim().toLowerCase() !== "chunked") {
    throw new UnsupportedTransferEncodingError(te);
  }
}

/**
 * Sets how the body goes on to the container, whatever the method: the client's Content-Length when it gave one,
 * else chunked (Node sends a GET's or DELETE's body unframed otherwise, which the container would read as a second
 * request that never went through this proxy). A request without a body says nothing. Returns whether the
 * request needs a connection of its own.
 */
export function frameBody(req: IncomingMessage, headers: Record<string, string | string[]>): boolean {
  const chunked = req.headers["transfer-encoding"] !== undefined;
  const length = req.headers["content-length"];
  if (chunked) {
    delete headers["content-length"];
    headers["transfer-encoding"] = "chunked";
  }
  const hasBody = chunked || (length !== undefined && length !== "0");
  if (!hasBody || !BODY_OFTEN_UNREAD.has(req.method ?? "")) return false;
  headers["connection"] = "close";
  return true;
}

/** Proxies one HTTP exchange; the reply is hijacked (Fastify no longer touches it). */
export function proxyHttp(
  request: FastifyRequest,
  reply: FastifyReply,
  target: ProxyTarget,
  trust: TrustedProxies,
): void {
  const { live } = target;
  // Headers the data plane set before handing over (session replaced, allocation time, ...): a hijacked reply
  // never writes them itself. The container's own headers win on a clash.
  const own: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(reply.getHeaders())) {
    if (value !== undefined) own[name] = typeof value === "number" ? String(value) : value;
  }
  reply.hijack();
  const req = request.raw;
  const res = reply.raw;
  const headers = forwardedHeaders(req, trust, target.prefix);
  headers["host"] = `${live.address}:${live.port}`;
  const ownConnection = frameBody(req, headers);
  let finished = false;
  const done = () => {
    if (finished) return;
    finished = true;
    target.onDone();
  };
  const upstream = httpRequest({
    host: live.address,
    port: live.port,
    method: req.method,
    path: target.path,
    headers,
    agent: ownConnection ? oneShot : agent,
    insecureHTTPParser: true,
  });
  upstream.on("response", (up: IncomingMessage) => {
    const responseHeaders = answerHeaders(up, own);
    res.writeHead(up.statusCode ?? 502, up.statusMessage, responseHeaders);
    // Flush headers at once so server-sent events reach the client before the first event.
    res.flushHeaders();
    up.pipe(res);
    up.on("end", done);
    up.on("error", () => res.destroy());
  });
  upstream.on("error", (err) => {
    if (!res.headersSent) {
      const e = new SessionUnreachableError(
        `The session's container did not answer on port ${live.port}: ${err.message}`,
      );
      res.writeHead(e.statusCode, {
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

/**
 * Refuses, before any session is allocated, an upgrade request with a body: a WebSocket handshake has none, and
 * bytes after the head are the upgraded protocol's, never a body to frame.
 */
export function assertUpgradable(req: IncomingMessage): void {
  const length = req.headers["content-length"];
  if (req.headers["transfer-encoding"] !== undefined || (length !== undefined && length !== "0")) {
    throw new BadRequestError("An upgrade request (WebSocket handshake) carries no body.");
  }
}

/**
 * Pipes an upgraded connection (WebSocket) to the container: the request head goes first; the client's bytes
 * follow only once the container has switched protocols (101). Before that they would be read as further
 * HTTP requests that never went through this proxy (a container that refuses the upgrade keeps parsing HTTP).
 */
export function proxyUpgrade(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  target: ProxyTarget,
  trust: TrustedProxies,
): void {
  const { live } = target;
  const headers = forwardedHeaders(req, trust, target.prefix);
  headers["host"] = `${live.address}:${live.port}`;
  pipeUpgrade(req, socket, head, {
    host: live.address!,
    port: live.port!,
    path: target.path,
    headers,
    onDone: target.onDone,
    unreachable: (why) =>
      new SessionUnreachableError(
        `The session's container did not answer the upgrade on port ${live.port}: ${why}`,
      ),
  });
}

/** Where pipeUpgrade sends an upgrade: a container, or another server of the fleet. */
export interface UpgradeTarget {
  host: string;
  port: number;
  /** Connect with TLS (an https:// fleet member). */
  tls?: boolean;
  /** The request target to send, with its query string. */
  path: string;
  /** The headers to send (Connection and Upgrade are set here). */
  headers: Record<string, string | string[]>;
  /** Called once when both connections are done. */
  onDone: () => void;
  /** The error answered when the target hangs up or fails before a status line. */
  unreachable: (why: string) => SessionPoolError;
}

/** Sends an upgrade request's head to `target`, then pipes both sockets once it has answered (see proxyUpgrade). */
export function pipeUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, target: UpgradeTarget): void {
  // The client went away while its session was being allocated: nothing to pipe, and no 'close' is coming.
  if (socket.destroyed) {
    target.onDone();
    return;
  }
  const upstream: Socket = target.tls
    ? tlsConnect({ host: target.host, port: target.port })
    : connect({ host: target.host, port: target.port });
  const headers = { ...target.headers };
  headers["connection"] = "Upgrade";
  delete headers["content-length"];
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
  let answered = false;
  let status = Buffer.alloc(0);
  const onStatus = (chunk: Buffer) => {
    status = Buffer.concat([status, chunk]);
    const eol = status.indexOf(10);
    if (eol === -1 && status.length < 1024) return;
    upstream.off("data", onStatus);
    answered = true;
    const line = status.subarray(0, eol === -1 ? status.length : eol).toString("latin1");
    socket.write(status);
    if (/^HTTP\/1\.[01] 101(?: |\r|$)/.test(line)) {
      if (head.length > 0) upstream.write(head);
      socket.pipe(upstream);
    }
    upstream.pipe(socket);
  };
  upstream.once(target.tls ? "secureConnect" : "connect", () => {
    upstream.write(`${lines.join("\r\n")}\r\n\r\n`);
    upstream.on("data", onStatus);
  });
  // In the data plane's envelope, as a refused HTTP request through the proxy is answered.
  const badGateway = (why: string) => {
    if (socket.writable && !answered) socket.end(rawErrorResponse(target.unreachable(why)));
  };
  // The target hung up before a status line: nothing of its answer to relay.
  upstream.on("end", () => badGateway("it closed the connection before a status line"));
  upstream.on("error", (err) => {
    badGateway(err.message);
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
