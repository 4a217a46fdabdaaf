// Schema migrations, applied in order at open; entry N brings the schema to version N+1. Never edit a shipped
// entry: append a new one.

export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
  CREATE TABLE pools (
    key TEXT PRIMARY KEY,
    sub_lc TEXT NOT NULL,
    rg_lc TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    resource_group TEXT NOT NULL,
    name TEXT NOT NULL,
    doc TEXT NOT NULL,
    etag TEXT NOT NULL,
    generation INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
  );
  CREATE INDEX pools_by_sub ON pools (sub_lc, key);
  CREATE INDEX pools_by_rg ON pools (sub_lc, rg_lc, key);
  CREATE TABLE pool_secrets (
    pool_key TEXT NOT NULL,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    sealed TEXT NOT NULL,
    PRIMARY KEY (pool_key, name)
  );
  CREATE TABLE operations (
    id TEXT PRIMARY KEY,
    pool_key TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    generation INTEGER NOT NULL,
    location TEXT NOT NULL,
    api_version TEXT NOT NULL,
    start_time TEXT NOT NULL,
    end_time TEXT,
    error TEXT
  );
  CREATE INDEX operations_by_status ON operations (status);
  CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    pool_key TEXT NOT NULL,
    identifier TEXT,
    state TEXT NOT NULL,
    sandbox_id TEXT,
    generation INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    allocated_at TEXT,
    last_accessed_at TEXT,
    expires_at TEXT
  );
  CREATE UNIQUE INDEX sessions_by_identifier ON sessions (pool_key, identifier) WHERE identifier IS NOT NULL;
  CREATE INDEX sessions_by_pool ON sessions (pool_key, state);
  `,
  // 2: pools.uid (one incarnation of a pool name; data-plane tokens carry it). Pools stored before get one now.
  `
  ALTER TABLE pools ADD COLUMN uid TEXT;
  UPDATE pools SET uid = lower(hex(randomblob(16))) WHERE uid IS NULL;
  `,
  // 3: the MCP server's API key of each pool, sealed like secrets, bound to one incarnation of the pool (its uid).
  `
  CREATE TABLE IF NOT EXISTS pool_mcp_keys (
    pool_key TEXT PRIMARY KEY,
    pool_uid TEXT NOT NULL,
    sealed TEXT NOT NULL
  );
  `,
  // 4: the environment variables a session was claimed with (PUT /session), sealed with the server's key.
  `
  ALTER TABLE sessions ADD COLUMN environment TEXT;
  `,
  // 5: fleets. Which server's engine holds a session's sandbox; the servers' heartbeats; leases on fleet-wide jobs.
  // Times in members and leases are milliseconds since the epoch.
  `
  ALTER TABLE sessions ADD COLUMN owner TEXT;
  CREATE TABLE members (
    id TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    capacity INTEGER NOT NULL,
    engine_up INTEGER NOT NULL,
    ready TEXT NOT NULL,
    allocated TEXT NOT NULL,
    started_at TEXT NOT NULL,
    heartbeat_at INTEGER NOT NULL
  );
  CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at INTEGER NOT NULL);
  `,
];
