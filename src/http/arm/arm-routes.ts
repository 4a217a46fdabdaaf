// The ARM surface: Microsoft.App/sessionPools CRUD with long-running operations, listing with nextLink,
// operation status/result URLs and the getAuthtoken action. Admin credential only; errors in the ARM envelope.
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { PoolTokenService } from "../../auth/pool-tokens.ts";
import type { Authenticator } from "../../auth/principal.ts";
import { OperationNotFoundError, ValidationError } from "../../core/errors.ts";
import { ARM_API_VERSIONS, SUPPORTED_ARM_API_VERSIONS } from "../../core/pools/api-versions.ts";
import { normalizeLocation, type PoolRef, poolResourceId } from "../../core/pools/pool-doc.ts";
import type { PoolService } from "../../core/pools/pool-service.ts";
import type { StoredOperation } from "../../store/store.ts";
import { requireAuthentication } from "../auth-hook.ts";
import { emptyTolerantJsonParser } from "../empty-body.ts";
import { ApiVersionError, ForbiddenError, MethodNotAllowedError } from "../errors.ts";
import { installArmErrorHandler } from "./arm-errors.ts";
import { poolToWire } from "./pool-wire.ts";

export interface ArmRoutesOptions {
  pools: PoolService;
  authenticator: Authenticator;
  tokens: PoolTokenService;
  /** Read on every request: the public URL is known only once the server listens. */
  config: { readonly publicUrl: string; readonly listPageSize: number; readonly retryAfterSeconds: number };
  now: () => Date;
}

const SUB = "/subscriptions/:subscriptionId";
const PROVIDER = "/providers/Microsoft.App";
const POOLS_IN_RG = `${SUB}/resourceGroups/:resourceGroupName${PROVIDER}/sessionPools`;
const POOL = `${POOLS_IN_RG}/:sessionPoolName`;
const OPERATIONS = `${SUB}${PROVIDER}/locations/:location`;

/** Deeper than any session pool body (about 10 levels), shallow enough for the recursive code behind the routes. */
const MAX_BODY_DEPTH = 32;

const SUBSCRIPTION_ID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const RESOURCE_GROUP = /^[-\w._()]{1,90}$/u;

