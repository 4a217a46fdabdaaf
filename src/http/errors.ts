// Errors the HTTP layer raises itself (auth, api-version, routing, malformed requests), plus the mapping of
// Fastify's own errors (bad JSON, body too large, wrong content type) onto coded errors. Each surface renders
// them in its envelope.
import type { FastifyReply } from "fastify";
import { isSessionPoolError, SessionPoolError } from "../errors.ts";

export class ForbiddenError extends SessionPoolError {
  static readonly codes = ["AuthorizationFailed", "Forbidden"] as const;

  constructor(code: (typeof ForbiddenError.codes)[number], message: string) {
    super(code, 403, message);
  }
}

export class ApiVersionError extends SessionPoolError {
  static readonly codes = ["MissingApiVersionParameter", "InvalidApiVersionParameter"] as const;

  constructor(code: (typeof ApiVersionError.codes)[number], message: string) {
    super(code, 400, message);
  }
}

export class RouteNotFoundError extends SessionPoolError {
  static readonly codes = ["NotFound"] as const;

  constructor(method: string, url: string) {
    super("NotFound", 404, `No route matches ${method} ${url.split("?")[0]}.`);
  }
}

export class MethodNotAllowedError extends SessionPoolError {
  static readonly codes = ["MethodNotAllowed"] as const;

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
  static readonly codes = ["InternalServerError"] as const;

  constructor() {
    super("InternalServerError", 500, "The server hit an unexpected error; it has been logged.");
  }
}

/** A body that is not JSON, or that Fastify's schema validation refused. */
export class InvalidRequestContentError extends SessionPoolError {
  static readonly codes = ["InvalidRequestContent"] as const;

  constructor(message: string) {
    super("InvalidRequestContent", 400, message);
  }
}

export class RequestEntityTooLargeError extends SessionPoolError {
  static readonly codes = ["RequestEntityTooLarge"] as const;

  constructor() {
    super("RequestEntityTooLarge", 413, "The request body is larger than this server accepts.");
  }
}

export class UnsupportedMediaTypeError extends SessionPoolError {
  static readonly codes = ["UnsupportedMediaType"] as const;

  constructor() {
    super(
      "UnsupportedMediaType",
      415,
      "The request's Content-Type is not supported here; send application/json.",
    );
  }
}

/** Another malformed request: a broken %-escape, a parameter too long, a body on an upgrade, not HTTP at all. */
export class BadRequestError extends SessionPoolError {
  static readonly codes = ["BadRequest"] as const;

  constructor(message: string, statusCode = 400) {
    super("BadRequest", statusCode, message);
  }
}

/** The URL and headers are over what Node's HTTP parser reads (refused before any route). */
export class RequestHeaderFieldsTooLargeError extends SessionPoolError {
  static readonly codes = ["RequestHeaderFieldsTooLarge"] as const;

  constructor() {
    super(
      "RequestHeaderFieldsTooLarge",
      431,
      "The request's URL and headers are larger than the 16 KiB this server reads.",
    );
  }
}

export class RequestTimeoutError extends SessionPoolError {
  static readonly codes = ["RequestTimeout"] as const;

  constructor() {
    super("RequestTimeout", 408, "The request did not arrive in time.");
  }
}

/**
 * Turns anything thrown in a route into a coded error; undefined for an unknown error (a logged 500). Errors of
 * the layers below (store, runtime, agents, core) are coded already; this maps Fastify's own.
 */
export function toCodedError(err: unknown): SessionPoolError | undefined {
  if (isSessionPoolError(err)) return err;
  const e = err as { code?: string; statusCode?: number; message?: string };
  switch (e.code) {
    case "FST_ERR_CTP_INVALID_JSON_BODY":
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
      return new InvalidRequestContentError(
        `The request content is not valid JSON: ${e.message ?? ""}`.trim(),
      );
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new RequestEntityTooLargeError();
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
    case "FST_ERR_CTP_INVALID_TYPE":
      return new UnsupportedMediaTypeError();
    case "FST_ERR_VALIDATION":
      return new InvalidRequestContentError(e.message ?? "The request is not valid.");
  }
  if (typeof e.statusCode === "number" && e.statusCode >= 400 && e.statusCode < 500) {
    return new BadRequestError(e.message ?? "The request is not valid.", e.statusCode);
  }
  return undefined;
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
