// A fleet: three real `sessionpool serve` processes on one PostgreSQL (Debian's, started here on a private port and
// data dir) and two Docker engines (the machine's and a second dockerd started here), as docs/fleet.md describes.
// One API through any server; a session lives on one server and is reached through all; kill -9 of one server
// under load: its sessions come back fresh and say so, nothing else fails, nothing is lost, the pool refills on the
// survivors; the server comes back and rejoins; Postgres restarts and the servers recover by themselves; a server
// with other keys, or with no store to reach, is refused at start in one line.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { Client as PgClient } from "pg";
import { POSTGRES_SKIP, postgresAvailable, startPostgres, type TestPostgres } from "../helpers/postgres.ts";
import { armPoolUrl, dockerIds, metric, until } from "../helpers/runtime.ts";
import {
  pythonImageRef,
  SECOND_ENGINE_HOST,
  SECOND_ENGINE_LACKS,
  type SecondEngine,
  secondEngineAvailable,
  startSecondEngine,
} from "../helpers/second-engine.ts";
import {
  type ChildServer,
  call,
  type Reply,
  SUB,
  spawnServer,
  tempDir,
  waitForOperation,
} from "../helpers/server.ts";

const run = promisify(execFile);
const RG = `fleet${process.pid}`;
const POOL = "fleet";
const API = "api-version=2025-10-02-preview";
const POOL_LABEL = `io.sessionpool.pool=${`${SUB}/${RG}/${POOL}`.toLowerCase()}`;
const READY = 3;

const skip = !postgresAvailable()
  ? POSTGRES_SKIP
  : !secondEngineAvailable()
    ? SECOND_ENGINE_LACKS
    : undefined;

interface Member {
  name: string;
  dataDir: string;
  dockerHost: string | undefined;
  server: ChildServer | undefined;
}

let pg: TestPostgres | undefined;
let engine2: SecondEngine | undefined;
let storeUrl = "";
let image = "";
const members: Member[] = [];

async function startMember(m: Member): Promise<ChildServer> {
  m.server = await spawnServer(
    ["--store", storeUrl, "--python-image", image, "--log-level", "warn"],
    m.dockerHost ? { DOCKER_HOST: m.dockerHost } : {},
    m.dataDir,
  );
  return m.server;
}

const A = () => members[0]!;
const B = () => members[1]!;
const C = () => members[2]!;
const urlOf = (m: Member) => m.server!.url;
const endpoint = (m: Member) => `${urlOf(m)}/subscriptions/${SUB}/resourceGroups/${RG}/sessionPools/${POOL}`;
const at = (m: Member, path: string, identifier: string) =>
  `${endpoint(m)}${path}?${API}&identifier=${encodeURIComponent(identifier)}`;
const exec = (m: Member, identifier: string, code: string, headers: Record<string, string> = {}) =>
  call("POST", at(m, "/executions", identifier), { body: { code, timeoutInSeconds: 60 }, headers });
const resultOf = (r: Reply) => (r.body as { result?: { executionResult?: unknown } }).result?.executionResult;

interface FleetView {
  self: string;
  members: { id: string; address: string; engineUp: boolean; ready: Record<string, number> }[];
}
const fleetOf = async (m: Member) => (await call("GET", `${urlOf(m)}/fleet`)).body as FleetView;
/** A server's instance id: kept in its data dir (a fleet's servers each have their own). */
const instanceOf = (m: Member) => readFileSync(join(m.dataDir, "instance-id"), "utf8").trim();

/** The server holding an identifier's session, as the shared store records it. */
async function ownerOf(identifier: string): Promise<string | undefined> {
  const client = new PgClient({ connectionString: storeUrl });
  await client.connect();
  try {
    const r = await client.query("SELECT owner FROM sessions WHERE pool_key = $1 AND identifier = $2", [
      poolKey,
      identifier,
    ]);
    return (r.rows[0] as { owner?: string } | undefined)?.owner;
  } finally {
    await client.end();
  }
}
const poolKey = `${SUB}/${RG}/${POOL}`.toLowerCase();

/** Containers of the pool in an engine (the machine's, or the second one). */
async function poolContainers(dockerHost?: string): Promise<string[]> {
  if (!dockerHost) return dockerIds(POOL_LABEL, "running");
  const { stdout } = await run("docker", ["-H", dockerHost, "ps", "-q", "--filter", `label=${POOL_LABEL}`]);
  return stdout.split("\n").filter((l) => l !== "");
}

