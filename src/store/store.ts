// The persistence boundary: everything that must survive a restart goes through this interface.
// The embedded implementation is SQLite (store/sqlite); the interface is synchronous because the embedded
// store is, and claims rely on it being atomic within the one server process.

export interface StoredPool {
  /** Lower-cased `sub/rg/name`: ARM names are case-insensitive. */
  key: string;
  subscriptionId: string;
  resourceGroup: string;
  name: string;
  /** The pool resource in the canonical (newest) shape, without secret values. */
  doc: Record<string, unknown>;
  etag: string;
  /** Bumped on every spec change; sessions and operations refer to it. */
  generation: number;
  /**
   * Random, fixed at creation: tells this pool from an earlier one of the same name (deleted, then re-created).
   * Data-plane tokens carry it, so a token dies with the pool it was issued for.
   */
  uid: string;
  createdAt: string;
  updatedAt: string;
}

export interface StoredSecret {
  name: string;
  /** AES-GCM sealed value (auth/secret-box). */
  sealed: string;
}

export type OperationStatus = "InProgress" | "Succeeded" | "Failed" | "Canceled";

export interface StoredOperation {
  id: string;
  poolKey: string;
  /** The pool's ARM id, for the operation body and result lookups. */
  resourceId: string;
  kind: "create" | "update" | "delete";
  status: OperationStatus;
  /** The pool generation this operation waits for. */
  generation: number;
  location: string;
  apiVersion: string;
  startTime: string;
  endTime: string | undefined;
  error: { code: string; message: string } | undefined;
}

export type SessionState = "pending" | "ready" | "allocated" | "stopping";

export interface StoredSession {
  /** sessionpool's own id for the sandbox (a label on the container). */
  id: string;
  poolKey: string;
  /** The caller's identifier once allocated; undefined while warm in the pool. */
  identifier: string | undefined;
  state: SessionState;
  sandboxId: string | undefined;
  generation: number;
  createdAt: string;
  allocatedAt: string | undefined;
  lastAccessedAt: string | undefined;
  /** Absolute deadline after which the session ends (cooldown or max-alive), ISO string. */
  expiresAt: string | undefined;
}

export interface PoolListFilter {
  subscriptionId: string;
  resourceGroup?: string;
}

export interface Store {
  getPool(key: string): StoredPool | undefined;
  /** Pools ordered by key, starting after `afterKey` (keyset paging). */
  listPools(filter: PoolListFilter, page: { afterKey?: string; limit: number }): StoredPool[];
  allPools(): StoredPool[];
  putPool(pool: StoredPool): void;
  deletePool(key: string): void;

  getSecrets(poolKey: string): StoredSecret[];
  replaceSecrets(poolKey: string, secrets: StoredSecret[]): void;

  getOperation(id: string): StoredOperation | undefined;
  putOperation(op: StoredOperation): void;
  listOperations(filter: { status?: OperationStatus; poolKey?: string }): StoredOperation[];

  getSession(id: string): StoredSession | undefined;
  findSessionByIdentifier(poolKey: string, identifier: string): StoredSession | undefined;
  listSessions(poolKey: string): StoredSession[];
  allSessions(): StoredSession[];
  putSession(session: StoredSession): void;
  deleteSession(id: string): void;

  /** Run `fn` in one transaction (nested calls join the outer one). */
  transaction<T>(fn: () => T): T;
  getMeta(key: string): string | undefined;
  setMeta(key: string, value: string): void;
  close(): void;
}
