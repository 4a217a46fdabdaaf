// Schema migrations of the PostgreSQL store, applied in order at open; entry N brings the schema to version N+1.
// Versions 1-4 mean what they mean in the SQLite store (store/sqlite/migrations.ts), so one number describes a
// database whichever engine holds it. Never edit a shipped entry: append a new one.
//
// Timestamps the callers give (createdAt, expiresAt, ...) are TEXT, kept exactly as given, as SQLite keeps them;
// only the fleet's heartbeats and leases are timestamptz, set from the database's clock so servers' clocks need
// not agree.
//
// Columns the store orders or pages by are COLLATE "C": byte order, as SQLite's, whatever the database's locale
// (a locale's order would put "a-b" after "ab" on one server's database and not on another's).

export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
  CREATE TABLE pools (
    key TEXT COLLATE "C" PRIMARY KEY,
    sub_lc TEXT COLLATE "C" NOT NULL,
    rg_lc TEXT COLLATE "C" NOT NULL,
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
    id TEXT COLLATE "C" PRIMARY KEY,
    pool_key TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    generation INTEGER NOT NULL,
    location TEXT NOT NULL,
    api_version TEXT NOT NULL,
    start_time TEXT COLLATE "C" NOT NULL,
    end_time TEXT,
    error TEXT
  );
  CREATE INDEX operations_by_status ON operations (status);
  CREATE TABLE sessions (
    id TEXT COLLATE "C" PRIMARY KEY,
    pool_key TEXT NOT NULL,
    identifier TEXT,
    state TEXT NOT NULL,
    sandbox_id TEXT,
    generation INTEGER NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
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
  UPDATE pools SET uid = replace(gen_random_uuid()::text, '-', '') WHERE uid IS NULL;
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
  // 5: the fleet. Which server's engine holds each session; the servers sharing this database, as their last
  // heartbeat described them; and named leases (one holder at a time, until it expires).
  `
  ALTER TABLE sessions ADD COLUMN owner TEXT;
  CREATE TABLE members (
    id TEXT COLLATE "C" PRIMARY KEY,
    address TEXT NOT NULL,
    capacity INTEGER NOT NULL,
    engine_up BOOLEAN NOT NULL,
    ready JSONB NOT NULL,
    allocated JSONB NOT NULL,
    started_at TEXT NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL
  );
  CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
  );
  `,
];
