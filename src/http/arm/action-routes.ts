// Actions on a session pool: getAuthtoken, Container Apps' action applied to session pools, which issues a
// short-lived token for the pool's data plane; and the MCP server's credential actions (2025-10-02-preview).
import type { FastifyInstance, FastifyRequest } from "fastify";
import { ValidationError } from "../../core/errors.ts";
import { poolDocOf, poolResourceId } from "../../core/pools/pool-doc.ts";
import type { StoredPool } from "../../store/store.ts";
import { type ArmRoutesOptions, POOL, refOf, route, schemas } from "./arm-request.ts";

export function actionRoutes(app: FastifyInstance, o: ArmRoutesOptions): void {
  route(app, `${POOL}/getAuthtoken`, schemas.pool, {
    POST: async (request) => {
      const pool = await o.pools.get(refOf(request));
      const issued = await o.tokens.issue(pool, o.now());
      return {
        id: poolResourceId(pool),
        name: pool.name,
        type: "Microsoft.App/sessionPools/accesstoken",
        location: (pool.doc as { location?: string }).location,
        properties: { token: issued.token, expires: issued.expires.toISOString() },
      };
    },
  });

  const mcpPool = async (request: FastifyRequest): Promise<StoredPool> => {
    const pool = await o.pools.get(refOf(request));
    if (poolDocOf(pool).properties.mcpServerSettings?.isMcpServerEnabled !== true) {
      throw new ValidationError(
        "McpServerNotEnabled",
        `The session pool '${pool.name}' has no MCP server: PUT it with properties.mcpServerSettings.isMcpServerEnabled: true (api-version 2025-10-02-preview) first.`,
        "properties.mcpServerSettings.isMcpServerEnabled",
      );
    }
    return pool;
  };
  // The router ignores letter case, so fetchMCPServerCredentials (Azure's documentation) is this route too.
  route(app, `${POOL}/fetchMcpServerCredentials`, schemas.pool, {
    POST: async (request) => ({ apiKey: await o.mcpKeys.fetch(await mcpPool(request)) }),
  });
  const rotate = async (request: FastifyRequest) => ({
    apiKey: await o.mcpKeys.rotate(await mcpPool(request)),
  });
  route(app, `${POOL}/rotateMcpServerCredentials`, schemas.pool, { POST: rotate });
  // The spelling some of Azure's MCP documentation uses for the same rotation.
  route(app, `${POOL}/regenerateCredentials`, schemas.pool, { POST: rotate });
}
