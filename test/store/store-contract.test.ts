// What every Store promises, checked against both implementations: the embedded SQLite file and PostgreSQL (a
// private cluster from test/helpers/postgres.ts, a fresh database per test). Then what only the networked store
// has to promise: a clear refusal at open, surviving a restart of the database, and durability across a crash.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import pg from "pg";
import { StoreSchemaError, StoreUnreachableError } from "../../src/store/errors.ts";
import { MIGRATIONS } from "../../src/store/postgres/migrations.ts";
import { PostgresStore } from "../../src/store/postgres/postgres-store.ts";
import { SqliteStore } from "../../src/store/sqlite/sqlite-store.ts";
import { StorageUnavailableError } from "../../src/store/storage-errors.ts";
import type { Store, StoredOperation, StoredPool, StoredSession } from "../../src/store/store.ts";
import { POSTGRES_SKIP, postgresAvailable, startPostgres, type TestPostgres } from "../helpers/postgres.ts";

const SUB = "00000000-0000-0000-0000-0000000000aa";

function pool(rg: string, name: string, over: Partial<StoredPool> = {}): StoredPool {
  return {
    key: `${SUB}/${rg}/${name}`.toLowerCase(),
    subscriptionId: SUB.toUpperCase(),
    resourceGroup: rg,
    name,
    doc: { location: "westus", properties: { scale: { max: 5 }, tags: ["a", "b"] } },
    etag: '"e1"',
    generation: 1,
    uid: `uid-${name}`,
    createdAt: "2026-01-02T03:04:05.678Z",
    updatedAt: "2026-01-02T03:04:05.678Z",
    ...over,
  };
}

function session(id: string, over: Partial<StoredSession> = {}): StoredSession {
  return {
    id,
    poolKey: "p",
    identifier: undefined,
    state: "ready",
    sandboxId: `sandbox-${id}`,
    generation: 1,
    createdAt: "2026-01-02T03:04:05.000Z",
    allocatedAt: undefined,
    lastAccessedAt: undefined,
    expiresAt: undefined,
    environment: undefined,
    owner: undefined,
    ...over,
  };
}

function operation(id: string, over: Partial<StoredOperation> = {}): StoredOperation {
  return {
    id,
    poolKey: "p",
    resourceId: "/subscriptions/x/resourceGroups/rg/providers/Microsoft.App/sessionPools/p",
    kind: "create",
    status: "InProgress",
    generation: 1,
    location: "westus",
    apiVersion: "2025-07-01",
    startTime: "2026-01-02T03:04:05.000Z",
    endTime: undefined,
    error: undefined,
    ...over,
  };
}

