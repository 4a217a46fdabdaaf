// The embedded store: one SQLite file in the data dir, WAL mode, schema migrations versioned in code.
import { AsyncLocalStorage } from "node:async_hooks";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import {
  deepFreeze,
  memberFromRow,
  operationFromRow,
  poolFromRow,
  type Row,
  sessionFromRow,
} from "../rows.ts";
import { storageFailure } from "../storage-errors.ts";
import type {
  OperationStatus,
  PoolListFilter,
  Store,
  StoredMcpKey,
  StoredMember,
  StoredOperation,
  StoredPool,
  StoredSecret,
  StoredSession,
} from "../store.ts";
import { MIGRATIONS } from "./migrations.ts";

export class SqliteStore implements Store {
  readonly #db: DatabaseSync;
  readonly #stmts = new Map<string, StatementSync>();
  readonly #pools = new Map<string, StoredPool>();
  #depth = 0;
  #closed = false;
  /** The transaction now open (settles when it ends), and the async context its own calls run in. */
  #open: Promise<unknown> | undefined;
  readonly #inTransaction = new AsyncLocalStorage<true>();

  constructor(path: string) {
    this.#db = new DatabaseSync(path);
    // synchronous = FULL: a commit is on disk before it returns. With NORMAL, a pool answered "Succeeded" could
    // vanish when the machine loses power or the disk fails (seen in test/integration/storage-faults). Session
    // records are the exception (putSession).
    this.#db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;");
    this.#db.exec("PRAGMA busy_timeout = 5000;");
    this.#migrate();
  }

