// What every data-plane route reads from a request: the pool it addresses (from the path), the session
// identifier and api-version (from the query), the caller's scope; and the per-request context the routes share.
import type { FastifyReply, FastifyRequest } from "fastify";
import Type, { type Static } from "typebox";
import type { Authenticator, Principal } from "../../auth/principal.ts";
import { SessionNotFoundError, ValidationError } from "../../core/errors.ts";
import type { FleetRouting } from "../../core/fleet/fleet-routing.ts";
import type { McpKeys } from "../../core/mcp/mcp-keys.ts";
import type { McpProtocol } from "../../core/mcp/mcp-protocol.ts";
import { type PoolDoc, poolDocOf, poolKey } from "../../core/pools/pool-doc.ts";
import type { PoolLookup } from "../../core/pools/pool-service.ts";
import type { Executions } from "../../core/sessions/executions.ts";
import type { RequestedEnvironment } from "../../core/sessions/session-environment.ts";
import type { Acquired, LiveSandbox, SessionManager } from "../../core/sessions/session-manager.ts";
import type { StoredPool } from "../../store/store.ts";
import { ApiVersionError, ForbiddenError } from "../errors.ts";
import type { TrustedProxies } from "./proxy-trust.ts";
import type { ByteBudget } from "./upload-budget.ts";

export const DATA_PLANE_API_VERSIONS = [
  "2024-02-02-preview",
  "2024-08-02-preview",
  "2024-10-02-preview",
  "2025-02-02-preview",
  "2025-10-02-preview",
];
/** The versions of the first API generation (/code/execute, /files/upload, legacy file shapes). */
export const LEGACY_VERSIONS = new Set(["2024-02-02-preview", "2024-08-02-preview"]);
const IDENTIFIER = /^[a-zA-Z0-9_|}{[\]:";'<>?/.,@#$%^&*()\-+=!~`]{4,128}$/;

export const PREFIX =
  "/subscriptions/:subscriptionId/resourceGroups/:resourceGroupName/sessionPools/:poolName";

// Route schemas. They admit every request the router hands over (a query value given twice is an array; the
// first counts): the coded checks below answer what is wrong, with the data plane's own codes and messages.
const QueryValue = Type.Optional(Type.Union([Type.String(), Type.Array(Type.String())]));
const Header = Type.Optional(Type.String());

export const PoolParams = Type.Object({
  subscriptionId: Type.String(),
  resourceGroupName: Type.String(),
  poolName: Type.String(),
});
export type PoolParams = Static<typeof PoolParams>;

/** The query every data-plane route reads: api-version, and the session's identifier where one is named. */
export const SessionQuery = Type.Object({ "api-version": QueryValue, identifier: QueryValue });

/** A route's schema: the pool endpoint's path and the session query, plus what the route reads besides. */
export const schemas = {
  session: { params: PoolParams, querystring: SessionQuery },
  execution: {
    params: Type.Object({ ...PoolParams.properties, executionId: Type.String() }),
    querystring: SessionQuery,
  },
  run: {
    params: PoolParams,
    querystring: SessionQuery,
    headers: Type.Object({ "operation-id": Header }),
  },
  files: {
    params: PoolParams,
    querystring: Type.Object({ ...SessionQuery.properties, path: QueryValue, recursive: QueryValue }),
  },
  file: {
    params: Type.Object({ ...PoolParams.properties, "*": Type.String() }),
    querystring: Type.Object({ ...SessionQuery.properties, path: QueryValue }),
  },
  listSessions: {
    params: PoolParams,
    querystring: Type.Object({ ...SessionQuery.properties, skip: QueryValue }),
  },
} as const;

export interface DataPlaneOptions {
  pools: PoolLookup;
  sessions: SessionManager;
  executions: Executions;
  authenticator: Authenticator;
  /** The pools' MCP servers (/mcp): their keys and the protocol behind them. */
  mcp?: { keys: McpKeys; protocol: McpProtocol };
  /** The memory all uploads in flight may hold together (default DEFAULT_UPLOAD_BUFFER_BYTES). */
  uploads?: ByteBudget;
  /** Set when this server is one of a fleet: requests for other servers' sessions are forwarded there. */
  fleet?: FleetRouting;
  config: {
    readonly publicUrl: string;
    /** Direct peers whose X-Forwarded-* the custom-container proxy keeps and extends (default: nobody). */
    readonly trustedProxies?: TrustedProxies;
    /** How often a streamed execution's idle event stream gets a keep-alive comment (default 15 s). */
    readonly streamHeartbeatMs?: number;
  };
}

/** What the data plane's routes share: the pool of a request (looked up once), sessions, URLs. */
export class DataPlaneContext {
  readonly o: DataPlaneOptions;
  // The pool a request addresses, looked up once per request (the hooks and handlers all need it).
  readonly #pools = new WeakMap<FastifyRequest, Promise<StoredPool | undefined>>();

  constructor(o: DataPlaneOptions) {
    this.o = o;
  }

  poolOf(request: FastifyRequest): Promise<StoredPool | undefined> {
    let pool = this.#pools.get(request);
    if (!pool) {
      pool = this.o.pools.findPool(keyOf(request));
      this.#pools.set(request, pool);
    }
    return pool;
  }

  async poolTypeOf(request: FastifyRequest): Promise<PoolDoc["properties"]["containerType"] | undefined> {
    const pool = await this.poolOf(request);
    return pool ? poolDocOf(pool).properties.containerType : undefined;
  }

  /** The session for the request's identifier, allocated on first use; sets the allocation headers. */
  async acquire(request: FastifyRequest, reply: FastifyReply): Promise<Acquired> {
    return this.#allocation(await this.o.sessions.acquire(keyOf(request), identifierOf(request)), reply);
  }

  /** `PUT /session`: the session claimed with these variables, or the existing one with the same (`fresh`: no). */
  async claim(request: FastifyRequest, reply: FastifyReply, env: RequestedEnvironment): Promise<Acquired> {
    return this.#allocation(await this.o.sessions.claim(keyOf(request), identifierOf(request), env), reply);
  }

  #allocation(acquired: Acquired, reply: FastifyReply): Acquired {
    // Azure sends its x-ms-* timing headers for code interpreters only, never for custom containers.
    if (acquired.live.kind === "code-interpreter") {
      reply.header("x-ms-session-guid", acquired.live.sandboxId.slice(0, 12));
      if (acquired.fresh) reply.header("x-ms-allocation-time", formatMs(acquired.allocationMs));
    }
    if (acquired.replaced) reply.header("x-sessionpool-session-replaced", "true");
    return acquired;
  }

  /** The live session for the request's identifier, never allocating one. */
  existing(request: FastifyRequest): LiveSandbox {
    const identifier = identifierOf(request);
    const live = this.o.sessions.find(keyOf(request), identifier);
    if (!live) throw new SessionNotFoundError(identifier);
    return live;
  }

  /** The pool management endpoint the request came through, as the management API hands it out. */
  endpoint(request: FastifyRequest): string {
    const p = request.params as PoolParams;
    return `${this.o.config.publicUrl}/subscriptions/${p.subscriptionId}/resourceGroups/${p.resourceGroupName}/sessionPools/${p.poolName}`;
  }
}