/** Waits for `check` to hold, polling on a short timer; fails after `attempts`. */
async function until(what: string, check: () => Promise<boolean>, attempts = 400): Promise<void> {
  for (let i = 0; i < attempts; i++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  assert.fail(`timed out waiting for ${what}`);
}

/** A promise and the function that settles it: lets a test hold a transaction open at a chosen point. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open = () => {};
  const wait = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { wait, open };
}

interface Opened {
  store: Store;
  cleanup(): Promise<void>;
}

/** The contract: every test gets a fresh, empty store from `open`. */
function contract(open: () => Promise<Opened>): void {
  let current: Opened | undefined;
  const fresh = async () => {
    current = await open();
    return current.store;
  };
  afterEach(async () => {
    await current?.cleanup();
    current = undefined;
  });

  it("puts and gets a pool; a second put updates what may change and keeps the rest", async () => {
    const store = await fresh();
    const p = pool("rg1", "alpha");
    await store.putPool(p);
    const got = await store.getPool(p.key);
    assert.deepEqual(got, p);
    assert.ok(Object.isFrozen(got) && Object.isFrozen(got?.doc), "a pool handed out is frozen");
    assert.equal(await store.getPool("nope"), undefined);

    await store.putPool({
      ...p,
      doc: { location: "westus", v: 2 },
      etag: '"e2"',
      generation: 2,
      updatedAt: "2026-02-01T00:00:00.000Z",
      uid: "another-uid",
      createdAt: "2030-01-01T00:00:00.000Z",
    });
    assert.deepEqual(await store.getPool(p.key), {
      ...p,
      doc: { location: "westus", v: 2 },
      etag: '"e2"',
      generation: 2,
      updatedAt: "2026-02-01T00:00:00.000Z",
    });
  });

  it("lists pools by subscription and resource group (any letter case), ordered by key, page by page", async () => {
    const store = await fresh();
    for (const [rg, name] of [
      ["rg1", "charlie"],
      ["rg1", "alpha"],
      ["RG2", "bravo"],
      ["rg1", "delta"],
    ] as const) {
      await store.putPool(pool(rg, name));
    }
    await store.putPool({
      ...pool("rg1", "othersub"),
      key: "00000000-0000-0000-0000-0000000000bb/rg1/othersub",
      subscriptionId: "00000000-0000-0000-0000-0000000000BB",
    });

    const names = (pools: StoredPool[]) => pools.map((p) => p.name);
    assert.deepEqual(names(await store.listPools({ subscriptionId: SUB }, { limit: 10 })), [
      "alpha",
      "charlie",
      "delta",
      "bravo",
    ]);
    const first = await store.listPools(
      { subscriptionId: SUB.toUpperCase(), resourceGroup: "RG1" },
      { limit: 2 },
    );
    assert.deepEqual(names(first), ["alpha", "charlie"]);
    const second = await store.listPools(
      { subscriptionId: SUB, resourceGroup: "rg1" },
      { afterKey: first.at(-1)!.key, limit: 2 },
    );
    assert.deepEqual(names(second), ["delta"]);
    assert.deepEqual(
      names(await store.listPools({ subscriptionId: SUB, resourceGroup: "rg2" }, { limit: 10 })),
      ["bravo"],
    );
    assert.deepEqual(
      await store.listPools({ subscriptionId: SUB, resourceGroup: "none" }, { limit: 10 }),
      [],
    );
    assert.deepEqual(
      (await store.allPools()).map((p) => p.key),
      [
        "00000000-0000-0000-0000-0000000000aa/rg1/alpha",
        "00000000-0000-0000-0000-0000000000aa/rg1/charlie",
        "00000000-0000-0000-0000-0000000000aa/rg1/delta",
        "00000000-0000-0000-0000-0000000000aa/rg2/bravo",
        "00000000-0000-0000-0000-0000000000bb/rg1/othersub",
      ],
    );
  });

  it("orders pool keys byte by byte, whatever the database's locale", async () => {
    const store = await fresh();
    for (const name of ["ab", "a-b", "aB", "a_b"])
      await store.putPool(pool("rg1", name, { key: `k/${name}` }));
    assert.deepEqual(
      (await store.allPools()).map((p) => p.key),
      ["k/a-b", "k/aB", "k/a_b", "k/ab"],
    );
  });

  it("keeps secrets in order and replaces them whole", async () => {
    const store = await fresh();
    await store.replaceSecrets("p", [
      { name: "zeta", sealed: "s1" },
      { name: "alpha", sealed: "s2" },
      { name: "mid", sealed: "s3" },
    ]);
    assert.deepEqual(await store.getSecrets("p"), [
      { name: "zeta", sealed: "s1" },
      { name: "alpha", sealed: "s2" },
      { name: "mid", sealed: "s3" },
    ]);
    await store.replaceSecrets("p", [
      { name: "alpha", sealed: "s4" },
      { name: "new", sealed: "s5" },
    ]);
    assert.deepEqual(await store.getSecrets("p"), [
      { name: "alpha", sealed: "s4" },
      { name: "new", sealed: "s5" },
    ]);
    assert.deepEqual(await store.getSecrets("other"), []);
    await store.replaceSecrets("p", []);
    assert.deepEqual(await store.getSecrets("p"), []);
  });

  it("puts and replaces the MCP key of a pool", async () => {
    const store = await fresh();
    assert.equal(await store.getMcpKey("p"), undefined);
    await store.putMcpKey("p", { poolUid: "u1", sealed: "k1" });
    assert.deepEqual(await store.getMcpKey("p"), { poolUid: "u1", sealed: "k1" });
    await store.putMcpKey("p", { poolUid: "u2", sealed: "k2" });
    assert.deepEqual(await store.getMcpKey("p"), { poolUid: "u2", sealed: "k2" });
  });

  it("deletes a pool with its secrets and MCP key, and deleting it again is fine", async () => {
    const store = await fresh();
    const p = pool("rg1", "alpha");
    const q = pool("rg1", "bravo");
    for (const x of [p, q]) {
      await store.putPool(x);
      await store.replaceSecrets(x.key, [{ name: "s", sealed: "v" }]);
      await store.putMcpKey(x.key, { poolUid: x.uid, sealed: "k" });
    }
    await store.deletePool(p.key);
    assert.equal(await store.getPool(p.key), undefined);
    assert.deepEqual(await store.getSecrets(p.key), []);
    assert.equal(await store.getMcpKey(p.key), undefined);
    assert.deepEqual(await store.getPool(q.key), q, "another pool is untouched");
    assert.deepEqual(await store.getSecrets(q.key), [{ name: "s", sealed: "v" }]);
    assert.deepEqual(await store.getMcpKey(q.key), { poolUid: q.uid, sealed: "k" });
    await store.deletePool(p.key);
  });

  it("puts, updates and lists operations by status and pool, oldest first", async () => {
    const store = await fresh();
    await store.putOperation(operation("op2", { startTime: "2026-01-02T00:00:02.000Z", poolKey: "p" }));
    await store.putOperation(operation("op1", { startTime: "2026-01-02T00:00:01.000Z", poolKey: "q" }));
    await store.putOperation(operation("op3", { startTime: "2026-01-02T00:00:03.000Z", poolKey: "p" }));
    assert.deepEqual(
      await store.getOperation("op1"),
      operation("op1", { startTime: "2026-01-02T00:00:01.000Z", poolKey: "q" }),
    );
    assert.equal(await store.getOperation("none"), undefined);

    const failed = operation("op2", {
      startTime: "2026-01-02T00:00:02.000Z",
      status: "Failed",
      endTime: "2026-01-02T00:01:00.000Z",
      error: { code: "ImagePullFailed", message: "no such image" },
      generation: 2,
    });
    await store.putOperation(failed);
    assert.deepEqual(await store.getOperation("op2"), failed);

    const ids = (ops: StoredOperation[]) => ops.map((o) => o.id);
    assert.deepEqual(ids(await store.listOperations({})), ["op1", "op2", "op3"]);
    assert.deepEqual(ids(await store.listOperations({ status: "InProgress" })), ["op1", "op3"]);
    assert.deepEqual(ids(await store.listOperations({ poolKey: "p" })), ["op2", "op3"]);
    assert.deepEqual(ids(await store.listOperations({ status: "InProgress", poolKey: "p" })), ["op3"]);
    assert.deepEqual(ids(await store.listOperations({ status: "Canceled" })), []);
  });

  it("puts, updates, lists, finds and deletes sessions; owner and environment round-trip", async () => {
    const store = await fresh();
    await store.putSession(session("s2", { createdAt: "2026-01-02T00:00:02.000Z" }));
    await store.putSession(session("s1", { createdAt: "2026-01-02T00:00:02.000Z" }), { durable: true });
    await store.putSession(session("s0", { createdAt: "2026-01-02T00:00:01.000Z", poolKey: "q" }));
    await store.putSession(session("s3", { createdAt: "2026-01-02T00:00:00.500Z" }));
    assert.deepEqual(
      (await store.listSessions("p")).map((s) => s.id),
      ["s3", "s1", "s2"],
      "by creation time, then id",
    );
    assert.deepEqual(
      (await store.allSessions()).map((s) => s.id),
      ["s3", "s0", "s1", "s2"],
    );
    assert.deepEqual(await store.listSessions("none"), []);

    const claimed = session("s1", {
      createdAt: "2026-01-02T00:00:02.000Z",
      identifier: "user-42",
      state: "allocated",
      allocatedAt: "2026-01-02T00:05:00.000Z",
      lastAccessedAt: "2026-01-02T00:05:01.000Z",
      expiresAt: "2026-01-02T01:05:01.000Z",
      environment: "sealed-env",
      owner: "server-a",
    });
    await store.putSession(claimed, { durable: true });
    assert.deepEqual(await store.findSession("p", "user-42"), claimed);
    assert.equal(await store.findSession("q", "user-42"), undefined, "another pool's identifier space");
    assert.equal(await store.findSession("p", "user-43"), undefined);
    assert.deepEqual(
      (await store.listSessions("p")).find((s) => s.id === "s1"),
      claimed,
    );

    // An update without the optional fields clears them.
    const released = { ...claimed, environment: undefined, owner: "server-b", lastAccessedAt: undefined };
    await store.putSession(released);
    assert.deepEqual(await store.findSession("p", "user-42"), released);

    await store.deleteSession("s1");
    assert.equal(await store.findSession("p", "user-42"), undefined);
    assert.deepEqual(
      (await store.listSessions("p")).map((s) => s.id),
      ["s3", "s2"],
    );
    await store.deleteSession("s1");
  });

  it("refuses a second session with the same identifier in one pool", async () => {
    const store = await fresh();
    const allocated = (id: string, poolKey: string) =>
      session(id, {
        poolKey,
        identifier: "same",
        state: "allocated",
        allocatedAt: "2026-01-02T00:05:00.000Z",
      });
    await store.putSession(allocated("s1", "p"));
    await assert.rejects(store.putSession(allocated("s2", "p"), { durable: true }));
    await assert.rejects(store.putSession(allocated("s2", "p")));
    await store.putSession(allocated("s3", "q"));
    // Warm sessions have no identifier yet: any number of them.
    await store.putSession(session("w1"));
    await store.putSession(session("w2"));
    assert.deepEqual(
      (await store.listSessions("p")).map((s) => s.id),
      ["s1", "w1", "w2"],
    );
    assert.equal((await store.findSession("p", "same"))?.id, "s1");
  });

  it("gets and sets meta values", async () => {
    const store = await fresh();
    assert.equal(await store.getMeta("k"), undefined);
    await store.setMeta("k", "v1");
    await store.setMeta("k", "v2");
    assert.equal(await store.getMeta("k"), "v2");
  });

  it("commits a transaction's writes together when it resolves, with its result", async () => {
    const store = await fresh();
    const result = await store.transaction(async () => {
      await store.putPool(pool("rg1", "alpha"));
      await store.setMeta("k", "v");
      assert.equal(await store.getMeta("k"), "v", "a transaction reads its own writes");
      assert.equal((await store.getPool(pool("rg1", "alpha").key, { forUpdate: true }))?.name, "alpha");
      return 42;
    });
    assert.equal(result, 42);
    assert.equal(await store.getMeta("k"), "v");
    assert.ok(await store.getPool(pool("rg1", "alpha").key));
  });

  it("rolls a transaction back when it rejects, and passes its error on", async () => {
    const store = await fresh();
    await store.setMeta("k", "before");
    const boom = new Error("boom");
    await assert.rejects(
      store.transaction(async () => {
        await store.setMeta("k", "during");
        await store.putPool(pool("rg1", "alpha"));
        await store.putSession(session("s1"));
        await store.replaceSecrets("p", [{ name: "s", sealed: "v" }]);
        throw boom;
      }),
      (err) => err === boom,
    );
    assert.equal(await store.getMeta("k"), "before");
    assert.equal(await store.getPool(pool("rg1", "alpha").key), undefined);
    assert.deepEqual(await store.allSessions(), []);
    assert.deepEqual(await store.getSecrets("p"), []);
  });

  it("rolls a transaction back when one of its statements fails", async () => {
    const store = await fresh();
    const allocated = (id: string) => session(id, { identifier: "same", state: "allocated" });
    await store.putSession(allocated("s1"));
    await assert.rejects(
      store.transaction(async () => {
        await store.setMeta("k", "during");
        await store.putSession(allocated("s2"));
      }),
    );
    assert.equal(await store.getMeta("k"), undefined);
    assert.deepEqual(
      (await store.allSessions()).map((s) => s.id),
      ["s1"],
    );
  });

  it("joins a nested transaction to the outer one: the outer's rollback takes the inner's writes", async () => {
    const store = await fresh();
    const inner = await store.transaction(async () => {
      await store.setMeta("outer", "1");
      return store.transaction(async () => {
        await store.setMeta("inner", "1");
        return "inner result";
      });
    });
    assert.equal(inner, "inner result");
    assert.equal(await store.getMeta("inner"), "1");

    await assert.rejects(
      store.transaction(async () => {
        await store.transaction(async () => {
          await store.setMeta("inner2", "1");
          await store.deletePool("nothing");
        });
        assert.equal(await store.getMeta("inner2"), "1");
        throw new Error("outer fails");
      }),
      /outer fails/,
    );
    assert.equal(await store.getMeta("inner2"), undefined);
  });

  it("keeps a call from outside a transaction out of it: it does not see the writes, nor roll back with them", async () => {
    const store = await fresh();
    const wrote = gate();
    const finish = gate();
    const tx = store.transaction(async () => {
      await store.setMeta("inside", "uncommitted");
      wrote.open();
      await finish.wait;
      throw new Error("roll back");
    });
    await wrote.wait;
    // Started from the test's own context while the transaction is open (a store may make them wait for it).
    const read = store.getMeta("inside");
    const write = store.setMeta("outside", "committed");
    finish.open();
    await assert.rejects(tx, /roll back/);
    assert.equal(await read, undefined);
    await write;
    assert.equal(await store.getMeta("outside"), "committed");
    assert.equal(await store.getMeta("inside"), undefined);
  });

  it("records heartbeats by the store's clock and lists the live members by id", async () => {
    const store = await fresh();
    const member = (id: string) => ({
      id,
      address: `http://127.0.0.1:70${id.length}`,
      capacity: 10,
      engineUp: true,
      ready: { "sub/rg/pool": 2 },
      allocated: { "sub/rg/pool": 5, "sub/rg/other": 1 },
      startedAt: "2026-01-02T00:00:00.000Z",
    });
    await store.heartbeat(member("zed"));
    await store.heartbeat(member("amy"));
    const live = await store.liveMembers(60_000);
    assert.deepEqual(
      live.map((m) => m.id),
      ["amy", "zed"],
    );
    const { heartbeatAt, ...rest } = live[0]!;
    assert.deepEqual(rest, member("amy"));
    assert.equal(new Date(heartbeatAt).toISOString(), heartbeatAt, "an ISO timestamp");

    await store.heartbeat({ ...member("amy"), capacity: 3, engineUp: false, ready: {}, allocated: { x: 1 } });
    const [amy] = await store.liveMembers(60_000);
    assert.equal(amy?.capacity, 3);
    assert.equal(amy?.engineUp, false);
    assert.deepEqual(amy?.ready, {});
    assert.deepEqual(amy?.allocated, { x: 1 });
    assert.ok(Date.parse(amy!.heartbeatAt) >= Date.parse(heartbeatAt), "a heartbeat moves heartbeatAt on");

    await store.removeMember("zed");
    assert.deepEqual(
      (await store.liveMembers(60_000)).map((m) => m.id),
      ["amy"],
    );
    await store.removeMember("zed");
  });

  it("leaves a member whose heartbeat is older than the window out of the live ones", async () => {
    const store = await fresh();
    await store.heartbeat({
      id: "old",
      address: "http://127.0.0.1:7001",
      capacity: 1,
      engineUp: true,
      ready: {},
      allocated: {},
      startedAt: "2026-01-02T00:00:00.000Z",
    });
    assert.equal((await store.liveMembers(60_000)).length, 1);
    // The store's clock moves on; within a 1 ms window the heartbeat soon counts as old.
    await until("the heartbeat to age past 1 ms", async () => (await store.liveMembers(1)).length === 0);
    assert.equal((await store.liveMembers(60_000)).length, 1, "still there, only not live within 1 ms");
  });

  it("grants a lease to one holder at a time, renews it for that holder, and releases it", async () => {
    const store = await fresh();
    assert.equal(await store.lease("reaper", "a", 60_000), true, "taken");
    assert.equal(await store.lease("reaper", "b", 60_000), false, "refused to another holder");
    assert.equal(await store.lease("reaper", "a", 60_000), true, "renewed by its holder");
    assert.equal(await store.lease("other", "b", 60_000), true, "another lease is another name");

    await store.releaseLease("reaper", "b");
    assert.equal(await store.lease("reaper", "b", 60_000), false, "only the holder releases it");
    await store.releaseLease("reaper", "a");
    assert.equal(await store.lease("reaper", "b", 60_000), true, "free once released");
    await store.releaseLease("reaper", "a");
  });

  it("lets another holder take a lease once it expires", async () => {
    const store = await fresh();
    assert.equal(await store.lease("gc", "a", 1), true);
    await until("the 1 ms lease to expire", () => store.lease("gc", "b", 60_000));
    assert.equal(await store.lease("gc", "a", 60_000), false, "b holds it now");
  });

  it("closes, and closing again is fine", async () => {
    const store = await fresh();
    await store.setMeta("k", "v");
    await store.close();
    await store.close();
  });
}

describe("SqliteStore", () => {
  contract(async () => {
    const dir = await mkdtemp(join(tmpdir(), "sessionpool-store-"));
    const store = new SqliteStore(join(dir, "store.db"));
    return {
      store,
      async cleanup() {
        await store.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  });
});

const skip = !postgresAvailable() && POSTGRES_SKIP;

describe("PostgresStore", { skip }, () => {
  let server: TestPostgres | undefined;
  let databases = 0;
  const freshDatabase = () => server!.createDatabase(`contract_${++databases}`);
  before(async () => {
    server = await startPostgres();
  });
  after(async () => {
    await server?.stop();
  });

  contract(async () => {
    const store = await PostgresStore.open(await freshDatabase());
    return { store, cleanup: () => store.close() };
  });

  describe("beyond the contract", () => {
    const opened: PostgresStore[] = [];
    afterEach(async () => {
      for (const store of opened.splice(0)) await store.close();
    });
    const openStore = async (url: string, options?: { poolSize?: number }) => {
      const store = await PostgresStore.open(url, options);
      opened.push(store);
      return store;
    };
    /** Runs SQL as the superuser on `url`'s database, past the store. */
    const sql = async (url: string, text: string, values: unknown[] = []) => {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        return (await client.query(text, values)).rows as Record<string, unknown>[];
      } finally {
        await client.end();
      }
    };

    it("refuses to open an unreachable database with one line naming host, port and database, not the password", async () => {
      // The cluster's port with its server stopped would do too; a port nothing listens on is simpler.
      const port = server!.port === 1 ? 2 : 1;
      await assert.rejects(
        PostgresStore.open(`postgres://fleet:s3cret-pw@127.0.0.1:${port}/sessionpool`),
        (err: unknown) => {
          assert.ok(err instanceof StoreUnreachableError, String(err));
          assert.equal(err.code, "StoreUnreachable");
          assert.match(
            err.message,
            new RegExp(
              `^Cannot reach the PostgreSQL store at 127\\.0\\.0\\.1:${port}/sessionpool: .*ECONNREFUSED`,
            ),
          );
          assert.doesNotMatch(err.message, /s3cret-pw|fleet/);
          assert.doesNotMatch(err.message, /\n/);
          return true;
        },
      );
    });

    it("refuses to open a database it cannot log in to, naming the database", async () => {
      await assert.rejects(
        PostgresStore.open(`postgres://postgres:pw@127.0.0.1:${server!.port}/no_such_database`),
        (err: unknown) => {
          assert.ok(err instanceof StoreUnreachableError, String(err));
          assert.match(err.message, /no_such_database/);
          assert.doesNotMatch(err.message, /:pw/);
          return true;
        },
      );
    });

    it("refuses a database whose schema is newer than this server knows", async () => {
      const url = await freshDatabase();
      const store = await openStore(url);
      await store.setMeta("k", "v");
      await store.close();
      const newer = MIGRATIONS.length + 2;
      await sql(url, "INSERT INTO schema_version (version) VALUES ($1)", [newer]);
      await assert.rejects(PostgresStore.open(url), (err: unknown) => {
        assert.ok(err instanceof StoreSchemaError, String(err));
        assert.equal(err.code, "StoreSchemaTooNew");
        assert.match(
          err.message,
          new RegExp(
            `has schema version ${newer}; this server knows up to ${MIGRATIONS.length}: upgrade this server before it joins the fleet`,
          ),
        );
        assert.match(err.message, /127\.0\.0\.1:\d+\/contract_\d+/);
        return true;
      });
      assert.deepEqual(await sql(url, "SELECT value FROM meta"), [{ value: "v" }], "nothing was touched");
    });

    it("migrates once when several servers open a new database at the same time", async () => {
      const url = await freshDatabase();
      const stores = await Promise.all([openStore(url), openStore(url), openStore(url)]);
      assert.equal(stores.length, 3);
      const versions = await sql(url, "SELECT version FROM schema_version ORDER BY version");
      assert.deepEqual(
        versions.map((r) => r["version"]),
        MIGRATIONS.map((_, i) => i + 1),
      );
      await stores[0]!.setMeta("k", "v");
      assert.equal(await stores[2]!.getMeta("k"), "v", "they share one database");
    });

    it("reads pools afresh: what another server wrote is seen at once", async () => {
      const url = await freshDatabase();
      const a = await openStore(url);
      const b = await openStore(url);
      const p = pool("rg1", "alpha");
      await a.putPool(p);
      assert.equal((await b.getPool(p.key))?.etag, '"e1"');
      await a.putPool({ ...p, etag: '"e2"' });
      assert.equal((await b.getPool(p.key))?.etag, '"e2"');
      await a.deletePool(p.key);
      assert.equal(await b.getPool(p.key), undefined);
    });

    it("makes another server's getPool forUpdate wait for the transaction holding the pool, then see its write", async () => {
      const url = await freshDatabase();
      const a = await openStore(url);
      const b = await openStore(url);
      const p = pool("rg1", "alpha");
      await a.putPool(p);
      const locked = gate();
      const finish = gate();
      const first = a.transaction(async () => {
        assert.equal((await a.getPool(p.key, { forUpdate: true }))?.etag, '"e1"');
        locked.open();
        await finish.wait;
        await a.putPool({ ...p, etag: '"e2"', generation: 2 });
      });
      await locked.wait;
      const second = b.transaction(async () => (await b.getPool(p.key, { forUpdate: true }))?.etag);
      try {
        // PostgreSQL says when b's statement waits on a's lock.
        await until("the second server to wait for the row lock", async () => {
          const waiting = await sql(
            url,
            "SELECT count(*)::integer AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
          );
          return waiting[0]?.["n"] === 1;
        });
      } finally {
        finish.open();
        await first;
      }
      assert.equal(await second, '"e2"', "it read the pool as the first transaction left it");
      assert.equal(
        (await b.getPool(p.key, { forUpdate: true }))?.etag,
        '"e2"',
        "outside a transaction: no lock",
      );
    });

    it("answers StorageUnavailable when every connection stays busy past the connect timeout", async () => {
      const url = await freshDatabase();
      const store = await PostgresStore.open(url, { poolSize: 1, connectTimeoutMs: 200 });
      opened.push(store);
      const holding = gate();
      const finish = gate();
      const tx = store.transaction(async () => {
        await store.setMeta("k", "v");
        holding.open();
        await finish.wait;
      });
      await holding.wait;
      try {
        await assert.rejects(store.getMeta("k"), (err: unknown) => {
          assert.ok(err instanceof StorageUnavailableError, String(err));
          assert.equal(err.problem, "busy");
          return true;
        });
      } finally {
        finish.open();
        await tx;
      }
      assert.equal(await store.getMeta("k"), "v");
    });

    it("turns down the rest of a transaction after a failed statement, so it cannot commit half", async () => {
      const url = await freshDatabase();
      const store = await openStore(url);
      const allocated = (id: string) => session(id, { identifier: "same", state: "allocated" });
      await store.putSession(allocated("s1"));
      // PostgreSQL aborts a transaction at its first failed statement: a caller that swallows the failure must
      // not be told the rest committed.
      await assert.rejects(
        store.transaction(async () => {
          await store.setMeta("k", "v");
          await store.putSession(allocated("s2")).catch(() => {});
        }),
        (err: unknown) => (err as { code?: unknown }).code === "23505",
        "COMMIT would roll back without a word; the transaction rejects with the failure instead",
      );
      await assert.rejects(
        store.transaction(async () => {
          await store.setMeta("k", "v");
          await store.putSession(allocated("s2")).catch(() => {});
          await store.setMeta("k2", "v2");
        }),
        (err: unknown) => (err as { code?: unknown }).code === "23505",
        "a later statement is refused with the first failure",
      );
      assert.equal(await store.getMeta("k"), undefined);
      assert.equal(await store.getMeta("k2"), undefined);
      await store.setMeta("k3", "v3");
      assert.equal(await store.getMeta("k3"), "v3", "the connection is usable afterwards");
    });

    it("rides out a restart of PostgreSQL: calls fail with StorageUnavailable meanwhile, then succeed without reopening", {
      timeout: 60_000,
    }, async () => {
      const url = await freshDatabase();
      const store = await openStore(url, { poolSize: 2 });
      await store.putPool(pool("rg1", "alpha"));
      // Connections idle in the pool, which the restart will cut.
      await Promise.all([store.getMeta("a"), store.getMeta("b")]);

      // A transaction open across the restart loses its connection; that connection must not be reused.
      const inside = gate();
      const resume = gate();
      const tx = store.transaction(async () => {
        await store.setMeta("tx", "1");
        inside.open();
        await resume.wait;
        await store.setMeta("tx", "2");
      });
      await inside.wait;

      const outcomes: string[] = [];
      let restarting = true;
      const calls = (async () => {
        for (let i = 0; restarting && i < 2_000; i++) {
          try {
            await store.getPool(pool("rg1", "alpha").key);
            outcomes.push("ok");
          } catch (err) {
            assert.ok(err instanceof StorageUnavailableError, `rejected with ${String(err)}`);
            assert.equal(err.statusCode, 503);
            assert.match(err.message, /^The server cannot reach its database/);
            outcomes.push("unavailable");
          }
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      })();
      try {
        await server!.restart();
      } finally {
        restarting = false;
        await calls;
        resume.open();
      }
      await assert.rejects(tx, (err: unknown) => err instanceof StorageUnavailableError);

      // The same store, not reopened: every call works again (two connections, so a broken one reused would show).
      for (let i = 0; i < 4; i++) {
        assert.equal((await store.getPool(pool("rg1", "alpha").key))?.name, "alpha");
        await store.setMeta(`after-${i}`, "v");
        await store.transaction(async () => {
          await store.setMeta(`tx-after-${i}`, "v");
        });
      }
      assert.equal(await store.getMeta("tx"), undefined, "the cut transaction did not commit");
      assert.ok(outcomes.length > 0);
    });

    it("keeps every acknowledged write when PostgreSQL crashes right after", {
      timeout: 60_000,
    }, async () => {
      const url = await freshDatabase();
      const store = await openStore(url, { poolSize: 1 });
      const p = pool("rg1", "alpha");
      await store.putPool(p);
      await store.putOperation(operation("op1"));
      await store.putSession(session("s1", { identifier: "id1", state: "allocated" }), { durable: true });
      // A session record written without waiting for the disk, then a write that must: the one connection must be
      // back to waiting (synchronous_commit on) for the second, or a crash now could lose it.
      await store.putSession(session("s2"));
      await store.setMeta("last", "acknowledged");

      await server!.restart({ mode: "immediate" });

      await until("the store to answer again", async () => {
        try {
          await store.getMeta("last");
          return true;
        } catch (err) {
          if (err instanceof StorageUnavailableError) return false;
          throw err;
        }
      });
      assert.deepEqual(await store.getPool(p.key), p);
      assert.deepEqual(await store.getOperation("op1"), operation("op1"));
      assert.equal((await store.findSession("p", "id1"))?.id, "s1");
      assert.equal(await store.getMeta("last"), "acknowledged");
    });
  });
});
