// The one place data-plane errors become Azure.Core's envelope: {error:{code,message}} plus x-ms-error-code.
import type { FastifyInstance, FastifyReply } from "fastify";
import { isSessionPoolError, SessionPoolError } from "../../errors.ts";
import { InternalError, sendCodedError, toCodedError } from "../errors.ts";

/** An upload over the data plane's 128 MB limit. */
export class FileTooLargeError extends SessionPoolError {
  static readonly codes = ["FileTooLarge"] as const;

  constructor() {
    super("FileTooLarge", 413, "The uploaded file is larger than the 128 MB limit.");
  }
}

/** An upload that is not one readable multipart/form-data 'file' part. */
export class InvalidMultipartRequestError extends SessionPoolError {
  static readonly codes = ["InvalidMultipartRequest"] as const;

  constructor(message: string) {
    super("InvalidMultipartRequest", 400, message);
  }
}

/** A custom container that did not answer the proxied request (HTTP or WebSocket handshake). */
export class SessionUnreachableError extends SessionPoolError {
  static readonly codes = ["SessionUnreachable"] as const;

  constructor(message: string) {
    super("SessionUnreachable", 502, message);
  }
}

/** Another server of the fleet, which holds the session, did not answer a request forwarded to it. */
export class FleetMemberUnreachableError extends SessionPoolError {
  static readonly codes = ["FleetMemberUnreachable"] as const;

  constructor(memberId: string, why: string) {
    super(
      "FleetMemberUnreachable",
      503,
      `The session is served by the fleet's server '${memberId}', which did not answer (${why}); retry shortly.`,
      { headers: { "retry-after": "2" } },
    );
  }
}

/**
 * A request another server of the fleet forwarded here, which this server would forward on: never done (it could
 * loop while the servers' views of the fleet disagree); the caller retries once the views agree again.
 */
export class FleetForwardLoopError extends SessionPoolError {
  static readonly codes = ["FleetForwardLoop"] as const;

  constructor(forwardedBy: string, memberId: string) {
    super(
      "FleetForwardLoop",
      503,
      `The request was forwarded here by the fleet's server '${forwardedBy}', but this server places the session on '${memberId}'; a request is forwarded once only. Retry shortly.`,
      { headers: { "retry-after": "1" } },
    );
  }
}

/** A request body so transfer-coded that it could not reach a custom container unambiguously. */
export class UnsupportedTransferEncodingError extends SessionPoolError {
  static readonly codes = ["UnsupportedTransferEncoding"] as const;

  constructor(transferEncoding: string) {
    super(
      "UnsupportedTransferEncoding",
      501,
      `Transfer-Encoding '${transferEncoding.slice(0, 100)}' is not forwarded to custom containers; send the body with Content-Length or 'Transfer-Encoding: chunked' alone.`,
    );
  }
}

/** An Upgrade (WebSocket) for anything but a custom container pool's session: nothing serves it. */
export class UpgradeNotProxiedError extends SessionPoolError {
  static readonly codes = ["NotFound"] as const;

  constructor() {
    super("NotFound", 404, "Upgrades are proxied for custom container session pools only.");
  }
}

/** The /mcp endpoint of a pool whose MCP server is not enabled (the management API hands out no such URL). */
export class McpServerNotFoundError extends SessionPoolError {
  static readonly codes = ["McpServerNotFound"] as const;

  constructor(pool: string) {
    super(
      "McpServerNotFound",
      404,
      `The session pool '${pool}' has no MCP server: enable it with properties.mcpServerSettings.isMcpServerEnabled: true.`,
    );
  }
}

export function dataPlaneErrorBody(err: SessionPoolError): { error: Record<string, unknown> } {
  return {
    error: {
      code: err.code,
      message: err.message,
      ...(err.target === undefined ? {} : { target: err.target }),
    },
  };
}

/**
 * A whole HTTP/1.1 error response for a raw socket (before or outside Fastify's reply: a refused WebSocket
 * upgrade, a request the HTTP parser refused), in the data plane's envelope; the connection closes after it.
 */
export function rawErrorResponse(err: SessionPoolError): string {
  const body = JSON.stringify(dataPlaneErrorBody(err));
  // The error's own headers too (WWW-Authenticate on a 401, Retry-After on a 429), as every other path sends.
  const extra = Object.entries(err.headers)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join("");
  return `HTTP/1.1 ${err.statusCode} ${err.code}\r\ncontent-type: application/json; charset=utf-8\r\nx-ms-error-code: ${err.code}\r\n${extra}content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
}

/** @fastify/multipart's coded errors as the data plane's; undefined for anything else. */
function multipartCodedError(error: unknown): SessionPoolError | undefined {
  switch ((error as { code?: string }).code) {
    case "FST_REQ_FILE_TOO_LARGE":
      return new FileTooLargeError();
    case "FST_FILES_LIMIT":
      return new InvalidMultipartRequestError("Upload one file per request.");
    case "FST_PARTS_LIMIT":
    case "FST_FIELDS_LIMIT":
      return new InvalidMultipartRequestError("The upload has more than 20 form fields.");
    case "FST_PROTO_VIOLATION":
      return new InvalidMultipartRequestError("A form field may not be named __proto__.");
    case "FST_INVALID_MULTIPART_CONTENT_TYPE":
      return new InvalidMultipartRequestError(
        "Upload with Content-Type multipart/form-data and a 'file' part.",
      );
  }
  return undefined;
}

/**
 * What reading an upload threw, as a coded error. The multipart parser's own errors (no boundary, a body cut
 * short, a malformed part header) carry no code: they are the client's malformed body, not a server fault.
 */
export function uploadError(error: unknown): SessionPoolError {
  if (isSessionPoolError(error)) return error;
  return (
    multipartCodedError(error) ??
    new InvalidMultipartRequestError(
      `The multipart/form-data body could not be read (${String((error as Error).message).replace(/\.$/, "")}); send one 'file' part between boundary lines of at most 70 characters.`,
    )
  );
}

/** The reply for a data-plane error: the envelope, the error's own headers and x-ms-error-code. */
export function sendDataPlaneError(reply: FastifyReply, coded: SessionPoolError): FastifyReply {
  return sendCodedError(reply, coded, dataPlaneErrorBody);
}

const DATA_PLANE_URL = /^\/subscriptions\/[^/?]*\/resourceGroups\/[^/?]*\/sessionPools\//i;

/** Whether a raw URL is under a pool management endpoint (errors raised before routing pick the envelope by it). */
export function isDataPlaneUrl(url: string): boolean {
  return DATA_PLANE_URL.test(url);
}

export function installDataPlaneErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler(async (error, request, reply) => {
    // Agent errors are coded already (FileNotFound -> 404, PathOutsideDataDir -> 400, ...).
    let coded = multipartCodedError(error) ?? toCodedError(error);
    if (!coded) {
      request.log.error({ err: error }, "unexpected error in the data plane");
      coded = new InternalError();
    }
    return sendDataPlaneError(reply, coded);
  });
}
