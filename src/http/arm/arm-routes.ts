// The ARM surface: Microsoft.App/sessionPools CRUD with long-running operations, listing with nextLink,
// operation status/result URLs and the getAuthtoken action. Admin credential only; errors in the ARM envelope.
// Pools, operations and actions register their routes from their own files.
import type { FastifyInstance } from "fastify";
import { ValidationError } from "../../core/errors.ts";
import { requireAdmin } from "../auth-hook.ts";
import { emptyTolerantJsonParser } from "../empty-body.ts";
import { ForbiddenError } from "../errors.ts";
import { actionRoutes } from "./action-routes.ts";
import { installArmErrorHandler } from "./arm-errors.ts";
import { type ArmRoutesOptions, apiVersionOf, OperationLinks } from "./arm-request.ts";
import { operationRoutes } from "./operation-routes.ts";
import { poolRoutes } from "./pool-routes.ts";

export { type ArmRoutesOptions, apiVersionOf } from "./arm-request.ts";

/** Deeper than any session pool body (about 10 levels), shallow enough for the recursive code behind the routes. */
const MAX_BODY_DEPTH = 32;

const SUBSCRIPTION_ID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const RESOURCE_GROUP = /^[-\w._()]{1,90}$/u;

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
  requireAdmin(
    app,
    o.authenticator,
    () =>
      new ForbiddenError(
        "AuthorizationFailed",
        "This credential is scoped to one session pool's data plane; the management API needs the admin credential.",
      ),
  );
  app.addHook("preHandler", async (request) => {
    apiVersionOf(request);
    if (nestedDeeperThan(request.body, MAX_BODY_DEPTH)) {
      throw new ValidationError(
        "InvalidRequestContent",
        `The request body nests objects and arrays more than ${MAX_BODY_DEPTH} levels deep; a session pool needs far fewer.`,
      );
    }
    const params = request.params as { subscriptionId?: string; resourceGroupName?: string };
    if (params.subscriptionId !== undefined && !SUBSCRIPTION_ID.test(params.subscriptionId)) {
      throw new ValidationError(
        "InvalidSubscriptionId",
        `The provided subscription identifier '${params.subscriptionId}' is malformed or invalid; use a GUID.`,
        "subscriptionId",
      );
    }
    const rg = params.resourceGroupName;
    if (rg !== undefined && (!RESOURCE_GROUP.test(rg) || rg.endsWith("."))) {
      throw new ValidationError(
        "InvalidResourceGroupName",
        `The resource group name '${rg}' is invalid: 1-90 letters, digits, '_', '-', '.', '(' and ')', not ending in '.'.`,
        "resourceGroupName",
      );
    }
  });

  const links = new OperationLinks(o.config);
  poolRoutes(app, o, links);
  operationRoutes(app, o, links);
  actionRoutes(app, o);
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
