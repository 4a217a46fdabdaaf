// sessionpool's extensions next to the paths they extend, measured alternately in one pool so the machine's
// speed cancels out: a personalised claim (PUT /session with environment variables, then 1+1) beside a plain
// warm claim, and a streamed 1+1 (Accept: text/event-stream, to the final result event) beside a buffered one.
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { assertTwo, type TimedReply } from "./bench-client.ts";
import type { BenchServer } from "./bench-server.ts";
import { type Plan, ROW_LABELS, type Row, type RowId } from "./plan.ts";
import { summarize } from "./stats.ts";

const SETTLE_MS = 150;
const DATA_API = "2025-10-02-preview";
const tag = () => randomBytes(3).toString("hex");
const ENV = [
  { name: "TENANT", value: "contoso" },
  { name: "REGION", value: "westeurope" },
];

/**
 * Times `a` and `b` one after the other, `samples` times each (two minutes at most), after `warm` untimed rounds
 * of both and `settle` (e.g. waiting for the pool to refill): two paths measured side by side in one run.
 */
export async function alternate(
  samples: number,
  a: () => Promise<number>,
  b: () => Promise<number>,
  settle: () => Promise<void>,
  warm = 5,
): Promise<{ a: number[]; b: number[] }> {
  for (let i = 0; i < warm; i++) {
    await a();
    await b();
  }
  await settle();
  const times = { a: [] as number[], b: [] as number[] };
  const deadline = performance.now() + 120_000;
  for (let i = 0; i < samples && performance.now() < deadline; i++) {
    times.a.push(await a());
    times.b.push(await b());
  }
  return times;
}

/** A row of `a`'s times with `b`'s p50 beside it and their ratio (names of the two values in `keys`). */
export function pairedRow(
  id: RowId,
  a: number[],
  b: number[],
  keys: { other: string; ratio: string },
  note: string,
): Row {
  const aP50 = summarize(a).p50Ms;
  const bP50 = summarize(b).p50Ms;
  return {
    id,
    group: "sessionpool",
    label: ROW_LABELS[id].label,
    latency: summarize(a),
    values: { [keys.other]: bP50, [keys.ratio]: aP50 / bP50 },
    note,
  };
}

/** PUT /session with two variables, then 1+1 in it: the client's total, against a plain warm claim's. */
export async function measurePersonalisedClaim(s: BenchServer, plan: Plan): Promise<Row> {
  const pool = await s.createPool(`benchenv${tag()}`, { ready: 2, max: 6 }, 300_000);
  try {
    const personalised: number[] = [];
    const plain: number[] = [];
    const samples = Math.max(3, Math.ceil(plan.warmClaimSamples / 2));
    const deadline = performance.now() + Math.min(300_000, Math.max(60_000, samples * 6_000));
    for (let i = 0; i < samples && performance.now() < deadline; i++) {
      await s.waitReady(pool, 2, 60_000);
      await sleep(SETTLE_MS);
      const id = `env-${i}-${tag()}`;
      const put = await s.client.send(
        "PUT",
        `${pool.endpoint}/session?api-version=${DATA_API}&identifier=${id}`,
        { environmentVariables: ENV },
        120_000,
        pool.credentials,
      );
      if (put.status !== 201) throw new Error(`PUT /session answered ${put.status}: ${put.text}`);
      const first = await s.execute(pool, id, "import os; int(os.environ['TENANT'] == 'contoso') + 1");
      assertTwo(first, "first result in a personalised session");
      personalised.push(put.ms + first.ms);
      await s.deleteSession(pool, id);

      await s.waitReady(pool, 2, 60_000);
      await sleep(SETTLE_MS);
      const plainId = `plain-${i}-${tag()}`;
      const r = await s.execute(pool, plainId);
      assertTwo(r, "plain warm claim");
      plain.push(r.ms);
      await s.deleteSession(pool, plainId);
    }
    return pairedRow(
      "personalised-claim",
      personalised,
      plain,
      { other: "plainWarmClaimP50Ms", ratio: "ratioToPlainP50" },
      "PUT /session with 2 variables + POST /executions reading one, client wall time; a plain warm claim (POST /executions, new identifier) alternates with it in the same pool, refilled and quiet before each sample",
    );
  } finally {
    await s.deletePool(pool);
  }
}

/** 1+1 with Accept: text/event-stream, to the end of the stream (the result event), against a buffered 1+1. */
export async function measureStreamedExec(s: BenchServer, plan: Plan): Promise<Row> {
  const pool = await s.createPool(`benchsse${tag()}`, { ready: 1, max: 2 }, 300_000);
  try {
    const id = `sse-${tag()}`;
    assertTwo(await s.execute(pool, id), "first execution");
    const url = s.execUrl(pool, id);
    const streamed = async (): Promise<number> => {
      const r: TimedReply = await s.client.send(
        "POST",
        url,
        { code: "1+1", timeoutInSeconds: 60 },
        60_000,
        pool.credentials,
        {
          accept: "text/event-stream",
        },
      );
      const result = /event: result\ndata: (.*)\n/.exec(r.text)?.[1];
      const value =
        result === undefined ? undefined : (JSON.parse(result) as { result?: { executionResult?: unknown } });
      if (r.status !== 200 || value?.result?.executionResult !== 2)
        throw new Error(`a streamed 1+1 answered ${r.status}: ${r.text.slice(0, 300)}`);
      return r.ms;
    };
    const buffered = async () => {
      const r = await s.execute(pool, id);
      assertTwo(r, "buffered execution");
      return r.ms;
    };
    const { a: sse, b: plain } = await alternate(plan.existingExecSamples, streamed, buffered, async () => {
      await s.waitReady(pool, 1, 60_000);
      await sleep(SETTLE_MS);
    });
    return pairedRow(
      "streamed-exec",
      sse,
      plain,
      { other: "sameSessionBufferedP50Ms", ratio: "sameSessionRatioP50" },
      "POST /executions with Accept: text/event-stream, client wall time to the end of the stream (the result event); a buffered POST in the same session alternates with it",
    );
  } finally {
    await s.deletePool(pool);
  }
}
