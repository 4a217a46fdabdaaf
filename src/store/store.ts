// The persistence boundary: everything that must survive a restart goes through this interface.
// Two implementations: the embedded SQLite file (store/sqlite, the default) and PostgreSQL (store/postgres), which
// several servers of a fleet share. The interface is asynchronous because a networked store is; what a call's
// promise resolves is committed (durable unless the call says otherwise).

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
  /**
   * The server whose engine holds the sandbox (its instance id): in a fleet, a request for this session is
   * forwarded there. Undefined in records written before migration 5 (they belong to the one server there was).
   */
  owner?: string | undefined;
}

/** A server of a fleet, as its last heartbeat described it. */
export interface StoredMember {
  /** The server's instance id (the label on its sandboxes). */
  id: string;
  /** Where the other servers reach it (its URL, scheme included). */
  address: string;
  /** How many more sandboxes it will take (server capacity minus what it holds). */
  capacity: number;
  engineUp: boolean;
  /** Ready sandboxes it holds, by pool key. */
  ready: Record<string, number>;
  /** Allocated sessions it holds, by pool key (a pool's maxConcurrentSessions counts the whole fleet's). */
  allocated: Record<string, number>;
  startedAt: string;
  /** Set by the store from its own clock, so servers' clocks need not agree. */
  heartbeatAt: string;
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
  /**
   * `forUpdate` (inside a transaction): no other server changes the pool until the transaction ends (PostgreSQL
   * locks the row; SQLite's transactions exclude each other anyway).
   */
  getPool(key: string, options?: { forUpdate?: boolean }): Promise<StoredPool | undefined>;
  /** Pools ordered by key, starting after `afterKey` (keyset paging). */
  listPools(filter: PoolListFilter, page: { afterKey?: string; limit: number }): Promise<StoredPool[]>;
  allPools(): Promise<StoredPool[]>;
  putPool(pool: StoredPool): Promise<void>;
  deletePool(key: string): Promise<void>;

  getSecrets(poolKey: string): Promise<StoredSecret[]>;
  replaceSecrets(poolKey: string, secrets: StoredSecret[]): Promise<void>;

  /** The pool's sealed MCP server API key, with the uid of the pool it was made for; deletePool removes it. */
  getMcpKey(poolKey: string): Promise<StoredMcpKey | undefined>;
  putMcpKey(poolKey: string, key: StoredMcpKey): Promise<void>;

  getOperation(id: string): Promise<StoredOperation | undefined>;
  putOperation(op: StoredOperation): Promise<void>;
  listOperations(filter: { status?: OperationStatus; poolKey?: string }): Promise<StoredOperation[]>;

  listSessions(poolKey: string): Promise<StoredSession[]>;
  allSessions(): Promise<StoredSession[]>;
  /**
   * Session records may be committed without waiting for the disk (a sandbox does not outlive the machine);
   * `durable` asks for the same guarantee as every other write.
   */
  putSession(session: StoredSession, options?: { durable?: boolean }): Promise<void>;
  deleteSession(id: string): Promise<void>;
  /** The allocated session of `identifier` in the pool, whichever server holds it. */
  findSession(poolKey: string, identifier: string): Promise<StoredSession | undefined>;

  /** Records this server's heartbeat (heartbeatAt is the store's clock). */
  heartbeat(member: Omit<StoredMember, "heartbeatAt">): Promise<void>;
  /** Members heard from within `withinMs` (by the store's clock), ordered by id. */
  liveMembers(withinMs: number): Promise<StoredMember[]>;
  removeMember(id: string): Promise<void>;
  /**
   * Takes or renews the lease `name` for `holder` for `ttlMs` (by the store's clock): true when `holder` has it
   * now, false when another holder's lease has not expired.
   */
  lease(name: string, holder: string, ttlMs: number): Promise<boolean>;
  releaseLease(name: string, holder: string): Promise<void>;

  /**
   * Run `fn` in one transaction: every store call made within it (however deep, found by async context) joins it,
   * and it commits when `fn`'s promise resolves, or rolls back when it rejects. Calls from outside it see none of
   * its writes until it commits (SQLite makes them wait for it; PostgreSQL runs them beside it, read committed).
   */
  transaction<T>(fn: () => Promise<T>): Promise<T>;
  getMeta(key: string): Promise<string | undefined>;
  setMeta(key: string, value: string): Promise<void>;
  close(): Promise<void>;
}
