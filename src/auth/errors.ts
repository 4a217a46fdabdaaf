// Errors the auth layer raises: a credential that is missing, malformed, unknown, expired or revoked.
import { SessionPoolError } from "../errors.ts";

export type AuthenticationCode = "AuthenticationFailed" | "InvalidAuthenticationToken";

/** A 401 with the WWW-Authenticate challenge RFC 6750 asks for. */
export class AuthenticationError extends SessionPoolError {
  static readonly codes = ["AuthenticationFailed", "InvalidAuthenticationToken"] as const;

  constructor(code: AuthenticationCode, message: string) {
    super(code, 401, message, {
      headers: { "www-authenticate": `Bearer realm="sessionpool", error="invalid_token"` },
    });
  }
}
