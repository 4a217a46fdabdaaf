// The fleet's decisions on a real store (SQLite in a temp file; the PostgreSQL store passes the same store contract,
// test/store/): where a session's requests go, who starts a new one, how a pool's ready sessions are split, and
// what happens to a gone server's sessions. The other servers are heartbeats written into the store.
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { after, beforeEach, describe, it } from "node:test";
import pino from "pino";
import { SessionMovedError } from "../../src/core/errors.ts";
import { Fleet, type LocalSessions } from "../../src/core/fleet/fleet.ts";
import { SqliteStore } from "../../src/store/sqlite/sqlite-store.ts";
import type { StoredMember, StoredSession } from "../../src/store/store.ts";
import { tempDir } from "../helpers/server.ts";

const POOL = "sub/rg/pool";
const dir = tempDir("sessionpool-fleet-unit-");
after(() => rmSync(dir, { recursive: true, force: true }));

class Local implements LocalSessions {
  held = new Set<string>();
  ready = 0;
  room = 10;
  up = true;
  replaced: string[] = [];
  changes = 0;
  holds(_poolKey: string, identifier: string): boolean {
    return this.held.has(identifier);
  }
  counts() {
    return { ready: { [POOL]: this.ready }, allocated: { [POOL]: this.held.size } };
  }
  capacity(): number {
    return this.room;
  }
  engineUp(): boolean {
    return this.up;
  }
  markReplaced(_poolKey: string, identifier: string): void {
    this.replaced.push(identifier);
  }
  membersChanged(): void {
    this.changes++;
  }
  async endMoved(): Promise<number> {
    return 0;
  }
}

let n = 0;
let store: SqliteStore;
let local: Local;
let fleet: Fleet;

function peer(id: string, over: Partial<StoredMember> = {}): Omit<StoredMember, "heartbeatAt"> {
  return {
    id,
    address: `http://127.0.0.1:1${id.length}000`,
    capacity: 10,
    engineUp: true,
    ready: {},
    allocated: {},
    startedAt: new Date().toISOString(),
    ...over,
  };
}

function session(identifier: string, owner: string): StoredSession {
  return {
    id: `s-${identifier}`,
    poolKey: POOL,
    identifier,
    state: "allocated",
    sandboxId: `sb-${identifier}`,
    generation: 1,
    createdAt: new Date().toISOString(),
    allocatedAt: new Date().toISOString(),
    lastAccessedAt: undefined,
    expiresAt: new Date(Date.now() + 60_000).toISOString(),
    owner,
  };
}

/** Starts this server's fleet view after the given peers' heartbeats (the first beat reads them). */
async function join_(...peers: Omit<StoredMember, "heartbeatAt">[]): Promise<void> {
  for (const p of peers) await store.heartbeat(p);
  fleet = new Fleet({
    store,
    selfId: "self",
    address: () => "http://127.0.0.1:1",
    local,
    logger: pino({ level: "silent" }),
    heartbeatMs: 20,
  });
  await fleet.start();
}

