// Fleet mode: a request for a session held by another server of the fleet is sent there and its answer streamed
// back unchanged (bodies both ways, server-sent events as they come, WebSocket upgrades at the socket level);
// listSessions gathers the pool's sessions from every server. Forwarded once at most: a request that carries
// FORWARDED_BY_HEADER is served where it arrives or refused, never sent on.
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import type { Duplex } from "node:stream";
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { FORWARDED_BY_HEADER } from "../../core/fleet/fleet-routing.ts";
import type { StoredMember } from "../../store/store.ts";
import {
  answerHeaders,
  assertForwardable,
  first,
  frameBody,
  HOP_BY_HOP,
  nextHopHeaders,
  pipeUpgrade,
} from "./custom-proxy.ts";
import {
  dataPlaneErrorBody,
  FleetForwardLoopError,
  FleetMemberUnreachableError,
} from "./dataplane-errors.ts";
import {
  checkIdentifier,
  type DataPlaneContext,
  keyOf,
  type PoolParams,
  PREFIX,
  queryOf,
  requirePoolScope,
} from "./dataplane-request.ts";
import { TrustedProxies } from "./proxy-trust.ts";

/** Routes about the whole pool: an `identifier` on them names no session to route by (but in a custom container pool). */
const POOL_WIDE_ROUTES = new Set([PREFIX, `${PREFIX}/listSessions`, `${PREFIX}/metadata`]);

/** How long one peer may take to list its sessions (all pages) before listSessions answers without them. */
const PEER_LIST_TIMEOUT_MS = 10_000;
/** Bounds what one peer's listSessions may make this server read: pages, and bytes per page. */
const PEER_LIST_MAX_PAGES = 1000;
const PEER_LIST_MAX_PAGE_BYTES = 8 << 20;

const agentOptions = { keepAlive: true, maxSockets: 256, maxFreeSockets: 16, timeout: 60_000 };
const oneShotOptions = { keepAlive: false, maxSockets: 256, timeout: 60_000 };
// Keep-alive connections to the other servers; a request whose body the peer might leave unread goes on a
// connection of its own (frameBody), as the custom-container proxy does.
const agents = { http: new HttpAgent(agentOptions), https: new HttpsAgent(agentOptions) };
const oneShot = { http: new HttpAgent(oneShotOptions), https: new HttpsAgent(oneShotOptions) };

/** Where a member is reached: host, port, TLS and the base path its `address` carries. */
interface Peer {
  id: string;
  secure: boolean;
  host: string;
  port: number;
  basePath: string;
}

function peerOf(member: StoredMember): Peer {
  const url = new URL(member.address);
  const secure = url.protocol === "https:";
  return {
    id: member.id,
    secure,
    host: url.hostname.replace(/^\[(.*)\]$/, "$1"),
    port: url.port === "" ? (secure ? 443 : 80) : Number(url.port),
    basePath: url.pathname.replace(/\/+$/, ""),
  };
}

/**
 * The headers a forwarded request carries: the client's, Authorization and Host included (the peer authenticates
 * again, with the fleet's shared signing key), hop-by-hop ones dropped, X-Forwarded-* extended with this hop as
 * the custom-container proxy does (believed from a trusted proxy only), and who forwarded it.
 */
function peerHeaders(req: IncomingMessage, trust: TrustedProxies, selfId: string) {
  const { headers } = nextHopHeaders(req, trust, HOP_BY_HOP);
  headers[FORWARDED_BY_HEADER] = selfId;
  return headers;
}

/** The id a forwarded request names as its sender, bounded (it is the client's header, echoed in an error). */
function forwardedBy(req: IncomingMessage): string | undefined {
  const v = first(req.headers[FORWARDED_BY_HEADER]);
  return v === undefined ? undefined : v.slice(0, 100);
}

/**
 * Installs the forwarding hook on the session routes' scope (with a fleet only: a single server adds nothing to any
 * path). Call it after the authentication hook (only an authenticated caller scoped to the pool costs a routing
 * lookup) and before the custom-container proxy's hook and any body parsing (the body streams on unread).
 */
