// The fleet's store: one PostgreSQL database that several servers share, through a `pg` connection pool. Schema
// migrations are versioned in code as in the embedded store, and applied under an advisory lock at open.
import { AsyncLocalStorage } from "node:async_hooks";
import pg from "pg";
import type { Logger } from "pino";
import { StoreSchemaError, StoreUnreachableError } from "../errors.ts";
import {
  deepFreeze,
  memberFromRow,
  operationFromRow,
  poolFromRow,
  type Row,
  sessionFromRow,
} from "../rows.ts";
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
import { brokeConnection, pgFailure } from "./pg-failures.ts";

export interface PostgresStoreOptions {
  logger?: Logger;
  /** Connections this server keeps to the database at most (default 10). */
  poolSize?: number;
  /** How long opening a connection may take before the call fails (default 5 s). */
  connectTimeoutMs?: number;
}

/** One transaction in progress: its connection, found by async context from every store call made within it. */
interface Transaction {
  client: pg.PoolClient;
  /** False once committed or rolled back: a call that outlives it (a timer it started) goes to the pool. */
  open: boolean;
  /** The first statement that failed: PostgreSQL refuses the rest of the transaction, and COMMIT would roll back. */
  failed: unknown;
  /** An error the connection raised between statements (the server went away). */
  broken: Error | undefined;
}

// Every server of a fleet opens the store at start: one at a time migrates, the others then find nothing to do.
const MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(hashtext('sessionpool:migrations'))";

export class PostgresStore implements Store {
  readonly #pool: pg.Pool;
  readonly #where: string;
  readonly #logger: Logger | undefined;
  readonly #tx = new AsyncLocalStorage<Transaction>();
  #closed = false;

  private constructor(pool: pg.Pool, where: string, logger: Logger | undefined) {
    this.#pool = pool;
    this.#where = where;
    this.#logger = logger;
    // A connection that breaks while idle in the pool (PostgreSQL restarted, a proxy timed it out) is reported
    // here; the pool has already dropped it and opens a new one on demand. Unheard, it would end the process.
    pool.on("error", (err) => {
      this.#logger?.warn({ err: { message: err.message, code: codeOf(err) } }, "PostgreSQL connection lost");
    });
  }

  /**
   * Connects to `url` (a libpq-style `postgres://` URL), brings the schema up to date, and returns the store.
   * Fails at once with StoreUnreachableError when the database cannot be reached, and with StoreSchemaError when
   * a newer server has migrated it.
   */
  static async open(url: string, options: PostgresStoreOptions = {}): Promise<PostgresStore> {
    const where = describeUrl(url);
    const pool = new pg.Pool({
      connectionString: url,
      max: options.poolSize ?? 10,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
      idleTimeoutMillis: 30_000,
      // Notices a peer that vanished without closing the connection (a partition, a killed VM).
      keepAlive: true,
      application_name: "sessionpool",
    });
    const store = new PostgresStore(pool, where, options.logger);
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (err) {
      await store.close();
      throw new StoreUnreachableError(where, errorText(err), err);
    }
    try {
      await store.#migrate(client);
      client.release();
    } catch (err) {
      client.release(asError(err));
      await store.close();
      if (pgFailure(err)) throw new StoreUnreachableError(where, errorText(err), err);
      throw err;
    }
    return store;
  }