describe("fleet routing", () => {
  beforeEach(async () => {
    await fleet?.close();
    await store?.close();
    store = new SqliteStore(join(dir, `store-${n++}.db`));
    local = new Local();
  });
  after(async () => {
    await fleet?.close();
    await store?.close();
  });

  it("serves a session it holds here, without asking the store", async () => {
    await join_(peer("other", { ready: { [POOL]: 5 } }));
    local.held.add("mine");
    await store.putSession(session("mine", "other")); // even a record saying otherwise does not send it away
    assert.deepEqual(await fleet.route(POOL, "mine", { forwarded: false }), { kind: "local" });
  });

  it("forwards a session another live server holds; refuses it when the request was forwarded already", async () => {
    await join_(peer("other"));
    await store.putSession(session("theirs", "other"));
    const route = await fleet.route(POOL, "theirs", { forwarded: false });
    assert.equal(route.kind, "forward");
    assert.equal(route.kind === "forward" && route.member.id, "other");
    await assert.rejects(fleet.route(POOL, "theirs", { forwarded: true }), SessionMovedError);
  });

  it("starts a gone server's session afresh here, says it was replaced, and drops the old record", async () => {
    await join_(peer("alive"));
    await store.putSession(session("orphan", "gone")); // "gone" never wrote a heartbeat
    assert.deepEqual(await fleet.route(POOL, "orphan", { forwarded: false }), { kind: "local" });
    assert.deepEqual(local.replaced, ["orphan"]);
    assert.equal(await store.findSession(POOL, "orphan"), undefined);
  });

  it("starts a new identifier where a ready sandbox is: here first, else the server with the most", async () => {
    await join_(peer("few", { ready: { [POOL]: 1 } }), peer("many", { ready: { [POOL]: 3 } }));
    local.ready = 1;
    assert.deepEqual(await fleet.route(POOL, "new-1", { forwarded: false }), { kind: "local" });
    local.ready = 0;
    const route = await fleet.route(POOL, "new-2", { forwarded: false });
    assert.equal(route.kind === "forward" && route.member.id, "many");
    // A forwarded request is served where it arrived, whatever the counts say.
    assert.deepEqual(await fleet.route(POOL, "new-3", { forwarded: true }), { kind: "local" });
  });

  it("with no ready sandbox anywhere: a cold start here, or where there is room when this server is full", async () => {
    await join_(
      peer("small", { capacity: 2 }),
      peer("large", { capacity: 50 }),
      peer("down", { capacity: 99, engineUp: false }),
    );
    assert.deepEqual(await fleet.route(POOL, "cold-1", { forwarded: false }), { kind: "local" });
    local.room = 0;
    const route = await fleet.route(POOL, "cold-2", { forwarded: false });
    assert.equal(route.kind === "forward" && route.member.id, "large");
  });

  it("splits a pool's ready sessions over the live servers whose engine answers, the same way on each", async () => {
    await join_(peer("c-down", { engineUp: false }));
    const others = ["a-server", "b-server"].map(
      (id) =>
        new Fleet({
          store,
          selfId: id,
          address: () => `http://${id}`,
          local: new Local(),
          logger: pino({ level: "silent" }),
          heartbeatMs: 20,
        }),
    );
    try {
      for (const f of others) await f.start();
      const all = [fleet, ...others];
      const deadline = Date.now() + 10_000;
      while (!all.every((f) => f.members().filter((m) => m.engineUp).length === 3)) {
        assert.ok(Date.now() < deadline, "every server sees the three whose engine answers");
        await new Promise((r) => setTimeout(r, 20));
      }
      for (const total of [0, 1, 2, 3, 7]) {
        for (const pool of ["sub/rg/p1", "sub/rg/p2", "sub/rg/p3"]) {
          const shares = all.map((f) => f.readyShare(pool, total));
          assert.equal(
            shares.reduce((a, b) => a + b, 0),
            total,
            `${pool} ${total}: ${shares}`,
          );
          assert.ok(Math.max(...shares) - Math.min(...shares) <= 1, `${pool} ${total}: ${shares}`);
        }
      }
      // One ready session: not always on the same server (the remainder rotates by pool).
      const holders = new Set(
        ["p1", "p2", "p3", "p4", "p5", "p6"].map((p) =>
          all.findIndex((f) => f.readyShare(`sub/rg/${p}`, 1) === 1),
        ),
      );
      assert.ok(holders.size > 1, `always server ${[...holders]}`);
    } finally {
      for (const f of others) await f.close();
    }
  });

  it("counts the sessions other servers hold against the pool's limit", async () => {
    await join_(
      peer("a-server", { allocated: { [POOL]: 4 } }),
      peer("b-server", { allocated: { [POOL]: 2 } }),
    );
    assert.equal(fleet.allocatedElsewhere(POOL), 6);
    assert.equal(fleet.allocatedElsewhere("sub/rg/other"), 0);
  });

  it("leaves at close: the others take its share at once", async () => {
    await join_(peer("other"));
    assert.equal((await store.liveMembers(60_000)).length, 2);
    await fleet.close();
    assert.deepEqual(
      (await store.liveMembers(60_000)).map((m) => m.id),
      ["other"],
    );
  });
});
