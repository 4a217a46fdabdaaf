// Why a store cannot be opened: the server refuses to start rather than serve from a database it cannot use.
// (A store that fails after it opened says so per call, with StorageUnavailableError in storage-errors.ts.)
import { SessionPoolError } from "../errors.ts";

/** The database cannot be reached, or refused the connection, when the server starts. */
export class StoreUnreachableError extends SessionPoolError {
  static readonly codes = ["StoreUnreachable"] as const;

  /** `where` names host, port and database, never credentials. */
  constructor(where: string, detail: string, cause?: unknown) {
    super("StoreUnreachable", 503, `Cannot reach the PostgreSQL store at ${where}: ${detail}`, { cause });
  }
}

/** The database was migrated by a newer server: this one would misread what it does not know. */
export class StoreSchemaError extends SessionPoolError {
  static readonly codes = ["StoreSchemaTooNew"] as const;

  readonly version: number;
  readonly known: number;

  constructor(where: string, version: number, known: number) {
    super(
      "StoreSchemaTooNew",
      503,
      `The database at ${where} has schema version ${version}; this server knows up to ${known}: upgrade this server before it joins the fleet.`,
    );
    this.version = version;
    this.known = known;
  }
}