  #migrate(): void {
    this.#db.exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
    const row = this.#db.prepare("SELECT MAX(version) AS v FROM schema_version").get() as Row | undefined;
    const current = Number(row?.["v"] ?? 0);
    for (const [index, sql] of MIGRATIONS.entries()) {
      const version = index + 1;
      if (version <= current) continue;
      this.#tx(() => {
        this.#db.exec(sql);
        this.#db.prepare("INSERT INTO schema_version (version) VALUES (?)").run(version);
      });
    }
  }

  #stmt(sql: string): StatementSync {
    let stmt = this.#stmts.get(sql);
    if (!stmt) {
      stmt = this.#db.prepare(sql);
      this.#stmts.set(sql, stmt);
    }
    return stmt;
  }

  /**
   * SQLite has one connection: while a transaction awaits, another caller's statement would run inside it (and be
   * rolled back with it). So a transaction holds the store: calls from outside its async context wait for it to end,
   * and transactions run one at a time. Calls made when none is open run at once, with no extra turn of the loop.
   */
  async transaction<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#inTransaction.getStore()) return fn();
    while (this.#open) await this.#open.catch(() => undefined);
    guarded(() => this.#db.exec("BEGIN IMMEDIATE"));
    this.#depth = 1;
    const run = (async () => {
      try {
        const result = await this.#inTransaction.run(true, fn);
        guarded(() => this.#db.exec("COMMIT"));
        return result;
      } catch (err) {
        this.#rollback();
        throw storageFailure(err) ?? err;
      } finally {
        this.#depth = 0;
      }
    })();
    this.#open = run;
    try {
      return await run;
    } finally {
      if (this.#open === run) this.#open = undefined;
    }
  }

  /** Runs `fn` now unless a transaction is open and the caller is not part of it; then once it has ended. */
  async #call<T>(fn: () => T): Promise<T> {
    if (this.#open && !this.#inTransaction.getStore()) {
      while (this.#open) await this.#open.catch(() => undefined);
    }
    return guarded(fn);
  }

  #rollback(): void {
    // A COMMIT that failed for want of space (SQLITE_FULL, IOERR) may have rolled back already; then ROLLBACK
    // itself fails ("no transaction is active") and must not hide the error that says what went wrong.
    this.#pools.clear();
    if (this.#db.isTransaction) {
      try {
        this.#db.exec("ROLLBACK");
      } catch {
        // On a failing disk ROLLBACK can fail too (IOERR); SQLite rolls back by itself, and the caller's error says why.
      }
    }
  }

  /** One synchronous transaction (migrations and multi-statement writes); nested calls join the open one. */
  #tx<T>(fn: () => T): T {
    return guarded(() => {
      if (this.#depth > 0) {
        this.#depth++;
        try {
          return fn();
        } finally {
          this.#depth--;
        }
      }
      this.#db.exec("BEGIN IMMEDIATE");
      this.#depth = 1;
      try {
        const result = fn();
        this.#db.exec("COMMIT");
        return result;
      } catch (err) {
        this.#rollback();
        throw err;
      } finally {
        this.#depth = 0;
      }
    });
  }

  /**
   * Served from memory once read: every data-plane request looks its pool up, and this process is the database's
   * only writer (putPool and deletePool drop the entry; a rolled-back transaction drops them all). Frozen, since
   * every caller shares the object.
   */
  getPool(key: string, _options?: { forUpdate?: boolean }): Promise<StoredPool | undefined> {
    const cached = this.#pools.get(key);
    if (cached && !this.#open) return Promise.resolve(cached);
    return this.#call(() => {
      const row = this.#stmt("SELECT * FROM pools WHERE key = ?").get(key) as Row | undefined;
      if (!row) return undefined;
      const pool = deepFreeze(poolFromRow(row));
      // Inside a transaction a read may see what a rollback takes back: not kept.
      if (this.#depth === 0) this.#pools.set(key, pool);
      return pool;
    });
  }

  listPools(filter: PoolListFilter, page: { afterKey?: string; limit: number }): Promise<StoredPool[]> {
    return this.#call(() => {
      const after = page.afterKey ?? "";
      const rows = filter.resourceGroup
        ? this.#stmt(
            "SELECT * FROM pools WHERE sub_lc = ? AND rg_lc = ? AND key > ? ORDER BY key LIMIT ?",
          ).all(filter.subscriptionId.toLowerCase(), filter.resourceGroup.toLowerCase(), after, page.limit)
        : this.#stmt("SELECT * FROM pools WHERE sub_lc = ? AND key > ? ORDER BY key LIMIT ?").all(
            filter.subscriptionId.toLowerCase(),
            after,
            page.limit,
          );
      return (rows as Row[]).map(poolFromRow);
    });
  }

  allPools(): Promise<StoredPool[]> {
    return this.#call(() => {
      return (this.#stmt("SELECT * FROM pools ORDER BY key").all() as Row[]).map(poolFromRow);
    });
  }

  putPool(pool: StoredPool): Promise<void> {
    this.#pools.delete(pool.key);
    return this.#call(() => {
      this.#stmt(
        `INSERT INTO pools (key, sub_lc, rg_lc, subscription_id, resource_group, name, doc, etag, generation, uid, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (key) DO UPDATE SET doc = excluded.doc, etag = excluded.etag, generation = excluded.generation,
           updated_at = excluded.updated_at`,
      ).run(
        pool.key,
        pool.subscriptionId.toLowerCase(),
        pool.resourceGroup.toLowerCase(),
        pool.subscriptionId,
        pool.resourceGroup,
        pool.name,
        JSON.stringify(pool.doc),
        pool.etag,
        pool.generation,
        pool.uid,
        pool.createdAt,
        pool.updatedAt,
      );
    });
  }

  deletePool(key: string): Promise<void> {
    this.#pools.delete(key);
    return this.#call(() => {
      this.#tx(() => {
        this.#stmt("DELETE FROM pool_secrets WHERE pool_key = ?").run(key);
        this.#stmt("DELETE FROM pool_mcp_keys WHERE pool_key = ?").run(key);
        this.#stmt("DELETE FROM pools WHERE key = ?").run(key);
      });
    });
  }

  getSecrets(poolKey: string): Promise<StoredSecret[]> {
    return this.#call(() => {
      const rows = this.#stmt(
        "SELECT name, sealed FROM pool_secrets WHERE pool_key = ? ORDER BY position",
      ).all(poolKey) as Row[];
      return rows.map((r) => ({ name: String(r["name"]), sealed: String(r["sealed"]) }));
    });
  }

  replaceSecrets(poolKey: string, secrets: StoredSecret[]): Promise<void> {
    return this.#call(() => {
      this.#tx(() => {
        this.#stmt("DELETE FROM pool_secrets WHERE pool_key = ?").run(poolKey);
        const insert = this.#stmt(
          "INSERT INTO pool_secrets (pool_key, position, name, sealed) VALUES (?, ?, ?, ?)",
        );
        for (const [i, s] of secrets.entries()) insert.run(poolKey, i, s.name, s.sealed);
      });
    });
  }

  getMcpKey(poolKey: string): Promise<StoredMcpKey | undefined> {
    return this.#call(() => {
      const row = this.#stmt("SELECT pool_uid, sealed FROM pool_mcp_keys WHERE pool_key = ?").get(poolKey) as
        | Row
        | undefined;
      return row ? { poolUid: String(row["pool_uid"]), sealed: String(row["sealed"]) } : undefined;
    });
  }

  putMcpKey(poolKey: string, key: StoredMcpKey): Promise<void> {
    return this.#call(() => {
      this.#stmt(
        `INSERT INTO pool_mcp_keys (pool_key, pool_uid, sealed) VALUES (?, ?, ?)
         ON CONFLICT (pool_key) DO UPDATE SET pool_uid = excluded.pool_uid, sealed = excluded.sealed`,
      ).run(poolKey, key.poolUid, key.sealed);
    });
  }

  getOperation(id: string): Promise<StoredOperation | undefined> {
    return this.#call(() => {
      const row = this.#stmt("SELECT * FROM operations WHERE id = ?").get(id) as Row | undefined;
      return row ? operationFromRow(row) : undefined;
    });
  }

  putOperation(op: StoredOperation): Promise<void> {
    return this.#call(() => {
      this.#stmt(
        `INSERT INTO operations (id, pool_key, resource_id, kind, status, generation, location, api_version, start_time, end_time, error)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET status = excluded.status, end_time = excluded.end_time, error = excluded.error,
           generation = excluded.generation`,
      ).run(
        op.id,
        op.poolKey,
        op.resourceId,
        op.kind,
        op.status,
        op.generation,
        op.location,
        op.apiVersion,
        op.startTime,
        op.endTime ?? null,
        op.error ? JSON.stringify(op.error) : null,
      );
    });
  }

  listOperations(filter: { status?: OperationStatus; poolKey?: string }): Promise<StoredOperation[]> {
    return this.#call(() => {
      const rows = this.#stmt(
        "SELECT * FROM operations WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR pool_key = ?2) ORDER BY start_time",
      ).all(filter.status ?? null, filter.poolKey ?? null) as Row[];
      return rows.map(operationFromRow);
    });
  }

  listSessions(poolKey: string): Promise<StoredSession[]> {
    return this.#call(() => {
      return (
        this.#stmt("SELECT * FROM sessions WHERE pool_key = ? ORDER BY created_at, id").all(poolKey) as Row[]
      ).map(sessionFromRow);
    });
  }

  allSessions(): Promise<StoredSession[]> {
    return this.#call(() => {
      return (this.#stmt("SELECT * FROM sessions ORDER BY created_at, id").all() as Row[]).map(
        sessionFromRow,
      );
    });
  }

  /**
   * Without waiting for the disk (synchronous = NORMAL for this commit: written to the WAL, which a later FULL
   * commit or checkpoint syncs): a claim is on the hot path, and what a session record protects does not outlive
   * the machine either. A process crash loses nothing (the WAL is in the OS's cache); power loss takes the
   * sandboxes with it; and a record that says "ready" for a sandbox that was used is caught at adoption, where
   * the agent says whether it ever ran anything. `durable` (the claim of a custom container, which has no agent to
   * ask) commits as every other write does.
   */
  putSession(s: StoredSession, options: { durable?: boolean } = {}): Promise<void> {
    return this.#call(() => {
      // Inside a transaction the commit is the transaction's, made as it says.
      if (this.#depth > 0 || options.durable) return this.#putSession(s);
      this.#db.exec("PRAGMA synchronous = NORMAL");
      try {
        this.#putSession(s);
      } finally {
        this.#db.exec("PRAGMA synchronous = FULL");
      }
    });
  }

  #putSession(s: StoredSession): void {
    this.#stmt(
      `INSERT INTO sessions (id, pool_key, identifier, state, sandbox_id, generation, created_at, allocated_at, last_accessed_at, expires_at, environment, owner)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET identifier = excluded.identifier, state = excluded.state,
           sandbox_id = excluded.sandbox_id, allocated_at = excluded.allocated_at,
           last_accessed_at = excluded.last_accessed_at, expires_at = excluded.expires_at,
           environment = excluded.environment, owner = excluded.owner`,
    ).run(
      s.id,
      s.poolKey,
      s.identifier ?? null,
      s.state,
      s.sandboxId ?? null,
      s.generation,
      s.createdAt,
      s.allocatedAt ?? null,
      s.lastAccessedAt ?? null,
      s.expiresAt ?? null,
      s.environment ?? null,
      s.owner ?? null,
    );
  }

  deleteSession(id: string): Promise<void> {
    return this.#call(() => {
      this.#stmt("DELETE FROM sessions WHERE id = ?").run(id);
    });
  }

  findSession(poolKey: string, identifier: string): Promise<StoredSession | undefined> {
    return this.#call(() => {
      const row = this.#stmt("SELECT * FROM sessions WHERE pool_key = ? AND identifier = ?").get(
        poolKey,
        identifier,
      ) as Row | undefined;
      return row ? sessionFromRow(row) : undefined;
    });
  }

  // A fleet has one SQLite-backed member at most (the file is this process's), but the calls behave as in
  // PostgreSQL so the fleet code needs no second path; the clock is this process's.
  heartbeat(m: Omit<StoredMember, "heartbeatAt">): Promise<void> {
    return this.#call(() => {
      this.#stmt(
        `INSERT INTO members (id, address, capacity, engine_up, ready, allocated, started_at, heartbeat_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET address = excluded.address, capacity = excluded.capacity,
           engine_up = excluded.engine_up, ready = excluded.ready, allocated = excluded.allocated,
           started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at`,
      ).run(
        m.id,
        m.address,
        m.capacity,
        m.engineUp ? 1 : 0,
        JSON.stringify(m.ready),
        JSON.stringify(m.allocated),
        m.startedAt,
        Date.now(),
      );
    });
  }

  liveMembers(withinMs: number): Promise<StoredMember[]> {
    return this.#call(() => {
      const rows = this.#stmt("SELECT * FROM members WHERE heartbeat_at > ? ORDER BY id").all(
        Date.now() - withinMs,
      ) as Row[];
      return rows.map(memberFromRow);
    });
  }

  removeMember(id: string): Promise<void> {
    return this.#call(() => {
      this.#stmt("DELETE FROM members WHERE id = ?").run(id);
    });
  }

  lease(name: string, holder: string, ttlMs: number): Promise<boolean> {
    return this.#call(() => {
      const now = Date.now();
      const row = this.#stmt(
        `INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
           WHERE leases.holder = excluded.holder OR leases.expires_at < ?4
         RETURNING holder`,
      ).get(name, holder, now + ttlMs, now) as Row | undefined;
      return row !== undefined && String(row["holder"]) === holder;
    });
  }

  releaseLease(name: string, holder: string): Promise<void> {
    return this.#call(() => {
      this.#stmt("DELETE FROM leases WHERE name = ? AND holder = ?").run(name, holder);
    });
  }

  getMeta(key: string): Promise<string | undefined> {
    return this.#call(() => {
      const row = this.#stmt("SELECT value FROM meta WHERE key = ?").get(key) as Row | undefined;
      return row ? String(row["value"]) : undefined;
    });
  }

  setMeta(key: string, value: string): Promise<void> {
    return this.#call(() => {
      this.#stmt(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      ).run(key, value);
    });
  }

  async close(): Promise<void> {
    while (this.#open) await this.#open.catch(() => undefined);
    if (this.#closed) return;
    this.#closed = true;
    this.#stmts.clear();
    this.#db.close();
  }
}

/**
 * Runs one store call; a failure of the disk under it (full, read-only, I/O) leaves as StorageUnavailableError, so
 * no layer above reads SQLite's result codes. Anything else (an error thrown inside a transaction) leaves as is.
 */
function guarded<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw storageFailure(err) ?? err;
  }
}