  async #migrate(client: pg.PoolClient): Promise<void> {
    // One transaction per migration, each under the lock, re-reading the version the previous one left.
    for (;;) {
      await client.query("BEGIN");
      try {
        await client.query(MIGRATION_LOCK);
        await client.query("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
        const { rows } = await client.query<{ v: number }>(
          "SELECT COALESCE(MAX(version), 0)::integer AS v FROM schema_version",
        );
        const current = rows[0]?.v ?? 0;
        if (current > MIGRATIONS.length) throw new StoreSchemaError(this.#where, current, MIGRATIONS.length);
        const sql = MIGRATIONS[current];
        if (sql === undefined) {
          await client.query("COMMIT");
          return;
        }
        await client.query(sql);
        await client.query("INSERT INTO schema_version (version) VALUES ($1)", [current + 1]);
        await client.query("COMMIT");
        this.#logger?.info({ version: current + 1 }, "PostgreSQL store migrated");
      } catch (err) {
        await client.query("ROLLBACK").catch(() => {});
        throw err;
      }
    }
  }

  /** Runs one statement, in the caller's transaction when there is one. */
  async #query(sql: string, params: unknown[] = []): Promise<Row[]> {
    const tx = this.#tx.getStore();
    if (tx?.open) {
      if (tx.failed !== undefined) throw tx.failed;
      try {
        return (await tx.client.query(sql, params)).rows as Row[];
      } catch (err) {
        tx.failed = pgFailure(err) ?? err;
        throw tx.failed;
      }
    }
    try {
      return (await this.#pool.query(sql, params)).rows as Row[];
    } catch (err) {
      throw pgFailure(err) ?? err;
    }
  }

  async transaction<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#tx.getStore()?.open) return fn();
    let client: pg.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (err) {
      throw pgFailure(err) ?? err;
    }
    const tx: Transaction = { client, open: true, failed: undefined, broken: undefined };
    // Checked out, the connection has no listener of the pool's: an error between statements would be unheard.
    const onError = (err: Error) => {
      tx.broken = err;
    };
    client.on("error", onError);
    // The error to release the connection with, so the pool closes it rather than hand it out again.
    let discard: Error | undefined;
    try {
      await client.query("BEGIN");
      let result: T;
      try {
        result = await this.#tx.run(tx, fn);
        if (tx.failed !== undefined) throw tx.failed;
      } catch (err) {
        tx.open = false;
        try {
          await client.query("ROLLBACK");
        } catch (rollbackErr) {
          // The connection is gone (and PostgreSQL rolls back by itself); `err` says what went wrong first.
          discard = asError(rollbackErr);
        }
        throw err;
      }
      tx.open = false;
      await client.query("COMMIT");
      return result;
    } catch (err) {
      if (brokeConnection(err)) discard ??= asError(err);
      throw pgFailure(err) ?? err;
    } finally {
      tx.open = false;
      client.removeListener("error", onError);
      client.release(discard ?? tx.broken);
    }
  }

  /**
   * Read from the database every time: other servers change pools. Frozen, as the embedded store's are.
   * `forUpdate` inside a transaction locks the row until it ends, so another server's transaction that asks the
   * same waits and then reads what this one wrote. (Outside one, the lock would end with the statement: not taken.)
   */
  async getPool(key: string, options: { forUpdate?: boolean } = {}): Promise<StoredPool | undefined> {
    const lock = options.forUpdate && this.#tx.getStore()?.open ? " FOR UPDATE" : "";
    const [row] = await this.#query(`SELECT * FROM pools WHERE key = $1${lock}`, [key]);
    return row ? deepFreeze(poolFromRow(row)) : undefined;
  }

