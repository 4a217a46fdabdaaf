// The rows measured on sessionpool itself, through its HTTP API against the real engine: warm claims, executions
// in an existing session, throughput, cold allocation, time to warm a pool, idle memory, custom-container ingress.
// The rows both runtimes are measured on take their id and label from the server's runtime (runtimeRowId).
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { LABEL_POOL } from "../src/runtime/labels.ts";
import { ensureWebappImage, WEBAPP_PORT } from "../test/helpers/custom-image.ts";
import { assertTwo, type TimedReply } from "./bench-client.ts";
import type { BenchPool, BenchServer } from "./bench-server.ts";
import { alternate, pairedRow } from "./extension-rows.ts";
import {
  containerCgroupMemory,
  containerCgroupPids,
  daemonsRssBytes,
  processMemory,
  processTable,
  shimPid,
  steadyMemAvailableBytes,
} from "./host-memory.ts";
import {
  type BenchRuntime,
  type Plan,
  ROW_LABELS,
  type Row,
  type RowId,
  type RuntimeRowId,
  runtimeRowId,
  runtimeRowLabel,
} from "./plan.ts";
import { summarize } from "./stats.ts";

/** Lets the engine and the new sandbox's interpreter settle after a refill before the next sample. */
const SETTLE_MS = 150;

const tag = () => randomBytes(3).toString("hex");

/** Server-side timing headers of a data-plane reply, in ms. */
function serverTimings(r: TimedReply): { allocationMs: number; containerMs: number; overallMs: number } {
  const n = (name: string) => Number(r.headers[name] ?? Number.NaN);
  return {
    allocationMs: n("x-ms-preparation-time"),
    containerMs: n("x-ms-container-execution-duration"),
    overallMs: n("x-ms-overall-execution-time"),
  };
}

/** The runtime a row measured on `s` is reported under; the bench's own servers always name theirs. */
function runtimeOf(s: BenchServer): BenchRuntime {
  if (s.runtime === undefined)
    throw new Error("the bench server was started without naming its sandbox runtime");
  return s.runtime;
}

/** The id and label of row `id` measured on `s` (the "-gvisor" twin under runsc). */
function rowOf(
  s: BenchServer,
  id: RuntimeRowId,
  label?: string,
): { id: RowId; group: "sessionpool"; label: string } {
  const runtime = runtimeOf(s);
  return { id: runtimeRowId(id, runtime), group: "sessionpool", label: runtimeRowLabel(id, runtime, label) };
}

function medianOf(values: number[]): number {
  return summarize(values.filter((v) => Number.isFinite(v))).p50Ms;
}

function breakdown(replies: TimedReply[]): Record<string, number> {
  const t = replies.map(serverTimings);
  return {
    serverOverallP50Ms: medianOf(t.map((x) => x.overallMs)),
    serverAllocationP50Ms: medianOf(t.map((x) => x.allocationMs)),
    agentExecutionP50Ms: medianOf(t.map((x) => x.containerMs)),
  };
}

/**
 * The hot path on one warm pool: new identifier -> first result (rows warm-claim), then `1+1` in an existing
 * session (existing-exec), then, unless `throughput` is false, throughput with 1, 8 and 32 sessions in parallel
 * (throughput-*).
 */
export async function measureHotPath(
  s: BenchServer,
  plan: Plan,
  record: (row: Row) => void,
  options: { throughput: boolean } = { throughput: true },
): Promise<undefined> {
  const ready = plan.warmPoolReady;
  const most = options.throughput ? Math.max(...plan.throughputSessions) : 1;
  const pool = await s.createPool(`benchwarm${tag()}`, { ready, max: most + ready + 2 }, 300_000);
  // Sessions the warm claims allocated are kept (up to what the throughput rows need) and reused there.
  const kept: string[] = [];
  try {
    await s.assertRuntime(pool);
    record(await warmClaims(s, pool, plan, kept, most));
  } catch (err) {
    record(failed(rowOf(s, "warm-claim").id, err));
  }
  try {
    record(await existingExecutions(s, pool, plan, kept));
  } catch (err) {
    record(failed(rowOf(s, "existing-exec").id, err));
  }
  if (!options.throughput) {
    await s.deletePool(pool, 300_000);
    return undefined;
  }
  try {
    for (const row of await throughput(s, pool, plan, kept)) record(row);
  } catch (err) {
    for (const id of ["throughput-1", "throughput-8", "throughput-32"] as const) record(failed(id, err));
  }
  await s.deletePool(pool, 300_000);
  return undefined;
}

