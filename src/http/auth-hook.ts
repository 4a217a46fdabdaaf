// Bearer-token authentication for a Fastify scope: every route in the scope needs a credential some
// authenticator accepts; the principal is attached to the request for the routes to authorise.
import type { IncomingHttpHeaders } from "node:http";
import type { FastifyInstance } from "fastify";
import { AuthenticationError } from "../auth/errors.ts";
import type { Authenticator, Principal } from "../auth/principal.ts";
import type { SessionPoolError } from "../errors.ts";

declare module "fastify" {
  interface FastifyRequest {
    principal?: Principal;
  }
}

function bearerToken(header: string | undefined): string {
  if (header === undefined || header === "") {
    throw new AuthenticationError(
      "AuthenticationFailed",
      "Authentication is required: send 'Authorization: Bearer <token>'.",
    );
  }
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match) {
    throw new AuthenticationError(
      "InvalidAuthenticationToken",
      "The Authorization header must be 'Bearer <token>'.",
    );
  }
  return match[1]!;
}

/**
 * The principal a request's `Authorization: Bearer` header proves, or a 401. Takes plain headers, so routes,
 * raw upgrade requests and operational endpoints authenticate the same way.
 */
export async function authenticateHeaders(
  authenticator: Authenticator,
  headers: IncomingHttpHeaders,
): Promise<Principal> {
  const principal = await authenticator.authenticate(bearerToken(headers.authorization));
  if (!principal) {
    throw new AuthenticationError(
      "InvalidAuthenticationToken",
      "The access token is invalid or has expired.",
    );
  }
  return principal;
}

export function requireAuthentication(scope: FastifyInstance, authenticator: Authenticator): void {
  scope.decorateRequest("principal", undefined);
  scope.addHook("onRequest", async (request) => {
    request.principal = await authenticateHeaders(authenticator, request.headers);
  });
}

/**
 * The admin routes' hook (the management API, /metrics): authenticated, and the admin credential only. `refusal`
 * is what each surface answers a valid credential that is not the admin's (a pool-scoped data-plane token).
 */
export function requireAdmin(
  scope: FastifyInstance,
  authenticator: Authenticator,
  refusal: () => SessionPoolError,
): void {
  requireAuthentication(scope, authenticator);
  scope.addHook("onRequest", async (request) => {
    if (request.principal?.kind !== "admin") throw refusal();
  });
}