  async listPools(filter: PoolListFilter, page: { afterKey?: string; limit: number }): Promise<StoredPool[]> {
    const rows = await this.#query(
      `SELECT * FROM pools WHERE sub_lc = $1 AND ($2::text IS NULL OR rg_lc = $2) AND key > $3
       ORDER BY key LIMIT $4`,
      [
        filter.subscriptionId.toLowerCase(),
        filter.resourceGroup?.toLowerCase() ?? null,
        page.afterKey ?? "",
        page.limit,
      ],
    );
    return rows.map(poolFromRow);
  }

  async allPools(): Promise<StoredPool[]> {
    return (await this.#query("SELECT * FROM pools ORDER BY key")).map(poolFromRow);
  }

  async putPool(pool: StoredPool): Promise<void> {
    await this.#query(
      `INSERT INTO pools (key, sub_lc, rg_lc, subscription_id, resource_group, name, doc, etag, generation, uid, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
       ON CONFLICT (key) DO UPDATE SET doc = excluded.doc, etag = excluded.etag, generation = excluded.generation,
         updated_at = excluded.updated_at`,
      [
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
      ],
    );
  }

  async deletePool(key: string): Promise<void> {
    await this.transaction(async () => {
      await this.#query("DELETE FROM pool_secrets WHERE pool_key = $1", [key]);
      await this.#query("DELETE FROM pool_mcp_keys WHERE pool_key = $1", [key]);
      await this.#query("DELETE FROM pools WHERE key = $1", [key]);
    });
  }

  async getSecrets(poolKey: string): Promise<StoredSecret[]> {
    const rows = await this.#query(
      "SELECT name, sealed FROM pool_secrets WHERE pool_key = $1 ORDER BY position",
      [poolKey],
    );
    return rows.map((r) => ({ name: String(r["name"]), sealed: String(r["sealed"]) }));
  }

  async replaceSecrets(poolKey: string, secrets: StoredSecret[]): Promise<void> {
    await this.transaction(async () => {
      await this.#query("DELETE FROM pool_secrets WHERE pool_key = $1", [poolKey]);
      if (secrets.length === 0) return;
      await this.#query(
        `INSERT INTO pool_secrets (pool_key, position, name, sealed)
         SELECT $1, (s.ord - 1)::integer, s.name, s.sealed
         FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS s (name, sealed, ord)`,
        [poolKey, secrets.map((s) => s.name), secrets.map((s) => s.sealed)],
      );
    });
  }

  async getMcpKey(poolKey: string): Promise<StoredMcpKey | undefined> {
    const [row] = await this.#query("SELECT pool_uid, sealed FROM pool_mcp_keys WHERE pool_key = $1", [
      poolKey,
    ]);
    return row ? { poolUid: String(row["pool_uid"]), sealed: String(row["sealed"]) } : undefined;
  }

  async putMcpKey(poolKey: string, key: StoredMcpKey): Promise<void> {
    await this.#query(
      `INSERT INTO pool_mcp_keys (pool_key, pool_uid, sealed) VALUES ($1, $2, $3)
       ON CONFLICT (pool_key) DO UPDATE SET pool_uid = excluded.pool_uid, sealed = excluded.sealed`,
      [poolKey, key.poolUid, key.sealed],
    );
  }

  async getOperation(id: string): Promise<StoredOperation | undefined> {
    const [row] = await this.#query("SELECT * FROM operations WHERE id = $1", [id]);
    return row ? operationFromRow(row) : undefined;
  }

  async putOperation(op: StoredOperation): Promise<void> {
    await this.#query(
      `INSERT INTO operations (id, pool_key, resource_id, kind, status, generation, location, api_version, start_time, end_time, error)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
       ON CONFLICT (id) DO UPDATE SET status = excluded.status, end_time = excluded.end_time, error = excluded.error,
         generation = excluded.generation`,
      [
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
      ],
    );
  }

  async listOperations(filter: { status?: OperationStatus; poolKey?: string }): Promise<StoredOperation[]> {
    const rows = await this.#query(
      `SELECT * FROM operations WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR pool_key = $2)
       ORDER BY start_time, id`,
      [filter.status ?? null, filter.poolKey ?? null],
    );
    return rows.map(operationFromRow);
  }

  async listSessions(poolKey: string): Promise<StoredSession[]> {
    const rows = await this.#query("SELECT * FROM sessions WHERE pool_key = $1 ORDER BY created_at, id", [
      poolKey,
    ]);
    return rows.map(sessionFromRow);
  }

  async allSessions(): Promise<StoredSession[]> {
    return (await this.#query("SELECT * FROM sessions ORDER BY created_at, id")).map(sessionFromRow);
  }

  async findSession(poolKey: string, identifier: string): Promise<StoredSession | undefined> {
    const [row] = await this.#query("SELECT * FROM sessions WHERE pool_key = $1 AND identifier = $2", [
      poolKey,
      identifier,
    ]);
    return row ? sessionFromRow(row) : undefined;
  }

  /**
   * Without waiting for the disk unless `durable` (synchronous_commit = off for this one commit: PostgreSQL
   * acknowledges before its WAL is flushed, and flushes it within a few hundred ms). The same trade as the embedded
   * store's NORMAL commit (see its putSession): a claim is on the hot path, a crash of PostgreSQL's process loses
   * at most that last moment of session records, never pools or operations, and never corrupts anything; a record
   * that says "ready" for a sandbox that was used is caught at adoption. Inside a transaction the commit is the
   * transaction's, made as it says.
   */
  async putSession(s: StoredSession, options: { durable?: boolean } = {}): Promise<void> {
    const values = [
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
    ];
    const upsert = `ON CONFLICT (id) DO UPDATE SET identifier = excluded.identifier, state = excluded.state,
         sandbox_id = excluded.sandbox_id, allocated_at = excluded.allocated_at,
         last_accessed_at = excluded.last_accessed_at, expires_at = excluded.expires_at,
         environment = excluded.environment, owner = excluded.owner`;
    const columns = `sessions (id, pool_key, identifier, state, sandbox_id, generation, created_at, allocated_at,
         last_accessed_at, expires_at, environment, owner)`;
    if (options.durable || this.#tx.getStore()?.open) {
      await this.#query(
        `INSERT INTO ${columns} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ${upsert}`,
        values,
      );
      return;
    }
    // One statement, so one round trip: set_config(..., true) lasts until this statement's own (implicit)
    // transaction ends, and PostgreSQL reads synchronous_commit when it commits, before resetting it.
    await this.#query(
      `INSERT INTO ${columns}
       SELECT $1, $2, $3, $4, $5, $6::integer, $7, $8, $9, $10, $11, $12
       FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit ${upsert}`,
      values,
    );
  }

  async deleteSession(id: string): Promise<void> {
    await this.#query("DELETE FROM sessions WHERE id = $1", [id]);
  }

  async heartbeat(member: Omit<StoredMember, "heartbeatAt">): Promise<void> {
    await this.#query(
      `INSERT INTO members (id, address, capacity, engine_up, ready, allocated, started_at, heartbeat_at)
       VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, now())
       ON CONFLICT (id) DO UPDATE SET address = excluded.address, capacity = excluded.capacity,
         engine_up = excluded.engine_up, ready = excluded.ready, allocated = excluded.allocated,
         started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at`,
      [
        member.id,
        member.address,
        member.capacity,
        member.engineUp,
        JSON.stringify(member.ready),
        JSON.stringify(member.allocated),
        member.startedAt,
      ],
    );
  }

  async liveMembers(withinMs: number): Promise<StoredMember[]> {
    const rows = await this.#query(
      `SELECT * FROM members WHERE heartbeat_at > now() - $1::double precision * interval '1 millisecond'
       ORDER BY id`,
      [withinMs],
    );
    return rows.map(memberFromRow);
  }

  async removeMember(id: string): Promise<void> {
    await this.#query("DELETE FROM members WHERE id = $1", [id]);
  }

  /** One statement: two servers asking at once are ordered by the row's lock, and exactly one gets it. */
  async lease(name: string, holder: string, ttlMs: number): Promise<boolean> {
    const rows = await this.#query(
      `INSERT INTO leases (name, holder, expires_at)
       VALUES ($1, $2, now() + $3::double precision * interval '1 millisecond')
       ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
         WHERE leases.holder = excluded.holder OR leases.expires_at < now()
       RETURNING holder`,
      [name, holder, ttlMs],
    );
    return rows.length === 1;
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    await this.#query("DELETE FROM leases WHERE name = $1 AND holder = $2", [name, holder]);
  }

  async getMeta(key: string): Promise<string | undefined> {
    const [row] = await this.#query("SELECT value FROM meta WHERE key = $1", [key]);
    return row ? String(row["value"]) : undefined;
  }

  async setMeta(key: string, value: string): Promise<void> {
    await this.#query(
      "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      [key, value],
    );
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#pool.end();
  }
}

/** "host:port/database" as `pg` reads the URL (environment defaults included), without user or password. */
function describeUrl(url: string): string {
  try {
    const c = new pg.Client({ connectionString: url });
    return `${c.host}:${c.port}/${c.database ?? ""}`;
  } catch {
    return "(a URL that does not parse)";
  }
}

function codeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/** One line on why connecting failed; PostgreSQL's and the socket's messages never carry the password. */
function errorText(err: unknown): string {
  const e = err instanceof AggregateError && err.errors.length > 0 ? err.errors[0] : err;
  const message = e instanceof Error ? e.message : String(e);
  return (message || codeOf(e) || "unknown error").split("\n")[0] ?? "";
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