describe("a fleet of three servers on PostgreSQL and two engines", { skip }, () => {
  before(async () => {
    pg = await startPostgres();
    storeUrl = await pg.createDatabase("fleet");
    image = await pythonImageRef();
    engine2 = await startSecondEngine([image]);
    for (const [name, dockerHost] of [
      ["a", undefined],
      ["b", undefined],
      ["c", SECOND_ENGINE_HOST],
    ] as const) {
      members.push({ name, dataDir: tempDir(`sessionpool-fleet-${name}-`), dockerHost, server: undefined });
    }
    // The first server makes the keys; the others get copies, as docs/fleet.md says to provision them.
    await startMember(A());
    for (const m of [B(), C()]) {
      mkdirSync(join(m.dataDir, "keys"), { recursive: true, mode: 0o700 });
      for (const f of ["secrets.key", "token-signing.key"]) {
        copyFileSync(join(A().dataDir, "keys", f), join(m.dataDir, "keys", f));
      }
      await startMember(m);
    }
  });

  after(async () => {
    try {
      const live = members.find((m) => m.server && m.server.child.exitCode === null);
      if (live) {
        const del = await call("DELETE", armPoolUrl(urlOf(live), POOL, RG)).catch(() => undefined);
        if (del?.status === 202) await waitForOperation(del.headers["azure-asyncoperation"]!).catch(() => {});
      }
      await Promise.all(members.map((m) => m.server?.stop()));
    } finally {
      const left = await dockerIds(POOL_LABEL).catch(() => []);
      if (left.length > 0) await run("docker", ["rm", "-f", ...left]).catch(() => {});
      const left2 = await run("docker", [
        "-H",
        SECOND_ENGINE_HOST,
        "ps",
        "-aq",
        "--filter",
        `label=${POOL_LABEL}`,
      ])
        .then((r) => r.stdout.split("\n").filter((l) => l !== ""))
        .catch(() => []);
      if (left2.length > 0)
        await run("docker", ["-H", SECOND_ENGINE_HOST, "rm", "-f", ...left2]).catch(() => {});
      await engine2?.stop();
      await pg?.stop();
      for (const m of members) await run("rm", ["-rf", m.dataDir]).catch(() => {});
    }
  });

  it("is one API: a pool made through one server is served by all, its ready sessions spread over them", async () => {
    const put = await call("PUT", armPoolUrl(urlOf(A()), POOL, RG), {
      body: {
        location: "eastus",
        properties: {
          poolManagementType: "Dynamic",
          containerType: "PythonLTS",
          scaleConfiguration: { maxConcurrentSessions: 20, readySessionInstances: READY },
          dynamicPoolConfiguration: {
            lifecycleConfiguration: { lifecycleType: "Timed", cooldownPeriodInSeconds: 300 },
          },
          sessionNetworkConfiguration: { status: "EgressDisabled" },
        },
      },
    });
    assert.equal(put.status, 201, put.text);
    // The operation is answered by any server.
    const opUrl = put.headers["azure-asyncoperation"]!.replace(urlOf(A()), urlOf(C()));
    assert.equal((await waitForOperation(opUrl))["status"], "Succeeded");
    for (const m of members) {
      const got = await call("GET", armPoolUrl(urlOf(m), POOL, RG));
      assert.equal(got.status, 200, `${m.name}: ${got.text}`);
      assert.equal(got.headers["etag"], put.headers["etag"]);
    }
    // Three servers, one ready sandbox each; C's on the second engine.
    await until("a ready sandbox on each server", async () => {
      const view = await fleetOf(A());
      return view.members.length === 3 && view.members.every((m) => m.ready[poolKey] === 1);
    });
    assert.equal((await poolContainers(SECOND_ENGINE_HOST)).length, 1);
    assert.equal((await poolContainers()).length, 2);

    // A token issued by one server works on the others (the keys are the fleet's).
    const issued = await call("POST", armPoolUrl(urlOf(B()), POOL, RG).replace("?", "/getAuthtoken?"));
    assert.equal(issued.status, 200, issued.text);
    const token = (issued.body as { properties: { token: string } }).properties.token;
    const r = await call("POST", at(C(), "/executions", "token-check"), {
      token,
      body: { code: "1 + 1", timeoutInSeconds: 30 },
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(resultOf(r), 2);
  });

  it("keeps a session on one server and reaches it through every server, streamed output included", async () => {
    // Started through C: C's ready sandbox, on the second engine.
    assert.equal((await exec(C(), "carol", "x = 41")).status, 200);
    for (const m of members) {
      const r = await exec(m, "carol", "x = x + 1\nx");
      assert.equal(r.status, 200, `${m.name}: ${r.text}`);
    }
    assert.equal(resultOf(await exec(A(), "carol", "x")), 44);
    // One sandbox for it, in C's engine: the fleet-wide listing shows it once.
    const list = await call("GET", `${endpoint(B())}/listSessions?${API}`);
    assert.equal(list.status, 200, list.text);
    const ids = (list.body as { sessions: { identifier: string }[] }).sessions.map((s) => s.identifier);
    assert.equal(ids.filter((i) => i === "carol").length, 1, JSON.stringify(ids));

    // Streamed through A to C: the events pass as they come.
    const res = await fetch(at(A(), "/executions", "carol"), {
      method: "POST",
      headers: {
        authorization: `Bearer ${A().server!.token}`,
        accept: "text/event-stream",
        "content-type": "application/json",
      },
      body: JSON.stringify({ code: "print('hello from C')\nx", timeoutInSeconds: 30 }),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
    const text = await res.text();
    assert.match(text, /event: stdout\ndata: .*hello from C/);
    assert.match(text, /event: result\n/);
  });

  it("survives kill -9 of one server under load: its sessions come back fresh and say so, nothing else fails", async () => {
    // Two sessions on each server: each started through a server while it holds a ready sandbox, so it stays there.
    const owned: Record<string, string[]> = { a: [], b: [], c: [] };
    for (const m of members) {
      for (const n of [1, 2]) {
        const id = `${m.name}-held-${n}`;
        // The server's own count (its /metrics), which is what it routes by.
        await until(
          `a ready sandbox on ${m.name}`,
          async () => (await metric(urlOf(m), "sessionpool_pool_ready_sessions", poolKey)) > 0,
        );
        assert.equal((await exec(m, id, "n = 0")).status, 200, id);
        assert.equal(await ownerOf(id), instanceOf(m), `${id} is held by ${m.name}`);
        owned[m.name]!.push(id);
      }
    }
    // Load through the survivors, on the survivors' sessions, while B dies.
    const survivors = [A(), C()];
    const failures: string[] = [];
    let stop = false;
    let done = 0;
    const workers = [...owned["a"]!, ...owned["c"]!].map(async (id, i) => {
      while (!stop) {
        const via = survivors[(i + done) % survivors.length]!;
        const r = await exec(via, id, "n += 1\nn").catch(
          (err: Error) => ({ status: 0, text: err.message }) as Reply,
        );
        if (r.status !== 200) failures.push(`${id} via ${via.name}: ${r.status} ${r.text}`);
        done++;
      }
    });
    const [lost, kept] = owned["b"] as [string, string];
    try {
      await until("some load", async () => done > 20);
      await B().server!.kill();
      // B's sessions, asked for through A: refused as unreachable (retryable) until B counts as gone, then a fresh
      // session that says it replaced the lost one.
      let replaced: Reply | undefined;
      const refusals = new Set<string>();
      await until(
        `${lost} served again`,
        async () => {
          const r = await exec(A(), lost, "'n' in globals()");
          if (r.status === 200) replaced = r;
          else refusals.add(`${r.status} ${(r.body as { error?: { code?: string } }).error?.code}`);
          return r.status === 200;
        },
        30_000,
      );
      assert.deepEqual([...refusals], ["503 FleetMemberUnreachable"]);
      assert.equal(replaced!.headers["x-sessionpool-session-replaced"], "true");
      assert.equal(resultOf(replaced!), false);
      // The pool refills on the survivors: its three ready sandboxes over two servers.
      await until("the survivors hold the ready sandboxes", async () => {
        const view = await fleetOf(A());
        const ready = view.members.reduce((sum, m) => sum + (m.ready[poolKey] ?? 0), 0);
        return view.members.length === 2 && ready === READY;
      });
    } finally {
      stop = true;
      await Promise.all(workers);
    }
    assert.deepEqual(failures, []);
    assert.ok(done > 40, `only ${done} executions ran`);
    // Nothing lost: the pool and its operation are there.
    const pool = await call("GET", armPoolUrl(urlOf(C()), POOL, RG));
    assert.equal(pool.status, 200, pool.text);
    assert.equal(
      (pool.body as { properties: { provisioningState: string } }).properties.provisioningState,
      "Succeeded",
    );

    // B comes back on its data dir: it rejoins, keeps the session nobody replaced (with its state), removes the
    // sandbox whose session went on elsewhere, and serves.
    await startMember(B());
    await until("three members again", async () => (await fleetOf(A())).members.length === 3);
    assert.equal(resultOf(await exec(B(), lost, "'n' in globals()")), false);
    assert.equal(await ownerOf(lost), instanceOf(A()));
    const r = await exec(A(), kept, "n");
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers["x-sessionpool-session-replaced"], undefined);
    assert.equal(resultOf(r), 0);
    assert.equal(await ownerOf(kept), instanceOf(B()));
  });

  it("a server paused past the live window gives up the sessions the others started afresh meanwhile", async () => {
    const id = "bravo-paused";
    await until(
      "a ready sandbox on b",
      async () => (await metric(urlOf(B()), "sessionpool_pool_ready_sessions", poolKey)) > 0,
    );
    assert.equal((await exec(B(), id, "m = 1")).status, 200);
    assert.equal(await ownerOf(id), instanceOf(B()));
    const pid = B().server!.child.pid!;
    process.kill(pid, "SIGSTOP");
    try {
      await until("b counted as gone", async () => (await fleetOf(A())).members.length === 2, 30_000);
      let fresh: Reply | undefined;
      await until(
        `${id} started afresh on another server`,
        async () => {
          const r = await exec(A(), id, "m = 5\n'ok'");
          if (r.status === 200) fresh = r;
          return r.status === 200;
        },
        30_000,
      );
      assert.equal(fresh!.headers["x-sessionpool-session-replaced"], "true");
      assert.notEqual(await ownerOf(id), instanceOf(B()));
    } finally {
      process.kill(pid, "SIGCONT");
    }
    // Back, B finds the record gone from under its copy and ends it: a request reaching B gets the new session.
    await until(
      "b forwards to the new session",
      async () => resultOf(await exec(B(), id, "m")) === 5,
      30_000,
    );
  });

  it("rides out a restart of PostgreSQL", async () => {
    await pg!.restart({ mode: "fast" });
    // New sessions need the store: they come back once the servers reconnect, with no restart of theirs.
    await until(
      "a new session through each server",
      async () => {
        for (const m of members) {
          const r = await exec(m, `after-pg-${m.name}`, "2 * 21");
          if (r.status !== 200) return false;
        }
        return true;
      },
      30_000,
    );
    assert.equal(resultOf(await exec(A(), "carol", "x")), 44);
  });

  it("refuses at start a server with other keys, and one whose store cannot be reached, in one line", async () => {
    const stranger = tempDir("sessionpool-fleet-x-");
    try {
      // What the server printed before it exited non-zero: one line.
      const said = (err: Error) => {
        assert.match(err.message, /exited with [1-9]\d* before listening/);
        const lines = err.message.split("before listening:\n")[1]!.trim().split("\n");
        assert.equal(lines.length, 1, err.message);
        return lines[0]!;
      };
      const refused = spawnServer(["--store", storeUrl, "--python-image", image], {}, stranger);
      await assert.rejects(refused, (err: Error) => {
        assert.match(said(err), /keys .* are not the ones the store was first used with/);
        return true;
      });
      const unreachable = spawnServer(
        ["--store", "postgres://sessionpool:secret@127.0.0.1:1/nowhere"],
        {},
        stranger,
      );
      await assert.rejects(unreachable, (err: Error) => {
        const line = said(err);
        assert.match(line, /Cannot reach the PostgreSQL store at 127\.0\.0\.1:1/);
        assert.doesNotMatch(line, /secret/);
        return true;
      });
    } finally {
      await run("rm", ["-rf", stranger]);
    }
  });

  it("deleting the pool through one server removes its sandboxes from every engine", async () => {
    const del = await call("DELETE", armPoolUrl(urlOf(C()), POOL, RG));
    assert.equal(del.status, 202, del.text);
    assert.equal((await waitForOperation(del.headers["azure-asyncoperation"]!))["status"], "Succeeded");
    await until("no sandbox left in either engine", async () => {
      return (await poolContainers()).length === 0 && (await poolContainers(SECOND_ENGINE_HOST)).length === 0;
    });
  });
});
