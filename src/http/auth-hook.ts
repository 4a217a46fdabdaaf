// Bearer-token authentication for a Fastify scope: every route in the scope needs a credential some
// authenticator accepts; the principal is attached to the request for the routes to authorise.
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { Authenticator, Principal } from "../auth/principal.ts";
import { AuthenticationError } from "./errors.ts";

declare module "fastify" {
  interface FastifyRequest {
    principal?: Principal;
  }
}

export function bearerToken(request: FastifyRequest): string {
  const header = request.headers.authorization;
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

export function requireAuthentication(scope: FastifyInstance, authenticator: Authenticator): void {
  scope.decorateRequest("principal", undefined);
  scope.addHook("onRequest", async (request) => {
    const principal = await authenticator.authenticate(bearerToken(request));
    if (!principal) {
      throw new AuthenticationError(
        "InvalidAuthenticationToken",
        "The access token is invalid or has expired.",
      );
    }
    request.principal = principal;
  });
}
