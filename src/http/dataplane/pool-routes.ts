// The pool endpoint itself and what it says about the pool: GET on the endpoint (what it serves), /metadata,
// and the 404 for any other path under a code-interpreter pool's endpoint.
import type { FastifyInstance, FastifyRequest } from "fastify";
import { RouteNotFoundError } from "../errors.ts";
import type { TypeBoxProvider } from "../type-provider.ts";
import {
  DATA_PLANE_API_VERSIONS,
  type DataPlaneContext,
  keyOf,
  PREFIX,
  schemas,
} from "./dataplane-request.ts";

export function poolRoutes(app: FastifyInstance, ctx: DataPlaneContext): void {
  const api = app.withTypeProvider<TypeBoxProvider>();
  // Anything else under the endpoint of a code-interpreter pool is not a route.
  const notARoute = async (request: FastifyRequest) => {
    throw new RouteNotFoundError(request.method, request.url);
  };
  // The endpoint itself is a URL the management API hands out (poolManagementEndpoint): GET says what it serves.
  app.route({
    method: app.supportedMethods.filter((m) => m !== "GET" && m !== "HEAD"),
    url: PREFIX,
    handler: notARoute,
  });
  api.get(PREFIX, { schema: schemas.session }, async (request) => ({
    name: request.params.poolName,
    containerType: await ctx.poolTypeOf(request),
    apiVersions: DATA_PLANE_API_VERSIONS,
  }));
  app.all(`${PREFIX}/*`, notARoute);

  api.get(`${PREFIX}/metadata`, { schema: schemas.session }, async (request) => {
    const meta = await ctx.o.sessions.metadata(keyOf(request));
    const pool = (await ctx.poolOf(request))!;
    return {
      runtimes: meta.runtimes,
      preInstalledPackages: meta.packages,
      createdAt: pool.createdAt,
      lastUpdatedAt: pool.updatedAt,
      jupyterKernel: {
        name: meta.kernel.name,
        version: meta.kernel.version,
        projectUrl: "https://github.com/sessionpool/sessionpool",
        description: "sessionpool's persistent Python interpreter with Jupyter-style results",
      },
    };
  });
}