/** A pool-scoped token works for its own pool only. */
export function requirePoolScope(principal: Principal, key: string): void {
  if (principal.kind === "pool" && principal.poolKey !== key) {
    throw new ForbiddenError(
      "Forbidden",
      "This token is for another session pool; get one for this pool with getAuthtoken.",
    );
  }
}

export function keyOf(request: FastifyRequest): string {
  const p = request.params as PoolParams;
  return poolKey({ subscriptionId: p.subscriptionId, resourceGroup: p.resourceGroupName, name: p.poolName });
}

export function queryOf(request: FastifyRequest, name: string): string | undefined {
  const q = request.query as Record<string, unknown>;
  const v = q[name];
  const first = Array.isArray(v) ? v[0] : v;
  return typeof first === "string" ? first : undefined;
}

export function headerOf(request: FastifyRequest, name: string): string | undefined {
  const v = request.headers[name];
  return typeof v === "string" && v !== "" ? v : undefined;
}

export function identifierOf(request: FastifyRequest): string {
  return checkIdentifier(queryOf(request, "identifier"));
}

export function checkIdentifier(identifier: string | undefined): string {
  if (identifier === undefined || identifier === "") {
    throw new ValidationError(
      "MissingIdentifier",
      "The 'identifier' query parameter is required: it names the session.",
      "identifier",
    );
  }
  if (!IDENTIFIER.test(identifier)) {
    throw new ValidationError(
      "InvalidIdentifier",
      `The identifier is invalid: use 4 to 128 characters from letters, digits and _|{}[]:";'<>?/.,@#$%^&*()-+=!~\` (got ${identifier.length} characters).`,
      "identifier",
    );
  }
  return identifier;
}

export function apiVersionOf(request: FastifyRequest): string {
  const v = queryOf(request, "api-version");
  if (v === undefined || v === "") {
    throw new ApiVersionError(
      "MissingApiVersionParameter",
      `The api-version query parameter is required. Supported versions: ${DATA_PLANE_API_VERSIONS.join(", ")}.`,
    );
  }
  if (!DATA_PLANE_API_VERSIONS.includes(v)) {
    throw new ApiVersionError(
      "InvalidApiVersionParameter",
      `The api-version '${v}' is not supported by the data plane. Supported versions: ${DATA_PLANE_API_VERSIONS.join(", ")}.`,
    );
  }
  return v;
}

export function formatMs(ms: number): string {
  return ms.toFixed(6);
}