type Params = Record<string, string>;
type Handler = (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;

export async function armRoutes(app: FastifyInstance, o: ArmRoutesOptions): Promise<void> {
  installArmErrorHandler(app);
  // ARM bodies are JSON: text/plain gets 415 instead of reaching a route as a string, and PATCH may be sent
  // as RFC 7396 application/merge-patch+json.
  app.removeContentTypeParser("text/plain");
  app.addContentTypeParser(
    "application/merge-patch+json",
    { parseAs: "string" },
    emptyTolerantJsonParser(app),
  );
  requireAuthentication(app, o.authenticator);
  app.addHook("onRequest", async (request) => {
    if (request.principal?.kind !== "admin") {
      throw new ForbiddenError(
        "AuthorizationFailed",
        "This credential is scoped to one session pool's data plane; the management API needs the admin credential.",
      );
    }
  });
  app.addHook("preHandler", async (request) => {
    apiVersionOf(request);
    if (nestedDeeperThan(request.body, MAX_BODY_DEPTH)) {
      throw new ValidationError(
        "InvalidRequestContent",
        `The request body nests objects and arrays more than ${MAX_BODY_DEPTH} levels deep; a session pool needs far fewer.`,
      );
    }
    const params = request.params as Params;
    if (params["subscriptionId"] !== undefined && !SUBSCRIPTION_ID.test(params["subscriptionId"])) {
      throw new ValidationError(
        "InvalidSubscriptionId",
        `The provided subscription identifier '${params["subscriptionId"]}' is malformed or invalid; use a GUID.`,
        "subscriptionId",
      );
    }
    const rg = params["resourceGroupName"];
    if (rg !== undefined && (!RESOURCE_GROUP.test(rg) || rg.endsWith("."))) {
      throw new ValidationError(
        "InvalidResourceGroupName",
        `The resource group name '${rg}' is invalid: 1-90 letters, digits, '_', '-', '.', '(' and ')', not ending in '.'.`,
        "resourceGroupName",
      );
    }
  });

  const opUrls = (op: StoredOperation, subscriptionId: string) => {
    const base = `${o.config.publicUrl}/subscriptions/${subscriptionId}${PROVIDER}/locations/${normalizeLocation(op.location)}`;
    const q = `?api-version=${encodeURIComponent(op.apiVersion)}`;
    return {
      asyncOperation: `${base}/sessionPoolOperationStatuses/${op.id}${q}`,
      location: `${base}/sessionPoolOperationResults/${op.id}${q}`,
    };
  };
  const lroHeaders = (reply: FastifyReply, op: StoredOperation, subscriptionId: string) => {
    const urls = opUrls(op, subscriptionId);
    reply.header("azure-asyncoperation", urls.asyncOperation).header("location", urls.location);
    if (o.config.retryAfterSeconds > 0) reply.header("retry-after", String(o.config.retryAfterSeconds));
  };
  const refOf = (request: FastifyRequest): PoolRef => {
    const p = request.params as Params;
    return {
      subscriptionId: p["subscriptionId"]!,
      resourceGroup: p["resourceGroupName"]!,
      name: p["sessionPoolName"]!,
    };
  };
  const header = (request: FastifyRequest, name: string) => {
    const v = request.headers[name];
    return typeof v === "string" ? v : undefined;
  };

  const list =
    (byGroup: boolean): Handler =>
    async (request) => {
      const p = request.params as Params;
      const q = request.query as Record<string, string | undefined>;
      const apiVersion = apiVersionOf(request);
      const afterKey = decodeSkipToken(q["$skipToken"] ?? q["$skiptoken"]);
      const filter = {
        subscriptionId: p["subscriptionId"]!,
        ...(byGroup ? { resourceGroup: p["resourceGroupName"]! } : {}),
      };
      const page = o.pools.list(filter, afterKey, o.config.listPageSize);
      const path = request.url.split("?")[0];
      return {
        value: page.items.map((pool) => poolToWire(pool, apiVersion, o.config.publicUrl)),
        ...(page.nextAfterKey
          ? {
              nextLink: `${o.config.publicUrl}${path}?api-version=${encodeURIComponent(apiVersion)}&$skipToken=${Buffer.from(page.nextAfterKey).toString("base64url")}`,
            }
          : {}),
      };
    };

  route(app, `${SUB}${PROVIDER}/sessionPools`, { GET: list(false) });
  route(app, POOLS_IN_RG, { GET: list(true) });

  route(app, POOL, {
    GET: async (request, reply) => {
      const pool = o.pools.get(refOf(request));
      reply.header("etag", `"${pool.etag}"`);
      return poolToWire(pool, apiVersionOf(request), o.config.publicUrl);
    },
    PUT: async (request, reply) => {
      const apiVersion = apiVersionOf(request);
      const ifMatch = header(request, "if-match");
      const ifNoneMatch = header(request, "if-none-match");
      const result = o.pools.put(refOf(request), request.body, {
        principal: request.principal!,
        apiVersion,
        ...(ifMatch === undefined ? {} : { ifMatch }),
        ...(ifNoneMatch === undefined ? {} : { ifNoneMatch }),
      });
      lroHeaders(reply, result.operation, result.pool.subscriptionId);
      reply.header("etag", `"${result.pool.etag}"`).code(result.created ? 201 : 200);
      return poolToWire(result.pool, apiVersion, o.config.publicUrl);
    },
    PATCH: async (request, reply) => {
      const apiVersion = apiVersionOf(request);
      const ifMatch = header(request, "if-match");
      const result = o.pools.patch(refOf(request), request.body, {
        principal: request.principal!,
        apiVersion,
        ...(ifMatch === undefined ? {} : { ifMatch }),
      });
      lroHeaders(reply, result.operation, result.pool.subscriptionId);
      reply.header("etag", `"${result.pool.etag}"`).code(202);
      return poolToWire(result.pool, apiVersion, o.config.publicUrl);
    },
    DELETE: async (request, reply) => {
      const ifMatch = header(request, "if-match");
      const ref = refOf(request);
      const op = o.pools.delete(ref, {
        apiVersion: apiVersionOf(request),
        ...(ifMatch === undefined ? {} : { ifMatch }),
      });
      if (!op) return reply.code(204).send();
      lroHeaders(reply, op, ref.subscriptionId);
      return reply.code(202).send();
    },
  });

  const authToken: Handler = async (request) => {
    const pool = o.pools.get(refOf(request));
    const issued = await o.tokens.issue(pool, o.now());
    return {
      id: poolResourceId(pool),
      name: pool.name,
      type: "Microsoft.App/sessionPools/accesstoken",
      location: (pool.doc as { location?: string }).location,
      properties: { token: issued.token, expires: issued.expires.toISOString() },
    };
  };
  route(app, `${POOL}/getAuthtoken`, { POST: authToken });

  const findOperation = (request: FastifyRequest): StoredOperation => {
    const p = request.params as Params;
    const op = o.pools.getOperation(p["operationId"]!);
    if (!op?.poolKey.startsWith(`${p["subscriptionId"]!.toLowerCase()}/`)) {
      throw new OperationNotFoundError(p["operationId"]!);
    }
    return op;
  };

  route(app, `${OPERATIONS}/sessionPoolOperationStatuses/:operationId`, {
    GET: async (request, reply) => {
      const op = findOperation(request);
      const p = request.params as Params;
      if (op.status === "InProgress" && o.config.retryAfterSeconds > 0)
        reply.header("retry-after", String(o.config.retryAfterSeconds));
      return {
        id: `/subscriptions/${p["subscriptionId"]}${PROVIDER}/locations/${normalizeLocation(op.location)}/sessionPoolOperationStatuses/${op.id}`,
        name: op.id,
        resourceId: op.resourceId,
        status: op.status,
        startTime: op.startTime,
        ...(op.endTime ? { endTime: op.endTime } : {}),
        ...(op.error ? { error: op.error } : {}),
      };
    },
  });

  route(app, `${OPERATIONS}/sessionPoolOperationResults/:operationId`, {
    GET: async (request, reply) => {
      const op = findOperation(request);
      const p = request.params as Params;
      if (op.status === "InProgress") {
        lroHeaders(reply, op, p["subscriptionId"]!);
        return reply.code(202).send();
      }
      if (op.status !== "Succeeded") {
        const error = op.error ?? {
          code: op.status,
          message: `The operation ended with status ${op.status}.`,
        };
        return reply.code(op.status === "Canceled" ? 409 : 400).send({ error });
      }
      if (op.kind === "delete") return reply.code(204).send();
      const [, rg, name] = op.poolKey.split("/");
      try {
        const pool = o.pools.get({ subscriptionId: p["subscriptionId"]!, resourceGroup: rg!, name: name! });
        return poolToWire(pool, apiVersionOf(request), o.config.publicUrl);
      } catch {
        return reply.code(204).send();
      }
    },
  });
}

/** Registers one path for every method, so a known path with a wrong method answers 405, not 404. */
function route(app: FastifyInstance, url: string, handlers: Partial<Record<string, Handler>>): void {
  const allowed = Object.keys(handlers);
  app.route({
    method: ["GET", "PUT", "PATCH", "DELETE", "POST", "HEAD", "OPTIONS"],
    url,
    handler: async (request, reply) => {
      const handler = handlers[request.method];
      if (!handler) throw new MethodNotAllowedError(request.method, allowed);
      return handler(request, reply);
    },
  });
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

function decodeSkipToken(token: string | undefined): string | undefined {
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

/** Whether `value` nests objects or arrays more than `max` levels deep; iterative, so any depth is safe to ask. */
function nestedDeeperThan(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 1]];
  for (let next = stack.pop(); next; next = stack.pop()) {
    const [node, depth] = next;
    if (node === null || typeof node !== "object") continue;
    if (depth > max) return true;
    for (const child of Object.values(node)) stack.push([child, depth + 1]);
  }
  return false;
}
