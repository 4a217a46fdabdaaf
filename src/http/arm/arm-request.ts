// What every ARM route reads from a request: the resource path, api-version, skip token and conditional
// headers, with the route schemas that type them; and the long-running-operation URLs the routes answer with.
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import Type, { type Static } from "typebox";
import type { PoolTokenService } from "../../auth/pool-tokens.ts";
import type { Authenticator } from "../../auth/principal.ts";
import { ValidationError } from "../../core/errors.ts";
import type { McpKeys } from "../../core/mcp/mcp-keys.ts";
import { ARM_API_VERSIONS, SUPPORTED_ARM_API_VERSIONS } from "../../core/pools/api-versions.ts";
import { normalizeLocation, type PoolRef } from "../../core/pools/pool-doc.ts";
import type { PoolService } from "../../core/pools/pool-service.ts";
import type { StoredOperation } from "../../store/store.ts";
import { ApiVersionError, MethodNotAllowedError } from "../errors.ts";

export interface ArmRoutesOptions {
  pools: PoolService;
  authenticator: Authenticator;
  tokens: PoolTokenService;
  /** The pools' MCP server API keys (fetchMcpServerCredentials, rotateMcpServerCredentials). */
  mcpKeys: McpKeys;
  /** Read on every request: the public URL is known only once the server listens. */
  config: { readonly publicUrl: string; readonly listPageSize: number; readonly retryAfterSeconds: number };
  now: () => Date;
}

export const SUB = "/subscriptions/:subscriptionId";
export const PROVIDER = "/providers/Microsoft.App";
export const POOLS_IN_RG = `${SUB}/resourceGroups/:resourceGroupName${PROVIDER}/sessionPools`;
export const POOL = `${POOLS_IN_RG}/:sessionPoolName`;
export const OPERATIONS = `${SUB}${PROVIDER}/locations/:location`;

// Route schemas. They admit every request the router hands over (a query value given twice is an array; the
// first counts; `$skipToken` in either letter case): the coded checks answer what is wrong, with ARM's codes.
const QueryValue = Type.Optional(Type.Union([Type.String(), Type.Array(Type.String())]));
const Header = Type.Optional(Type.String());
const ArmQuery = Type.Object({ "api-version": QueryValue });

export const schemas = {
  list: {
    params: Type.Object({ subscriptionId: Type.String(), resourceGroupName: Type.Optional(Type.String()) }),
    querystring: Type.Object({ ...ArmQuery.properties, $skipToken: QueryValue, $skiptoken: QueryValue }),
  },
  pool: {
    params: Type.Object({
      subscriptionId: Type.String(),
      resourceGroupName: Type.String(),
      sessionPoolName: Type.String(),
    }),
    querystring: ArmQuery,
    headers: Type.Object({ "if-match": Header, "if-none-match": Header }),
  },
  operation: {
    params: Type.Object({
      subscriptionId: Type.String(),
      location: Type.String(),
      operationId: Type.String(),
    }),
    querystring: ArmQuery,
  },
} as const;

export type PoolParams = Static<typeof schemas.pool.params>;
export type ListParams = Static<typeof schemas.list.params>;
export type OperationParams = Static<typeof schemas.operation.params>;

export type Handler = (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;

/**
 * Registers one path for every method, so a known path with a wrong method answers 405, not 404. `schema` is the
 * path's (one for all its methods).
 */
export function route(
  app: FastifyInstance,
  url: string,
  schema: object,
  handlers: Partial<Record<string, Handler>>,
): void {
  const allowed = Object.keys(handlers);
  app.route({
    method: ["GET", "PUT", "PATCH", "DELETE", "POST", "HEAD", "OPTIONS"],
    url,
    schema,
    handler: async (request, reply) => {
      const handler = handlers[request.method];
      if (!handler) throw new MethodNotAllowedError(request.method, allowed);
      return handler(request, reply);
    },
  });
}

export function refOf(request: FastifyRequest): PoolRef {
  const p = request.params as PoolParams;
  return { subscriptionId: p.subscriptionId, resourceGroup: p.resourceGroupName, name: p.sessionPoolName };
}

export function headerOf(request: FastifyRequest, name: string): string | undefined {
  const v = request.headers[name];
  return typeof v === "string" ? v : undefined;
}

export function apiVersionOf(request: FastifyRequest): string {
  const raw = (request.query as Record<string, unknown>)["api-version"];
  const value = Array.isArray(raw) ? raw[0] : raw;
  if (typeof value !== "string" || value === "") {
    throw new ApiVersionError(
      "MissingApiVersionParameter",
      `The api-version query parameter (?api-version=) is required for all requests. Supported versions: ${SUPPORTED_ARM_API_VERSIONS.join(", ")}.`,
    );
  }
  if (!(value in ARM_API_VERSIONS)) {
    throw new ApiVersionError(
      "InvalidApiVersionParameter",
      `The api-version '${value}' is invalid. The supported versions are '${SUPPORTED_ARM_API_VERSIONS.join(",")}'.`,
    );
  }
  return value;
}

export function decodeSkipToken(token: string | undefined): string | undefined {
  if (token === undefined || token === "") return undefined;
  const key = Buffer.from(token, "base64url").toString("utf8");
  if (key.split("/").length !== 3) {
    throw new ValidationError(
      "InvalidSkipToken",
      "The $skipToken is not valid; follow nextLink as returned.",
      "$skipToken",
    );
  }
  return key;
}

/** The URLs and headers of a long-running operation (Azure-AsyncOperation, Location, Retry-After). */
export class OperationLinks {
  readonly #config: ArmRoutesOptions["config"];

  constructor(config: ArmRoutesOptions["config"]) {
    this.#config = config;
  }

  urls(op: StoredOperation, subscriptionId: string) {
    const base = `${this.#config.publicUrl}/subscriptions/${subscriptionId}${PROVIDER}/locations/${normalizeLocation(op.location)}`;
    const q = `?api-version=${encodeURIComponent(op.apiVersion)}`;
    return {
      asyncOperation: `${base}/sessionPoolOperationStatuses/${op.id}${q}`,
      location: `${base}/sessionPoolOperationResults/${op.id}${q}`,
    };
  }

  headers(reply: FastifyReply, op: StoredOperation, subscriptionId: string): void {
    const urls = this.urls(op, subscriptionId);
    reply.header("azure-asyncoperation", urls.asyncOperation).header("location", urls.location);
    this.retryAfter(reply);
  }

  /** Retry-After on an answer about an operation still in progress (none when configured to 0). */
  retryAfter(reply: FastifyReply): void {
    if (this.#config.retryAfterSeconds > 0)
      reply.header("retry-after", String(this.#config.retryAfterSeconds));
  }
}
