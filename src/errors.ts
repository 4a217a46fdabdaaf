// The base of every coded error. Each layer defines its subclasses in its own errors.ts (or `*-errors.ts`); http/
// maps them to the ARM or the data-plane envelope in one place per surface. Each subclass lists the codes it can
// carry in a static `codes`, and test/unit/error-catalogue.test.ts checks docs/errors.md against those lists.

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

/** What every coded error class declares: the codes its instances can carry. */
export interface CodedErrorClass {
  readonly codes: readonly string[];
}

/** The server cannot start with the options it was given (flags, files, addresses). */
export class ConfigError extends SessionPoolError {
  static readonly codes = ["InvalidConfiguration"] as const;

  constructor(message: string) {
    super("InvalidConfiguration", 400, message);
  }
}

export function isSessionPoolError(err: unknown): err is SessionPoolError {
  return err instanceof SessionPoolError;
}