async function warmClaims(
  s: BenchServer,
  pool: BenchPool,
  plan: Plan,
  kept: string[],
  keep: number,
): Promise<Row> {
  const replies: TimedReply[] = [];
  // Bounded so the whole run keeps its budget on a busy host; the row says when it stopped early.
  const deadline = performance.now() + Math.min(420_000, Math.max(60_000, plan.warmClaimSamples * 3_000));
  for (let i = 0; i < plan.warmClaimSamples && performance.now() < deadline; i++) {
    // Every sample is a warm claim: the pool is full and quiet before the request goes out.
    await s.waitReady(pool, plan.warmPoolReady, 60_000);
    await sleep(SETTLE_MS);
    const identifier = `warm-${i}-${tag()}`;
    const r = await s.execute(pool, identifier);
    assertTwo(r, "warm claim");
    replies.push(r);
    if (kept.length < keep) kept.push(identifier);
    else await s.deleteSession(pool, identifier);
  }
  return {
    ...rowOf(s, "warm-claim"),
    latency: summarize(replies.map((r) => r.ms)),
    values: { readySessionInstances: plan.warmPoolReady, ...breakdown(replies) },
    note: `client wall time of POST /executions on a keep-alive connection; pool refilled and quiet before each sample${replies.length < plan.warmClaimSamples ? `; stopped at the deadline after ${replies.length} of ${plan.warmClaimSamples} samples` : ""}`,
  };
}

async function existingExecutions(s: BenchServer, pool: BenchPool, plan: Plan, kept: string[]): Promise<Row> {
  let identifier = kept[0];
  if (identifier === undefined) {
    identifier = `existing-${tag()}`;
    assertTwo(await s.execute(pool, identifier), "first execution");
    kept.push(identifier);
  }
  await s.waitReady(pool, plan.warmPoolReady, 60_000);
  await sleep(SETTLE_MS);
  const replies: TimedReply[] = [];
  const deadline = performance.now() + 120_000;
  for (let i = 0; i < plan.existingExecSamples && performance.now() < deadline; i++) {
    const r = await s.execute(pool, identifier);
    assertTwo(r, "execution in an existing session");
    replies.push(r);
  }
  return {
    ...rowOf(s, "existing-exec"),
    latency: summarize(replies.map((r) => r.ms)),
    values: breakdown(replies),
  };
}

