// The long-running operations' URLs: Azure-AsyncOperation (sessionPoolOperationStatuses, the status body) and
// Location (sessionPoolOperationResults: 202 while running, then the pool, 204, or the error).
import type { FastifyInstance, FastifyRequest } from "fastify";
import { OperationNotFoundError } from "../../core/errors.ts";
import { normalizeLocation } from "../../core/pools/pool-doc.ts";
import type { StoredOperation } from "../../store/store.ts";
import {
  type ArmRoutesOptions,
  apiVersionOf,
  OPERATIONS,
  type OperationLinks,
  type OperationParams,
  PROVIDER,
  route,
  schemas,
} from "./arm-request.ts";
import { poolToWire } from "./pool-wire.ts";

export function operationRoutes(app: FastifyInstance, o: ArmRoutesOptions, links: OperationLinks): void {
  /** The operation named in the path, within the path's subscription only. */
  const findOperation = async (request: FastifyRequest): Promise<StoredOperation> => {
    const p = request.params as OperationParams;
    const op = await o.pools.getOperation(p.operationId);
    if (!op?.poolKey.startsWith(`${p.subscriptionId.toLowerCase()}/`)) {
      throw new OperationNotFoundError(p.operationId);
    }
    return op;
  };

  route(app, `${OPERATIONS}/sessionPoolOperationStatuses/:operationId`, schemas.operation, {
    GET: async (request, reply) => {
      const op = await findOperation(request);
      const p = request.params as OperationParams;
      if (op.status === "InProgress") links.retryAfter(reply);
      return {
        id: `/subscriptions/${p.subscriptionId}${PROVIDER}/locations/${normalizeLocation(op.location)}/sessionPoolOperationStatuses/${op.id}`,
        name: op.id,
        resourceId: op.resourceId,
        status: op.status,
        startTime: op.startTime,
        ...(op.endTime ? { endTime: op.endTime } : {}),
        ...(op.error ? { error: op.error } : {}),
      };
    },
  });

  route(app, `${OPERATIONS}/sessionPoolOperationResults/:operationId`, schemas.operation, {
    GET: async (request, reply) => {
      const op = await findOperation(request);
      const p = request.params as OperationParams;
      if (op.status === "InProgress") {
        links.headers(reply, op, p.subscriptionId);
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
        const pool = await o.pools.get({ subscriptionId: p.subscriptionId, resourceGroup: rg!, name: name! });
        return poolToWire(pool, apiVersionOf(request), o.config.publicUrl);
      } catch {
        return reply.code(204).send();
      }
    },
  });
}
