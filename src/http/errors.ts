// Errors the HTTP layer raises itself (auth, api-version, routing), plus the mapping of Fastify's own errors
// (bad JSON, body too large, wrong content type) onto coded errors. Each surface renders them in its envelope.
import type { FastifyReply } from "fastify";
import { isSessionPoolError, SessionPoolError } from "../errors.ts";
import { storageFailure } from "../store/storage-errors.ts";

export class AuthenticationError extends SessionPoolError {
  constructor(code: string, message: string) {
    super(code, 401, message, {
      headers: { "www-authenticate": `Bearer realm="sessionpool", error="invalid_token"` },
    });
  }
}

export class ForbiddenError extends SessionPoolError {
  constructor(code: string, message: string) {
    super(code, 403, message);
  }
}

export class ApiVersionError extends SessionPoolError {
  constructor(code: "MissingApiVersionParameter" | "InvalidApiVersionParameter", message: string) {
    super(code, 400, message);
  }
}

export class RouteNotFoundError extends SessionPoolError {
  constructor(method: string, url: string) {
    super("NotFound", 404, `No route matches ${method} ${url.split("?")[0]}.`);
  }
}

export class MethodNotAllowedError extends SessionPoolError {
  constructor(method: string, allowed: string[]) {
    super(
      "MethodNotAllowed",
      405,
      `The method ${method} is not allowed here; allowed: ${allowed.join(", ")}.`,
      {
        headers: { allow: allowed.join(", ") },
      },
    );
  }
}

export class InternalError extends SessionPoolError {
  constructor() {
    super("InternalServerError", 500, "The server hit an unexpected error; it has been logged.");
  }
}

/** Turns anything thrown in a route into a coded error; unknown errors become a logged 500. */
export function toCodedError(err: unknown): SessionPoolError | undefined {
  if (isSessionPoolError(err)) return err;
  const e = err as { code?: string; statusCode?: number; message?: string };
  switch (e.code) {
    case "FST_ERR_CTP_INVALID_JSON_BODY":
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
      return new SessionPoolError(
        "InvalidRequestContent",
        400,
        `The request content is not valid JSON: ${e.message ?? ""}`.trim(),
      );
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new SessionPoolError(
        "RequestEntityTooLarge",
        413,
        "The request body is larger than this server accepts.",
      );
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
    case "FST_ERR_CTP_INVALID_TYPE":
      return new SessionPoolError(
        "UnsupportedMediaType",
        415,
        "The request's Content-Type is not supported here; send application/json.",
      );
    case "FST_ERR_VALIDATION":
      return new SessionPoolError("InvalidRequestContent", 400, e.message ?? "The request is not valid.");
  }
  if (typeof e.statusCode === "number" && e.statusCode >= 400 && e.statusCode < 500) {
    return new SessionPoolError("BadRequest", e.statusCode, e.message ?? "The request is not valid.");
  }
  return storageFailure(err);
}

/** Answers `err` in a surface's envelope, with its code in x-ms-error-code and the headers it implies. */
export function sendCodedError(
  reply: FastifyReply,
  err: SessionPoolError,
  envelope: (err: SessionPoolError) => unknown,
): FastifyReply {
  return reply
    .code(err.statusCode)
    .headers(err.headers)
    .header("x-ms-error-code", err.code)
    .send(envelope(err));
}