async function throughput(s: BenchServer, pool: BenchPool, plan: Plan, kept: string[]): Promise<Row[]> {
  const most = Math.max(...plan.throughputSessions);
  const ids = kept.slice(0, most);
  // Allocate what the warm claims did not leave (warm claims while they last, cold starts after), 4 at a time.
  const extra = Array.from({ length: most - ids.length }, (_, i) => `tput-${i}-${tag()}`);
  for (let i = 0; i < extra.length; i += 4) {
    await Promise.all(extra.slice(i, i + 4).map(async (id) => assertTwo(await s.execute(pool, id), "setup")));
  }
  ids.push(...extra);
  await s.waitReady(pool, plan.warmPoolReady, 120_000);
  await sleep(500);
  const rows: Row[] = [];
  for (const [index, nominal] of ([1, 8, 32] as const).entries()) {
    const sessions = plan.throughputSessions[index]!;
    const latencies: number[] = [];
    let failures = 0;
    const cpuBefore = s.child ? s.cpuMs() : undefined;
    const started = performance.now();
    const stopAt = started + plan.throughputDurationMs;
    await Promise.all(
      ids.slice(0, sessions).map(async (id) => {
        // Each session sequential, sessions concurrent; bounded by the duration.
        while (performance.now() < stopAt) {
          const r = await s.execute(pool, id);
          if (r.status === 200 && (r.body as { status?: string }).status === "Succeeded")
            latencies.push(r.ms);
          else failures++;
        }
      }),
    );
    const elapsedMs = performance.now() - started;
    const serverCpuMs = cpuBefore === undefined ? undefined : s.cpuMs() - cpuBefore;
    rows.push({
      id: `throughput-${nominal}`,
      group: "sessionpool",
      label: nominal === 1 ? "Throughput, 1 session" : `Throughput, ${nominal} sessions in parallel`,
      latency: summarize(latencies),
      values: {
        sessions,
        executionsPerSecond: latencies.length / (elapsedMs / 1000),
        executions: latencies.length,
        failures,
        durationMs: elapsedMs,
        ...(serverCpuMs === undefined
          ? {}
          : {
              serverCpuMsPerExecution: serverCpuMs / Math.max(1, latencies.length),
              serverCpuCores: serverCpuMs / elapsedMs,
            }),
      },
      ...(sessions !== nominal ? { note: `${plan.mode}: ${sessions} sessions instead of ${nominal}` } : {}),
    });
  }
  return rows;
}

/** The ARM api-version that defines mcpServerSettings. */
const MCP_ARM_API = "2025-10-02-preview";

/**
 * An MCP `tools/call` round trip: runPythonCodeInRemoteEnvironment with `1+1` in an environment launched before,
 * as raw JSON-RPC with x-ms-apikey on a keep-alive connection (Azure's tutorials' calls), on its own MCP pool. A
 * plain POST /executions in the same session is timed between the calls, so the row also has the plain
 * execution measured side by side with it; the report judges it against the existing-exec row.
 */
export async function measureMcpToolsCall(s: BenchServer, plan: Plan): Promise<Row> {
  const { pool, operationUrl } = await s.putPool(
    `benchmcp${tag()}`,
    { ready: 1, max: 2 },
    { mcpServerSettings: { isMcpServerEnabled: true } },
    MCP_ARM_API,
  );
  try {
    await s.waitOperation(operationUrl, 120_000);
    const keyReply = await s.client.send("POST", pool.armUrl.replace("?", "/fetchMcpServerCredentials?"));
    const apiKey = (keyReply.body as { apiKey?: string } | undefined)?.apiKey;
    if (keyReply.status !== 200 || !apiKey) {
      throw new Error(`fetchMcpServerCredentials answered ${keyReply.status}: ${keyReply.text}`);
    }
    const url = `${pool.endpoint}/mcp`;
    let id = 0;
    const toolsCall = (name: string, args: Record<string, unknown>) =>
      s.client.send(
        "POST",
        url,
        { jsonrpc: "2.0", id: ++id, method: "tools/call", params: { name, arguments: args } },
        60_000,
        { "x-ms-apikey": apiKey },
      );
    const launched = await toolsCall("launchShell", {});
    const environmentId = (
      launched.body as { result?: { structuredContent?: { environmentId?: string } } } | undefined
    )?.result?.structuredContent?.environmentId;
    if (launched.status !== 200 || !environmentId) {
      throw new Error(`launchShell answered ${launched.status}: ${launched.text}`);
    }
    const run = async () => {
      const r = await toolsCall("runPythonCodeInRemoteEnvironment", { environmentId, pythonCode: "1+1" });
      const result = (r.body as { result?: { isError?: boolean; structuredContent?: { result?: unknown } } })
        ?.result;
      if (r.status !== 200 || result?.isError === true || result?.structuredContent?.result !== "2") {
        throw new Error(`tools/call 1+1: expected a result of 2, got ${r.status} ${r.text}`);
      }
      return r.ms;
    };
    const plainRun = async () => {
      const r = await s.execute(pool, environmentId);
      assertTwo(r, "plain execution in the MCP environment");
      return r.ms;
    };
    const { a: mcp, b: plain } = await alternate(plan.existingExecSamples, run, plainRun, async () => {
      await s.waitReady(pool, 1, 60_000);
      await sleep(SETTLE_MS);
    });
    return pairedRow(
      "mcp-tools-call",
      mcp,
      plain,
      { other: "sameSessionPlainExecP50Ms", ratio: "sameSessionRatioP50" },
      "raw JSON-RPC POST {endpoint}/mcp with x-ms-apikey on a keep-alive connection, no MCP session; a plain POST /executions in the same session alternates with it (sameSession*)",
    );
  } finally {
    await s.deletePool(pool);
  }
}

