// What a caller is told when the data dir cannot be written: the disk is full, the file system went read-only,
// or I/O fails. SQLite rolls back the statement, so nothing half-written stays behind; once space returns the
// next write succeeds without a restart.
import { SessionPoolError } from "../errors.ts";

// SQLite primary result codes (https://sqlite.org/rescode.html); extended codes keep them in the low byte.
const SQLITE_READONLY = 8;
const SQLITE_IOERR = 10;
const SQLITE_FULL = 13;
const SQLITE_CANTOPEN = 14;

/**
 * "full", "read-only" and "io" are the embedded store's data dir; "unreachable" (the connection to PostgreSQL failed
 * or was cut) and "busy" (PostgreSQL out of resources, a deadlock, a statement timeout) are a networked store's.
 */
export type StorageProblem = "full" | "read-only" | "io" | "unreachable" | "busy";

export class StorageUnavailableError extends SessionPoolError {
  static readonly codes = ["StorageUnavailable"] as const;

  readonly problem: StorageProblem;

  constructor(problem: StorageProblem, detail: string, cause?: unknown) {
    super("StorageUnavailable", 503, storageMessage(problem, detail), {
      cause,
      headers: { "retry-after": "10" },
    });
    this.problem = problem;
  }
}

function storageMessage(problem: StorageProblem, detail: string): string {
  switch (problem) {
    case "unreachable":
      // A connection cut during a commit leaves its outcome unknown: no "nothing was changed" here.
      return `The server cannot reach its database (${detail}). Retry once the database is reachable again.`;
    case "busy":
      return `The server's database cannot take the request now (${detail}). Nothing was changed; retry shortly.`;
  }
  const what = {
    full: "its disk is full",
    "read-only": "it is read-only",
    io: "reading or writing it failed",
  }[problem];
  return `The server cannot write its data directory: ${what} (${detail}). Nothing was changed; retry once an operator has fixed the storage.`;
}

/** The storage failure `err` stands for (a SQLite or file-system error), or undefined for any other error. */
export function storageFailure(err: unknown): StorageUnavailableError | undefined {
  if (err instanceof StorageUnavailableError) return err;
  const e = err as { code?: unknown; errcode?: unknown; errstr?: unknown; message?: unknown } | null;
  if (!e || typeof e !== "object") return undefined;
  if (e.code === "ERR_SQLITE_ERROR" && typeof e.errcode === "number") {
    const detail = `SQLite: ${String(e.errstr ?? e.message)}`;
    switch (e.errcode & 0xff) {
      case SQLITE_FULL:
        return new StorageUnavailableError("full", detail, err);
      case SQLITE_READONLY:
        return new StorageUnavailableError("read-only", detail, err);
      case SQLITE_IOERR:
      case SQLITE_CANTOPEN:
        return new StorageUnavailableError("io", detail, err);
    }
    return undefined;
  }
  switch (e.code) {
    case "ENOSPC":
    case "EDQUOT":
      return new StorageUnavailableError("full", String(e.code), err);
    case "EROFS":
      return new StorageUnavailableError("read-only", String(e.code), err);
  }
  return undefined;
}
