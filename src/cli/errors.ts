// The CLI's errors, each with the exit status it ends the process with (documented in docs/cli.md).

export const EXIT = {
  ok: 0,
  /** The server refused the request or the operation failed. */
  serverError: 1,
  /** Bad flags or arguments: nothing was sent. */
  usage: 2,
  /** The resource (pool, session, file) does not exist (404): az's ResourceNotFound status. */
  notFound: 3,
  /** No server configured, unreachable, untrusted TLS, or the credential was refused (401/403). */
  connection: 4,
  /** A long-running operation did not finish within --timeout; it goes on on the server. */
  timeout: 5,
} as const;

export class CliError extends Error {
  readonly exitCode: number;
  /** The part shown in parentheses, e.g. the server's error code. */
  readonly code: string | undefined;

  constructor(message: string, exitCode: number, code?: string) {
    super(message);
    this.exitCode = exitCode;
    this.code = code;
  }

  /** The one line the user sees after "ERROR: ". */
  display(): string {
    return this.code ? `(${this.code}) ${this.message}` : this.message;
  }
}

/** Bad flags or arguments, found before anything was sent. */
export class UsageError extends CliError {
  constructor(message: string) {
    super(message, EXIT.usage);
  }
}

/** The server could not be reached or trusted, or no server/credential is configured. */
export class ConnectionError extends CliError {
  constructor(message: string, code?: string) {
    super(message, EXIT.connection, code);
  }
}

/** A response with an error status, carrying the server's {error:{code,message}} envelope when it sent one. */
export class ApiError extends CliError {
  readonly status: number;

  constructor(status: number, code: string, message: string) {
    super(message, exitCodeForStatus(status), code);
    this.status = status;
  }
}

/** A long-running operation that ended Failed or Canceled. */
export class OperationFailedError extends CliError {
  constructor(code: string, message: string) {
    super(message, EXIT.serverError, code);
  }
}

export class OperationTimeoutError extends CliError {
  constructor(message: string) {
    super(message, EXIT.timeout, "OperationTimedOut");
  }
}

function exitCodeForStatus(status: number): number {
  if (status === 401 || status === 403) return EXIT.connection;
  if (status === 404) return EXIT.notFound;
  return EXIT.serverError;
}
