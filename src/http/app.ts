// Builds the HTTP application from injected dependencies; `serve` (and tests) listen on it.
import type { Duplex } from "node:stream";
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from "fastify";
import type { Logger } from "pino";
import type { PoolTokenService } from "../auth/pool-tokens.ts";
import type { Authenticator } from "../auth/principal.ts";
import type { McpKeys } from "../core/mcp/mcp-keys.ts";
import type { PoolLookup, PoolService } from "../core/pools/pool-service.ts";
import { installArmErrorHandler, sendArmError } from "./arm/arm-errors.ts";
import { armRoutes } from "./arm/arm-routes.ts";
import { consoleRoutes } from "./console-routes.ts";
import { isDataPlaneUrl, rawErrorResponse, sendDataPlaneError } from "./dataplane/dataplane-errors.ts";
import { acceptEmptyBodies } from "./empty-body.ts";
import {
  BadRequestError,
  InternalError,
  RequestHeaderFieldsTooLargeError,
  RequestTimeoutError,
  RouteNotFoundError,
  toCodedError,
} from "./errors.ts";

export interface AppConfig {
  publicUrl: string;
  listPageSize: number;
  retryAfterSeconds: number;
  /** Largest JSON body accepted (uploads have their own limit). */
  bodyLimitBytes: number;
}

/** Registers the data plane; it finds pools through `pools`, the app's pool service. */
export type DataPlanePlugin = (app: FastifyInstance, pools: PoolLookup) => Promise<void>;
export type OperationalPlugin = (app: FastifyInstance) => Promise<void>;

export interface AppDeps {
  pools: PoolService;
  authenticator: Authenticator;
  tokens: PoolTokenService;
  mcpKeys: McpKeys;
  config: AppConfig;
  logger: Logger;
  now: () => Date;
  https?: { key: string | Buffer; cert: string | Buffer };
  /** Registers the data plane (sessions) when the server runs sandboxes (a pool runtime is wired). */
  dataPlane?: DataPlanePlugin;
  /** The operational routes (/healthz, /readyz, /metrics), likewise. */
  operational?: OperationalPlugin;
  /** The built web console served at `/` (default console/dist of this checkout). */
  consoleDir?: string;
}

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  // Typed as Fastify's own logger interface, so the app is a plain FastifyInstance rather than one generic over pino.
  const loggerInstance: FastifyBaseLogger = deps.logger;
  const app = Fastify({
    loggerInstance,
    routerOptions: { caseSensitive: false, ignoreTrailingSlash: true, maxParamLength: 1024 },
    bodyLimit: deps.config.bodyLimitBytes,
    return503OnClosing: true,
    logController: new AccessLog(),
    forceCloseConnections: "idle",
    // A URL the router cannot decode or a parameter past maxParamLength fails before any route (and its
    // error handler) is chosen; answer in the envelope of the surface the URL belongs to.
    frameworkErrors: (error: Error, request: FastifyRequest, reply: FastifyReply) => {
      const coded = toCodedError(error) ?? new InternalError();
      return isDataPlaneUrl(request.url) ? sendDataPlaneError(reply, coded) : sendArmError(reply, coded);
    },
    // Requests Node's HTTP parser refuses (headers or URL over its 16 KiB, not HTTP at all) never reach a route:
    // answer them in the same {"error": {"code", "message"}} shape as everything else.
    clientErrorHandler: answerClientError,
    ...(deps.https ? { https: { key: deps.https.key, cert: deps.https.cert } } : {}),
  });

  installArmErrorHandler(app);
  acceptEmptyBodies(app);
  app.setNotFoundHandler(async (request, reply) =>
    sendArmError(reply, new RouteNotFoundError(request.method, request.url)),
  );

  await app.register(async (scope) =>
    armRoutes(scope, {
      pools: deps.pools,
      authenticator: deps.authenticator,
      tokens: deps.tokens,
      mcpKeys: deps.mcpKeys,
      config: deps.config,
      now: deps.now,
    }),
  );
  const { dataPlane } = deps;
  if (dataPlane) await app.register(async (scope) => dataPlane(scope, deps.pools));
  if (deps.operational) await app.register(deps.operational);
  await app.register(async (scope) => consoleRoutes(scope, { dir: deps.consoleDir }));
  return app;
}

/**
 * What the HTTP parser refused, answered on the raw socket (no request object exists yet), as Node's own handler
 * does: only when no response is under way on that connection (a pipelined request must not cut into one).
 */
function answerClientError(err: Error & { code?: string }, socket: Duplex): void {
  const inFlight = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (err.code === "ECONNRESET" || !socket.writable || inFlight?.headersSent) {
    socket.destroy();
    return;
  }
  const refusal =
    err.code === "HPE_HEADER_OVERFLOW"
      ? new RequestHeaderFieldsTooLargeError()
      : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? new RequestTimeoutError()
        : new BadRequestError("The request is not valid HTTP.");
  socket.end(rawErrorResponse(refusal));
}

/**
 * The access log: one line per request, written when it ends, instead of Fastify's two; server errors at error,
 * other refusals at info, the rest at debug. Two JSON lines per request at info cost as much as the server's own
 * work on an execution in an existing session; `--log-level debug` shows every request.
 */
class AccessLog extends LogController {
  override incomingRequest(): void {}

  override requestCompleted(
    error: Error | null | undefined,
    request: FastifyRequest,
    reply: FastifyReply,
  ): void {
    const status = reply.statusCode;
    const level = error || status >= 500 ? "error" : status >= 400 ? "info" : "debug";
    reply.log[level](
      {
        req: { method: request.method, url: request.url, remoteAddress: request.ip },
        res: { statusCode: status },
        responseTime: reply.elapsedTime,
        ...(error ? { err: error } : {}),
      },
      "request completed",
    );
  }
}