/** New identifier -> first result with no ready session: the sandbox is created on the request's path. */
export async function measureColdAllocation(s: BenchServer, plan: Plan): Promise<Row> {
  const pool = await s.createPool(`benchcold${tag()}`, { ready: 0, max: 3 }, 60_000);
  try {
    const replies: TimedReply[] = [];
    const deadline = performance.now() + Math.max(60_000, plan.coldSamples * 10_000);
    for (let i = 0; i < plan.coldSamples && performance.now() < deadline; i++) {
      const identifier = `cold-${i}-${tag()}`;
      const r = await s.execute(pool, identifier);
      assertTwo(r, "cold allocation");
      if (replies.length === 0) await s.assertRuntime(pool);
      replies.push(r);
      await s.deleteSession(pool, identifier);
      await sleep(SETTLE_MS);
    }
    return {
      ...rowOf(s, "cold-allocation"),
      latency: summarize(replies.map((r) => r.ms)),
      values: breakdown(replies),
      note: "readySessionInstances 0; the session is deleted between samples",
    };
  } finally {
    await s.deletePool(pool);
  }
}

/** PUT a pool with N ready sessions -> operation Succeeded; then the pool is deleted and its sandboxes waited out. */
export async function measureWarmPoolFill(s: BenchServer, plan: Plan): Promise<Row> {
  const n = plan.warmPoolSize;
  const started = performance.now();
  const { pool, operationUrl } = await s.putPool(`benchfill${tag()}`, { ready: n, max: n });
  let fillMs = Number.NaN;
  let deleteMs = Number.NaN;
  try {
    await s.waitOperation(operationUrl, 600_000);
    fillMs = performance.now() - started;
    await s.assertRuntime(pool);
  } finally {
    const deleteStarted = performance.now();
    await s.deletePool(pool, 300_000);
    deleteMs = performance.now() - deleteStarted;
  }
  return {
    ...rowOf(s, "warm-pool-fill", `Time to warm ${n} ready sessions from an empty pool`),
    values: { sessions: n, fillMs, perSessionMs: fillMs / n, deleteMs },
    ...(n !== 100 ? { note: `${plan.mode}: ${n} sessions instead of 100` } : {}),
  };
}

/**
 * Host memory per idle PythonLTS session, everything included: MemAvailable before and after N sessions were
 * allocated (each ran 1+1) and left idle, divided by N; with the per-container cgroup, the engine shim and the
 * daemons' growth beside it so the breakdown is visible.
 *
 * Other work on a shared host moves MemAvailable too. A third reading after the pool is deleted gives the drift,
 * and the "after" reading is compared with the baseline interpolated to its time (linear drift assumed).
 *
 * Under gVisor the same readings hold everything too. The session's processes live inside the Sentry, whose memory
 * file holds their pages; the Sentry (`runsc-sandbox`), the gofer (`runsc-gofer`) and the platform's stub processes
 * are host processes that runsc puts in the container's cgroup, so the cgroup figure charges their heaps and the
 * memory file (as shmem) to the session, and MemAvailable sees all of it. What the cgroup misses is what runsc
 * processes share across sandboxes (the runsc binary's text, charged once to whichever cgroup read it first): the
 * MemAvailable figure spreads it over N. Their RSS and PSS are reported beside the cgroup (already inside it, not
 * added to the accounted sum).
 */
