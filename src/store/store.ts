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
  /** The pool's document as core shapes it (core's PoolDoc, see poolDocOf); the store keeps it as JSON. */
  doc: object;
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

export interface StoredMcpKey {
  /** The uid of the pool incarnation the key was made for: a pool re-created under the name gets a new key. */
  poolUid: string;
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

export type SessionState = "pending" | "ready" | "allocated";

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
  /** The environment variables it was claimed with (session-environment.ts), sealed with the server's key. */
  environment?: string | undefined;
}

export interface PoolListFilter {
  subscriptionId: string;
  resourceGroup?: string;
}

/**
 * What a store hands out may be shared with other callers and is read-only (the SQLite store freezes pools it
 * caches): copy before changing.
 */
export interface Store {
  getPool(key: string): StoredPool | undefined;
  /** Pools ordered by key, starting after `afterKey` (keyset paging). */
  listPools(filter: PoolListFilter, page: { afterKey?: string; limit: number }): StoredPool[];
  allPools(): StoredPool[];
  putPool(pool: StoredPool): void;
  deletePool(key: string): void;

  getSecrets(poolKey: string): StoredSecret[];
  replaceSecrets(poolKey: string, secrets: StoredSecret[]): void;

  /** The pool's sealed MCP server API key, with the uid of the pool it was made for; deletePool removes it. */
  getMcpKey(poolKey: string): StoredMcpKey | undefined;
  putMcpKey(poolKey: string, key: StoredMcpKey): void;

  getOperation(id: string): StoredOperation | undefined;
  putOperation(op: StoredOperation): void;
  listOperations(filter: { status?: OperationStatus; poolKey?: string }): StoredOperation[];

  listSessions(poolKey: string): StoredSession[];
  allSessions(): StoredSession[];
  /**
   * Session records may be committed without waiting for the disk (a sandbox does not outlive the machine);
   * `durable` asks for the same guarantee as every other write.
   */
  putSession(session: StoredSession, options?: { durable?: boolean }): void;
  deleteSession(id: string): void;

  /** Run `fn` in one transaction (nested calls join the outer one). */
  transaction<T>(fn: () => T): T;
  getMeta(key: string): string | undefined;
  setMeta(key: string, value: string): void;
  close(): void;
}
