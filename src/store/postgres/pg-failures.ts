// Which errors of the `pg` driver mean "the database is not there now" rather than "this request is wrong": the
// first become StorageUnavailableError (503, Retry-After), so no layer above reads SQLSTATEs or socket codes.
import { StorageUnavailableError } from "../storage-errors.ts";

/** Socket-level failures: the server is down, restarting, or the network between is. */
const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EPIPE",
]);

/**
 * What `pg` and `pg-pool` say, without a code, when a connection ends under a query or cannot be opened in time.
 * ("Connection terminated" without "unexpectedly" is our own close(), not an outage.)
 */
const CONNECTION_MESSAGES = new Set([
  "Connection terminated unexpectedly",
  "Connection terminated due to connection timeout",
  "timeout expired",
  "Client has encountered a connection error and is not queryable",
  "Query read timeout",
]);

/** What `pg-pool` says when every connection stayed busy for the whole connect timeout. */
const POOL_EXHAUSTED = "timeout exceeded when trying to connect";

/** SQLSTATEs of a server that is going away or not accepting connections yet (restart, failover, crash). */
const SHUTDOWN_STATES = new Set(["57P01", "57P02", "57P03"]);

/** SQLSTATEs of a server that is there but cannot do it now; the statement was rolled back. */
const BUSY_STATES = new Set(["57014", "40001", "40P01"]);

/** The storage failure `err` stands for, or undefined for any other error (a constraint, a bug). */
export function pgFailure(err: unknown): StorageUnavailableError | undefined {
  if (err instanceof StorageUnavailableError) return err;
  // Connecting to a name with several addresses fails with every attempt's error: the first says enough.
  const e = (err instanceof AggregateError && err.errors.length > 0 ? err.errors[0] : err) as {
    code?: unknown;
    message?: unknown;
  } | null;
  if (!e || typeof e !== "object") return undefined;
  const code = typeof e.code === "string" ? e.code : "";
  const message = typeof e.message === "string" && e.message !== "" ? e.message : code;
  if (NETWORK_CODES.has(code)) return new StorageUnavailableError("unreachable", message, err);
  if (/^[0-9A-Z]{5}$/.test(code)) {
    const detail = `PostgreSQL ${code}: ${message}`;
    if (code.startsWith("08") || SHUTDOWN_STATES.has(code)) {
      return new StorageUnavailableError("unreachable", detail, err);
    }
    if (code.startsWith("53") || BUSY_STATES.has(code))
      return new StorageUnavailableError("busy", detail, err);
    return undefined;
  }
  if (CONNECTION_MESSAGES.has(message)) return new StorageUnavailableError("unreachable", message, err);
  if (message === POOL_EXHAUSTED) {
    return new StorageUnavailableError(
      "busy",
      "every connection to it stayed busy past the connect timeout",
      err,
    );
  }
  return undefined;
}

/** True when the connection that raised `err` must not be used again (so it is not handed back to the pool). */
export function brokeConnection(err: unknown): boolean {
  return pgFailure(err)?.problem === "unreachable";
}