export async function measureIdleMemory(s: BenchServer, plan: Plan): Promise<Row> {
  const n = plan.idleSessions;
  const daemonsBefore = daemonsRssBytes(processTable());
  const tBefore = performance.now();
  const before = await steadyMemAvailableBytes();
  const pool = await s.createPool(`benchidle${tag()}`, { ready: n, max: n }, 300_000);
  let deleted = false;
  try {
    const ids = Array.from({ length: n }, (_, i) => `idle-${i}-${tag()}`);
    for (let i = 0; i < ids.length; i += 4) {
      await Promise.all(
        ids.slice(i, i + 4).map(async (id) => assertTwo(await s.execute(pool, id), "idle setup")),
      );
    }
    await sleep(plan.idleSettleMs);
    const tAfter = performance.now();
    const after = await steadyMemAvailableBytes();
    const table = processTable();
    const daemonsAfter = daemonsRssBytes(table);
    await s.assertRuntime(pool);
    const sandboxes = await s.sandboxes(pool);
    const usage: number[] = [];
    const anon: number[] = [];
    const cache: number[] = [];
    const kernel: number[] = [];
    const stats: number[] = [];
    const shimRss: number[] = [];
    const shimPss: number[] = [];
    const runscRss: number[] = [];
    const runscPss: number[] = [];
    for (const id of sandboxes) {
      const cg = containerCgroupMemory(id);
      if (cg) {
        usage.push(cg.usageBytes);
        anon.push(cg.anonBytes);
        cache.push(cg.cacheBytes);
        if (cg.kernelBytes !== undefined) kernel.push(cg.kernelBytes);
      }
      const dockerStats = await s.driver.memoryUsageBytes(id).catch(() => undefined);
      if (dockerStats !== undefined) stats.push(dockerStats);
      const pid = shimPid(table, id);
      const shim = pid === undefined ? undefined : processMemory(pid);
      if (shim) {
        shimRss.push(shim.rssBytes);
        if (shim.pssBytes !== undefined) shimPss.push(shim.pssBytes);
      }
      if (runtimeOf(s) === "runsc") {
        // The Sentry and the gofer; the stub processes share the Sentry's memory file and add little.
        const runsc = containerCgroupPids(id)
          .filter((pid) => /^runsc-/.test(table.get(pid)?.[0] ?? ""))
          .map((pid) => processMemory(pid))
          .filter((m) => m !== undefined);
        runscRss.push(runsc.reduce((sum, m) => sum + m.rssBytes, 0));
        runscPss.push(runsc.reduce((sum, m) => sum + (m.pssBytes ?? m.rssBytes), 0));
      }
    }
    await s.deletePool(pool, 300_000);
    deleted = true;
    await sleep(Math.min(plan.idleSettleMs, 2_000));
    const tEnd = performance.now();
    const end = await steadyMemAvailableBytes();
    const baselineAtAfter = before + ((end - before) * (tAfter - tBefore)) / (tEnd - tBefore);
    const mean = (xs: number[]) => (xs.length === 0 ? Number.NaN : xs.reduce((a, b) => a + b, 0) / xs.length);
    const daemonsGrowth = (daemonsAfter - daemonsBefore) / n;
    const accounted = mean(usage) + (mean(shimPss) || mean(shimRss)) + Math.max(0, daemonsGrowth);
    return {
      ...rowOf(s, "idle-memory"),
      values: {
        sessions: n,
        sandboxes: sandboxes.length,
        hostBytesPerSession: (baselineAtAfter - after) / n,
        hostRawDeltaBytesPerSession: (before - after) / n,
        hostDriftBytes: before - end,
        accountedBytesPerSession: accounted,
        cgroupUsageBytesPerSession: mean(usage),
        cgroupAnonBytesPerSession: mean(anon),
        cgroupCacheBytesPerSession: mean(cache),
        cgroupKernelBytesPerSession: mean(kernel),
        dockerStatsBytesPerSession: mean(stats),
        shimRssBytesPerSession: mean(shimRss),
        shimPssBytesPerSession: mean(shimPss),
        daemonsRssGrowthBytesPerSession: daemonsGrowth,
        ...(runscRss.length > 0
          ? { runscRssBytesPerSession: mean(runscRss), runscPssBytesPerSession: mean(runscPss) }
          : {}),
      },
      note: "host = MemAvailable drop / N against a baseline interpolated between readings before the pool and after its deletion; accounted = cgroup + shim PSS + daemon growth",
    };
  } finally {
    if (!deleted) await s.deletePool(pool, 300_000);
  }
}