export function fleetForwarding(app: FastifyInstance, ctx: DataPlaneContext): void {
  const fleet = ctx.o.fleet;
  if (!fleet) return;
  const trust = ctx.o.config.trustedProxies ?? TrustedProxies.NONE;
  app.addHook("onRequest", async (request, reply) => {
    if ((request.params as Partial<PoolParams>).poolName === undefined) return undefined;
    const identifier = queryOf(request, "identifier");
    if (identifier === undefined) return undefined;
    try {
      checkIdentifier(identifier);
    } catch {
      return undefined; // the route answers what is wrong with it
    }
    const key = keyOf(request);
    requirePoolScope(request.principal!, key);
    if (
      POOL_WIDE_ROUTES.has(request.routeOptions.url ?? "") &&
      (await ctx.poolTypeOf(request)) !== "CustomContainer"
    ) {
      return undefined;
    }
    const by = forwardedBy(request.raw);
    const route = await fleet.route(key, identifier, { forwarded: by !== undefined });
    if (route.kind === "local") return undefined;
    if (by !== undefined) {
      request.log.warn(
        { forwardedBy: by, member: route.member.id },
        "refused to forward a forwarded request",
      );
      throw new FleetForwardLoopError(by, route.member.id);
    }
    assertForwardable(request.raw);
    forwardHttp(request, reply, route.member, peerHeaders(request.raw, trust, fleet.selfId));
    return reply;
  });
}

/** Sends the request to `member` as it came and streams the answer back unchanged; the reply is hijacked. */
function forwardHttp(
  request: FastifyRequest,
  reply: FastifyReply,
  member: StoredMember,
  headers: Record<string, string | string[]>,
): void {
  const peer = peerOf(member);
  reply.hijack();
  const req = request.raw;
  const res = reply.raw;
  const ownConnection = frameBody(req, headers);
  const scheme = peer.secure ? "https" : "http";
  const upstream = (peer.secure ? httpsRequest : httpRequest)({
    host: peer.host,
    port: peer.port,
    method: req.method,
    path: `${peer.basePath}${req.url ?? "/"}`,
    headers,
    agent: (ownConnection ? oneShot : agents)[scheme],
  });
  upstream.on("response", (up: IncomingMessage) => {
    const responseHeaders = answerHeaders(up);
    res.writeHead(up.statusCode ?? 502, up.statusMessage, responseHeaders);
    // At once, so that a streamed execution's events reach the client as the peer sends them.
    res.flushHeaders();
    up.pipe(res);
    up.on("error", () => res.destroy());
  });
  upstream.on("error", (err: NodeJS.ErrnoException) => {
    request.log.warn({ err, member: peer.id }, "a fleet member did not answer a forwarded request");
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const e = new FleetMemberUnreachableError(peer.id, err.code ?? "the connection failed");
    res.writeHead(e.statusCode, {
      ...e.headers,
      "content-type": "application/json; charset=utf-8",
      "x-ms-error-code": e.code,
    });
    res.end(JSON.stringify(dataPlaneErrorBody(e)));
  });
  // The client went away: so does the forwarded request (the peer sees its client leave, as it would directly).
  res.on("close", () => {
    if (!res.writableFinished) upstream.destroy();
  });
  req.pipe(upstream);
}

/**
 * The raw server's upgrade handler, once the request is authenticated and its pool and identifier known: when the
 * session is another server's, pipes the upgrade there and returns true; false when it is served here.
 */
export async function forwardUpgrade(
  ctx: DataPlaneContext,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  poolKey: string,
  identifier: string,
): Promise<boolean> {
  const fleet = ctx.o.fleet;
  if (!fleet) return false;
  const by = forwardedBy(req);
  const route = await fleet.route(poolKey, identifier, { forwarded: by !== undefined });
  if (route.kind === "local") return false;
  if (by !== undefined) throw new FleetForwardLoopError(by, route.member.id);
  const peer = peerOf(route.member);
  pipeUpgrade(req, socket, head, {
    host: peer.host,
    port: peer.port,
    tls: peer.secure,
    path: `${peer.basePath}${req.url ?? "/"}`,
    headers: peerHeaders(req, ctx.o.config.trustedProxies ?? TrustedProxies.NONE, fleet.selfId),
    onDone: () => {},
    unreachable: () => new FleetMemberUnreachableError(peer.id, "the upgrade could not be forwarded"),
  });
  return true;
}

