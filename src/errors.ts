// The base of every coded error. Each layer defines its subclasses in its own errors.ts; http/ maps them to
// the ARM or the data-plane envelope in one place per surface. docs/errors.md lists every code.

export interface ErrorDetail {
  code: string;
  message: string;
  target?: string;
}

export class SessionPoolError extends Error {
  readonly code: string;
  readonly statusCode: number;
  readonly target: string | undefined;
  readonly details: ErrorDetail[];
  /** Extra response headers the error implies (e.g. Retry-After). */
  readonly headers: Record<string, string>;

  constructor(
    code: string,
    statusCode: number,
    message: string,
    options: {
      target?: string;
      details?: ErrorDetail[];
      headers?: Record<string, string>;
      cause?: unknown;
    } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.statusCode = statusCode;
    this.target = options.target;
    this.details = options.details ?? [];
    this.headers = options.headers ?? {};
  }
}

export function isSessionPoolError(err: unknown): err is SessionPoolError {
  return err instanceof SessionPoolError;
}