/**
 * Custom-container ingress: the same request through the data plane's proxy and straight to the container.
 * Custom-container pools are not implemented yet, so both rows say so. To fill in: create a CustomContainer pool
 * with an HTTP echo image and ingress.targetPort, GET {endpoint}/some/path?identifier=X through the proxy and
 * GET http://{sandbox address}:{targetPort}/some/path directly (address from s.driver.inspect), N samples each.
 */
/**
 * Custom-container ingress: GET /health of a small HTTP server in a CustomContainer session, through the pool
 * endpoint (auth, identifier lookup, proxy) and straight to the container's address, on keep-alive connections.
 */
export async function measureCustomIngress(s: BenchServer, plan: Plan): Promise<Row[]> {
  const image = await ensureWebappImage();
  const { pool, operationUrl } = await s.putPool(
    `benchcustom${tag()}`,
    { ready: 1, max: 2 },
    {
      containerType: "CustomContainer",
      customContainerTemplate: {
        containers: [{ name: "webapp", image, resources: { cpu: 1, memory: "1Gi" } }],
        ingress: { targetPort: WEBAPP_PORT },
      },
    },
  );
  try {
    await s.waitOperation(operationUrl, 300_000);
    const identifier = `ingress-${tag()}`;
    const proxied = `${pool.endpoint}/health?identifier=${identifier}`;
    const first = await s.client.send("GET", proxied);
    if (first.status !== 200) throw new Error(`GET /health through the proxy answered ${first.status}`);
    // The session's container: the one whose hostname /whoami reports (Docker sets it to the short id).
    const who = (await s.client.send("GET", `${pool.endpoint}/whoami?identifier=${identifier}`)).body as {
      hostname?: string;
    };
    const sandboxes = await s.driver.list({ [LABEL_POOL]: pool.key });
    const mine = sandboxes.find((sb) => who.hostname !== undefined && sb.id.startsWith(who.hostname));
    if (!mine?.address) throw new Error("could not find the session's container address");
    const direct = `http://${mine.address}:${WEBAPP_PORT}/health`;
    const n = plan.existingExecSamples;
    const time = async (url: string) => {
      for (let i = 0; i < 20; i++) await s.client.send("GET", url); // warm connections on both paths
      const samples: number[] = [];
      for (let i = 0; i < n; i++) {
        const r = await s.client.send("GET", url);
        if (r.status !== 200) throw new Error(`GET ${url} answered ${r.status}`);
        samples.push(r.ms);
      }
      return summarize(samples);
    };
    const viaProxy = await time(proxied);
    const straight = await time(direct);
    return [
      {
        id: "custom-ingress-proxy",
        group: "sessionpool",
        label: "Custom container: request through the proxy",
        latency: viaProxy,
        note: "GET /health of a stdlib Python HTTP server through the pool endpoint (auth, identifier, proxy)",
      },
      {
        id: "custom-ingress-direct",
        group: "sessionpool",
        label: "Custom container: request straight to the container",
        latency: straight,
        values: { proxyOverheadP50Ms: viaProxy.p50Ms - straight.p50Ms },
      },
    ];
  } finally {
    await s.deletePool(pool);
  }
}

/** The row for a measurement that threw: it keeps its place in the report with the reason. */
export function failed(id: RowId, err: unknown): Row {
  return { id, ...ROW_LABELS[id], unavailable: `failed: ${(err as Error).message ?? String(err)}` };
}