/**
 * listSessions in a fleet: this server's sessions (`local`, in wire form) and every peer's, merged and ordered as
 * one server orders its own (by allocation time). A peer that does not answer is left out, with a warning. A
 * request another server forwarded asks for this server's own sessions only.
 */
export async function withPeerSessions(
  ctx: DataPlaneContext,
  request: FastifyRequest,
  local: Record<string, unknown>[],
): Promise<Record<string, unknown>[]> {
  const fleet = ctx.o.fleet;
  if (!fleet || forwardedBy(request.raw) !== undefined) return local;
  const headers = peerHeaders(request.raw, ctx.o.config.trustedProxies ?? TrustedProxies.NONE, fleet.selfId);
  // A GET without a body, whose answer this server reads itself.
  for (const name of ["content-length", "content-type", "accept-encoding"]) delete headers[name];
  const lists = await Promise.all(
    fleet.peers().map((member) =>
      peerSessions(member, request.url, headers, request.log).catch((err: unknown) => {
        request.log.warn(
          { err, member: member.id },
          "a fleet member's sessions are left out of listSessions",
        );
        return [];
      }),
    ),
  );
  const createdAt = (s: Record<string, unknown>) => String(s["createdAt"] ?? "");
  return [...local, ...lists.flat()].sort((a, b) => createdAt(a).localeCompare(createdAt(b)));
}

/** Every session a peer lists for the pool, page after page. */
async function peerSessions(
  member: StoredMember,
  url: string,
  headers: Record<string, string | string[]>,
  log: FastifyBaseLogger,
): Promise<Record<string, unknown>[]> {
  const peer = peerOf(member);
  const signal = AbortSignal.timeout(PEER_LIST_TIMEOUT_MS);
  const target = new URL(url, "http://peer.invalid");
  const out: Record<string, unknown>[] = [];
  for (let page = 0; page < PEER_LIST_MAX_PAGES; page++) {
    target.searchParams.set("skip", String(out.length));
    const body = await getJson(peer, `${peer.basePath}${target.pathname}${target.search}`, headers, signal);
    const sessions = (body as { sessions?: unknown }).sessions;
    if (!Array.isArray(sessions))
      throw new Error(`member ${peer.id} answered listSessions without 'sessions'`);
    out.push(...(sessions as Record<string, unknown>[]));
    if ((body as { nextLink?: unknown }).nextLink === undefined || sessions.length === 0) return out;
  }
  log.warn({ member: peer.id }, "a fleet member's listSessions has more pages than are read");
  return out;
}

function getJson(
  peer: Peer,
  path: string,
  headers: Record<string, string | string[]>,
  signal: AbortSignal,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = (peer.secure ? httpsRequest : httpRequest)(
      {
        host: peer.host,
        port: peer.port,
        method: "GET",
        path,
        headers,
        agent: agents[peer.secure ? "https" : "http"],
        signal,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let bytes = 0;
        res.on("data", (chunk: Buffer) => {
          bytes += chunk.length;
          if (bytes > PEER_LIST_MAX_PAGE_BYTES) {
            res.destroy(
              new Error(
                `member ${peer.id} answered listSessions with over ${PEER_LIST_MAX_PAGE_BYTES} bytes`,
              ),
            );
            return;
          }
          chunks.push(chunk);
        });
        res.on("error", reject);
        res.on("end", () => {
          if (res.statusCode !== 200) {
            reject(new Error(`member ${peer.id} answered listSessions with ${res.statusCode}`));
            return;
          }
          try {
            resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")));
          } catch (err) {
            reject(err);
          }
        });
      },
    );
    req.on("error", reject);
    req.end();
  });
}
