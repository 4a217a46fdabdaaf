// The data plane at poolManagementEndpoint: both generations of the code-interpreter API (2024-02-02-preview's
// /code/execute and /files/upload, and the current /executions, /files, /session, /listSessions, /metadata,
// /.management/stopSession), and the custom-container proxy. Admin credential or a token for this pool; errors
// in the data-plane envelope. Each resource registers its routes from its own file.
import multipart from "@fastify/multipart";
import type { FastifyInstance } from "fastify";
import { SessionPoolNotFoundError } from "../../core/errors.ts";
import { poolDocOf } from "../../core/pools/pool-doc.ts";
import { requireAuthentication } from "../auth-hook.ts";
import { installDataPlaneErrorHandler } from "./dataplane-errors.ts";
import {
  apiVersionOf,
  DataPlaneContext,
  type DataPlaneOptions,
  keyOf,
  type PoolParams,
  requirePoolScope,
} from "./dataplane-request.ts";
import { executionRoutes } from "./execution-routes.ts";
import { fileRoutes } from "./file-routes.ts";
import { fleetForwarding } from "./fleet-forwarding.ts";
import { mcpRoutes } from "./mcp-routes.ts";
import { poolRoutes } from "./pool-routes.ts";
import { proxyRoutes } from "./proxy-routes.ts";
import { sessionRoutes } from "./session-routes.ts";
import { UPLOAD_LIMIT_BYTES } from "./upload-budget.ts";

export { DATA_PLANE_API_VERSIONS, type DataPlaneOptions } from "./dataplane-request.ts";
export { DEFAULT_UPLOAD_BUFFER_BYTES, UPLOAD_LIMIT_BYTES } from "./upload-budget.ts";

export async function dataPlaneRoutes(app: FastifyInstance, o: DataPlaneOptions): Promise<void> {
  installDataPlaneErrorHandler(app);
  const ctx = new DataPlaneContext(o);
  // /mcp authenticates its own way (x-ms-apikey, mcp-routes.ts): a sibling scope, out of reach of the
  // bearer-token hook of the other routes.
  await app.register(async (scope) => mcpRoutes(scope, ctx));
  await app.register(async (scope) => sessionRoutesScope(scope, ctx));
}

async function sessionRoutesScope(app: FastifyInstance, ctx: DataPlaneContext): Promise<void> {
  const o = ctx.o;
  requireAuthentication(app, o.authenticator);
  // onRequest hooks run in the order they are added: after authentication, before the custom-container proxy and
  // before the body is read, a request for another server's session goes there (fleets only).
  fleetForwarding(app, ctx);
  await app.register(multipart, {
    limits: { fileSize: UPLOAD_LIMIT_BYTES, files: 1, fields: 20 },
    throwFileSizeLimit: true,
    // Keep the client's path ("sub/x.csv", "/mnt/data/x.csv"): sessionPath() places it and refuses escapes.
    preservePath: true,
  } as Parameters<typeof multipart>[1]);

  // Before the routes' own hooks: a custom container's requests never reach them.
  proxyRoutes(app, ctx);

  app.addHook("preHandler", async (request) => {
    requirePoolScope(request.principal!, keyOf(request));
    const pool = await ctx.poolOf(request);
    if (!pool || poolDocOf(pool).properties.provisioningState === "Deleting") {
      throw new SessionPoolNotFoundError((request.params as PoolParams).poolName);
    }
    apiVersionOf(request);
  });

  executionRoutes(app, ctx);
  fileRoutes(app, ctx);
  sessionRoutes(app, ctx);
  poolRoutes(app, ctx);
}
