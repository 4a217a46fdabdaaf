// Custom container pools: every request under the endpoint but stopSession goes to the session's container
// (hooked before any body parsing), and so does every Upgrade (WebSocket), taken from the raw HTTP server.
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { poolDocOf, poolKey } from "../../core/pools/pool-doc.ts";
import type { LiveSandbox } from "../../core/sessions/session-manager.ts";
import { authenticateHeaders } from "../auth-hook.ts";
import { InternalError, toCodedError } from "../errors.ts";
import {
  assertForwardable,
  assertUpgradable,
  proxyHttp,
  proxyUpgrade,
  refuseUpgrade,
} from "./custom-proxy.ts";
import { UpgradeNotProxiedError } from "./dataplane-errors.ts";
import {
  checkIdentifier,
  type DataPlaneContext,
  keyOf,
  type PoolParams,
  requirePoolScope,
} from "./dataplane-request.ts";
import { forwardUpgrade } from "./fleet-forwarding.ts";
import { proxyPathOf } from "./proxy-path.ts";
import { TrustedProxies } from "./proxy-trust.ts";

/** An exchange in flight keeps a Timed session from going idle; when it ends, the idle clock restarts. */
function targetOf(ctx: DataPlaneContext, live: LiveSandbox, path: string, prefix: string) {
  ctx.o.sessions.beginRequest(live);
  return { live, path, prefix, onDone: () => ctx.o.sessions.endRequest(live) };
}

/**
 * Sends an authenticated request (request.principal set) for a custom container pool to its session's container
 * and returns the reply; undefined when the request is not one to forward (another pool type, stopSession).
 */
export async function forwardToContainer(
  ctx: DataPlaneContext,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply | undefined> {
  if ((request.params as Partial<PoolParams>).poolName === undefined) return undefined;
  if ((await ctx.poolTypeOf(request)) !== "CustomContainer") return undefined;
  // Cut from the raw URL by segments and decoded: the router's decoded pool name has another length than the
  // client's (`%73ecpool`), and `%2Emanagement/stopSession` is routed to the server's stopSession all the same.
  const path = proxyPathOf(request.url);
  if (path === undefined || path.stopSession) return undefined;
  requirePoolScope(request.principal!, keyOf(request));
  assertForwardable(request.raw);
  const { live } = await ctx.acquire(request, reply);
  proxyHttp(
    request,
    reply,
    targetOf(ctx, live, path.path, path.prefix),
    ctx.o.config.trustedProxies ?? TrustedProxies.NONE,
  );
  return reply;
}

export function proxyRoutes(app: FastifyInstance, ctx: DataPlaneContext): void {
  const { sessions, pools, authenticator } = ctx.o;
  const trust = ctx.o.config.trustedProxies ?? TrustedProxies.NONE;
  const target = (live: LiveSandbox, path: string, prefix: string) => targetOf(ctx, live, path, prefix);

  app.addHook("onRequest", async (request, reply) => forwardToContainer(ctx, request, reply));

  const upgrade = async (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = proxyPathOf(req.url ?? "/");
    if (!path) throw new UpgradeNotProxiedError();
    const { subscriptionId, resourceGroup, poolName: name } = path;
    const key = poolKey({ subscriptionId, resourceGroup, name });
    requirePoolScope(await authenticateHeaders(authenticator, req.headers), key);
    const pool = await pools.findPool(key);
    if (!pool || poolDocOf(pool).properties.containerType !== "CustomContainer") {
      throw new UpgradeNotProxiedError();
    }
    const url = new URL(req.url ?? "/", "http://upgrade.invalid");
    const identifier = checkIdentifier(url.searchParams.get("identifier") ?? undefined);
    assertUpgradable(req);
    if (ctx.o.fleet && (await forwardUpgrade(ctx, req, socket, head, key, identifier))) return;
    const { live } = await sessions.acquire(key, identifier);
    proxyUpgrade(req, socket, head, target(live, path.path, path.prefix), trust);
  };
  app.server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // Node takes its own error listener off an upgraded socket: without one, a client that resets the
    // connection while it is authenticated, allocated or refused would crash the process.
    socket.on("error", () => socket.destroy());
    void upgrade(req, socket, head).catch((err: unknown) => {
      if (!toCodedError(err)) app.log.error({ err }, "unexpected error in an upgrade");
      refuseUpgrade(socket, toCodedError(err) ?? new InternalError());
    });
  });
}
