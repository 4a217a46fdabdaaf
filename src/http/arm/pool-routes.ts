// Microsoft.App/sessionPools as ARM resources: list (by subscription, by resource group, paged with nextLink),
// GET, PUT, PATCH and DELETE, the writes answered as long-running operations.
import type { FastifyInstance } from "fastify";
import type { PoolService } from "../../core/pools/pool-service.ts";
import {
  type ArmRoutesOptions,
  apiVersionOf,
  decodeSkipToken,
  type Handler,
  headerOf,
  type ListParams,
  type OperationLinks,
  POOL,
  POOLS_IN_RG,
  PROVIDER,
  refOf,
  route,
  SUB,
  schemas,
} from "./arm-request.ts";
import { poolToWire } from "./pool-wire.ts";

export function poolRoutes(app: FastifyInstance, o: ArmRoutesOptions, links: OperationLinks): void {
  const pools: PoolService = o.pools;
  const list =
    (byGroup: boolean): Handler =>
    async (request) => {
      const p = request.params as ListParams;
      const q = request.query as Record<string, string | undefined>;
      const apiVersion = apiVersionOf(request);
      const afterKey = decodeSkipToken(q["$skipToken"] ?? q["$skiptoken"]);
      const filter = {
        subscriptionId: p.subscriptionId,
        ...(byGroup ? { resourceGroup: p.resourceGroupName! } : {}),
      };
      const page = await pools.list(filter, afterKey, o.config.listPageSize);
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

  route(app, `${SUB}${PROVIDER}/sessionPools`, schemas.list, { GET: list(false) });
  route(app, POOLS_IN_RG, schemas.list, { GET: list(true) });

  route(app, POOL, schemas.pool, {
    GET: async (request, reply) => {
      const pool = await pools.get(refOf(request));
      reply.header("etag", `"${pool.etag}"`);
      return poolToWire(pool, apiVersionOf(request), o.config.publicUrl);
    },
    PUT: async (request, reply) => {
      const apiVersion = apiVersionOf(request);
      const ifMatch = headerOf(request, "if-match");
      const ifNoneMatch = headerOf(request, "if-none-match");
      const result = await pools.put(refOf(request), request.body, {
        principal: request.principal!,
        apiVersion,
        ...(ifMatch === undefined ? {} : { ifMatch }),
        ...(ifNoneMatch === undefined ? {} : { ifNoneMatch }),
      });
      links.headers(reply, result.operation, result.pool.subscriptionId);
      reply.header("etag", `"${result.pool.etag}"`).code(result.created ? 201 : 200);
      return poolToWire(result.pool, apiVersion, o.config.publicUrl);
    },
    PATCH: async (request, reply) => {
      const apiVersion = apiVersionOf(request);
      const ifMatch = headerOf(request, "if-match");
      const result = await pools.patch(refOf(request), request.body, {
        principal: request.principal!,
        apiVersion,
        ...(ifMatch === undefined ? {} : { ifMatch }),
      });
      links.headers(reply, result.operation, result.pool.subscriptionId);
      reply.header("etag", `"${result.pool.etag}"`).code(202);
      return poolToWire(result.pool, apiVersion, o.config.publicUrl);
    },
    DELETE: async (request, reply) => {
      const ifMatch = headerOf(request, "if-match");
      const ref = refOf(request);
      const op = await pools.delete(ref, {
        apiVersion: apiVersionOf(request),
        ...(ifMatch === undefined ? {} : { ifMatch }),
      });
      if (!op) return reply.code(204).send();
      links.headers(reply, op, ref.subscriptionId);
      return reply.code(202).send();
    },
  });
}
