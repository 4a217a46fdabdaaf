// A fleet's forwarding hop next to the local path (issue 19): two servers on one private PostgreSQL and the same
// engine, a session held by server B, and 1+1 in it sent through server A (forwarded to B) and straight to B,
// alternately in one run so the machine's speed cancels out. The hop does not depend on the sandbox runtime: the
// row is measured once, under the runtime it is given.
import { randomBytes } from "node:crypto";
import { copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  POSTGRES_SKIP,
  postgresAvailable,
  startPostgres,
  type TestPostgres,
} from "../test/helpers/postgres.ts";
import { assertTwo, type TimedReply } from "./bench-client.ts";
import { type BenchPool, BenchServer } from "./bench-server.ts";
import { alternate, pairedRow } from "./extension-rows.ts";
import { type BenchRuntime, type Plan, type Row, unavailableRow } from "./plan.ts";

const SETTLE_MS = 150;
/** The files a server of a fleet needs from the first one before its first start (docs/fleet.md). */
const FLEET_KEYS = ["secrets.key", "token-signing.key"];
const tag = () => randomBytes(3).toString("hex");

/** A member of the fleet as `GET /fleet` shows it. */
interface FleetMember {
  id: string;
  address: string;
  ready: Record<string, number>;
}

interface FleetView {
  self: string;
  members: FleetMember[];
}

async function fleetView(s: BenchServer): Promise<FleetView> {
  const r = await s.client.send("GET", `${s.url}/fleet`);
  if (r.status !== 200) throw new Error(`GET /fleet answered ${r.status}: ${r.text}`);
  return r.body as FleetView;
}

/** Polls `check` every 50 ms until it answers true; throws `what` past the deadline. */
async function until(check: () => Promise<boolean>, timeoutMs: number, what: () => string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`${what()} after ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** The value a succeeded execution answered. */
function resultOf(reply: TimedReply, what: string): unknown {
  const body = reply.body as { status?: string; result?: { executionResult?: unknown } } | undefined;
  if (reply.status !== 200 || body?.status !== "Succeeded")
    throw new Error(`${what}: answered ${reply.status} ${reply.text}`);
  return body.result?.executionResult;
}

/**
 * 1+1 in a session held by server B of a two-server fleet, sent through server A (forwarded to B) and straight to
 * B, `plan.existingExecSamples` times each, alternately. The row's latency is the forwarded path's; its values
 * carry the local p50 and the forwarded/local ratio. Informational: DESIGN.md sets no target for it.
 * `onServer` learns each server as it starts, so an interrupted run can close it.
 */
export async function measureForwardedExec(
  plan: Plan,
  runtime: BenchRuntime,
  onServer: (s: BenchServer) => void = () => {},
): Promise<Row> {
  if (!postgresAvailable()) return unavailableRow("fleet-forwarded-exec", POSTGRES_SKIP);
  let postgres: TestPostgres | undefined;
  let a: BenchServer | undefined;
  let b: BenchServer | undefined;
  try {
    postgres = await startPostgres();
    const store = await postgres.createDatabase(`benchfleet${tag()}`);
    const token = randomBytes(24).toString("hex");
    a = await BenchServer.start(runtime, { args: ["--store", store], token });
    onServer(a);
    // The first server made the fleet's keys; a server with other keys is refused at start.
    const keysOfA = join(a.dataDir, "keys");
    b = await BenchServer.start(runtime, {
      args: ["--store", store],
      token,
      prepare: (dataDir) => {
        mkdirSync(join(dataDir, "keys"), { recursive: true, mode: 0o700 });
        for (const f of FLEET_KEYS) copyFileSync(join(keysOfA, f), join(dataDir, "keys", f));
      },
    });
    onServer(b);
    const A = a;
    const B = b;
    const selfB = (await fleetView(B)).self;
    // Both servers in A's view before the pool exists, so each keeps its share of the ready sandboxes from the start.
    await until(
      async () => (await fleetView(A)).members.length === 2,
      30_000,
      () => "server A does not see server B in the fleet",
    );

    const pool = await A.createPool(`benchfleet${tag()}`, { ready: 2, max: 6 }, 300_000);
    // The same pool through B: its data plane at B's address.
    if (!pool.endpoint.startsWith(A.url)) throw new Error(`unexpected pool endpoint ${pool.endpoint}`);
    const atB: BenchPool = { ...pool, endpoint: B.url + pool.endpoint.slice(A.url.length) };
    const settle = async () => {
      // readySessionInstances 2 over two servers: one ready sandbox each, nothing being created.
      await A.waitReady(pool, 1, 120_000);
      await B.waitReady(atB, 1, 120_000);
      await sleep(SETTLE_MS);
    };
    await settle();
    // B's own heartbeat (as A reads it) says it holds a ready sandbox: the first request lands on B, locally.
    await until(
      async () => ((await fleetView(A)).members.find((m) => m.id === selfB)?.ready[pool.key] ?? 0) >= 1,
      30_000,
      () => "server B's heartbeat shows no ready sandbox of the pool",
    );

    const id = `fwd-${tag()}`;
    if (resultOf(await B.execute(atB, id, "v = 7\n1+1"), "first request, to B") !== 2)
      throw new Error("the first request to B did not answer 2");
    // Through A, the session must be B's: a fresh session on A would not know v.
    const probe = async (what: string) => {
      const v = resultOf(await A.execute(pool, id, "v"), what);
      if (v !== 7)
        throw new Error(
          `${what}: A answered v = ${JSON.stringify(v)}, not 7: the request was not forwarded to B`,
        );
    };
    await probe("reading v through A");

    const forwarded = async () => {
      const r = await A.execute(pool, id);
      assertTwo(r, "1+1 through A (forwarded to B)");
      return r.ms;
    };
    const local = async () => {
      const r = await B.execute(atB, id);
      assertTwo(r, "1+1 straight to B");
      return r.ms;
    };
    const times = await alternate(plan.existingExecSamples, forwarded, local, settle);
    await probe("reading v through A after the samples");
    await A.deletePool(pool);
    return pairedRow(
      "fleet-forwarded-exec",
      times.a,
      times.b,
      { other: "localP50Ms", ratio: "forwardedRatioP50" },
      `two servers (${runtime}) on one PostgreSQL and one engine; 1+1 in a session held by B, POST /executions through A (forwarded to B) alternating with the same POST straight to B, client wall time`,
    );
  } finally {
    // A deletes the pool it created (every server removes its sandboxes) before both stop.
    await a?.close();
    await b?.close();
    await postgres?.stop();
  }
}
