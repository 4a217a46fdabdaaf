// `npm run bench [-- --quick | --smoke] [--out DIR]`: measures sessionpool on the real server and the real Docker
// engine next to the naive way, Jupyter's kernel and the physical floor, in one run; prints a table, writes
// DIR/latest.json and DIR/latest.svg (DIR defaults to bench/results). Cleans up what it made, even on failure.
// sessionpool's rows are measured under runc, then the runtime rows again under gVisor on a second server started
// once the first has closed (never both at once: their sandboxes would compete for the same cores).
// Between the two, a request forwarded within a fleet: two servers of their own on a private PostgreSQL.

import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { BenchServer } from "./bench-server.ts";
import { renderChart } from "./chart.ts";
import { measurePersonalisedClaim, measureStreamedExec } from "./extension-rows.ts";
import { measureForwardedExec } from "./fleet-rows.ts";
import { machineInfo } from "./machine.ts";
import {
  measureHttpLoopback,
  measureJupyter,
  measureNaiveDockerRun,
  measurePythonPipe,
  SANDBOX_IMAGE,
} from "./peer-rows.ts";
import {
  type BenchRuntime,
  type Mode,
  PLANS,
  type Plan,
  ROW_IDS,
  type Row,
  type RowId,
  RUNTIME_ROWS,
  type RuntimeRowId,
  runtimeRowId,
  unavailableRow,
} from "./plan.ts";
import { killAll } from "./processes.ts";
import {
  type BenchReport,
  computeGvisorPrice,
  computeRatios,
  evaluateTargets,
  renderTable,
} from "./report.ts";
import {
  failed,
  measureColdAllocation,
  measureCustomIngress,
  measureHotPath,
  measureIdleMemory,
  measureMcpToolsCall,
  measureWarmPoolFill,
} from "./sessionpool-rows.ts";

const { values: flags } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    smoke: { type: "boolean", default: false },
    out: { type: "string" },
  },
  strict: true,
});
const mode: Mode = flags.smoke ? "smoke" : flags.quick ? "quick" : "full";
const plan = PLANS[mode];
const outDir = resolve(flags.out ?? join(import.meta.dirname, "results"));

const rows: Row[] = [];
const record = (row: Row) => {
  rows.push(row);
  const what = row.unavailable
    ? `unavailable: ${row.unavailable}`
    : row.latency
      ? `p50 ${row.latency.p50Ms.toFixed(3)} ms (n=${row.latency.n})`
      : JSON.stringify(row.values);
  process.stderr.write(`bench: ${row.id}: ${what}\n`);
};

async function step(ids: RowId[], label: string, fn: () => Promise<Row | Row[] | undefined>): Promise<void> {
  const t = performance.now();
  process.stderr.write(`bench: ${label}...\n`);
  try {
    const out = await fn();
    if (Array.isArray(out)) out.forEach(record);
    else if (out) record(out);
  } catch (err) {
    for (const id of ids) {
      if (!rows.some((r) => r.id === id)) record(failed(id, err));
    }
  }
  process.stderr.write(`bench: ${label}: ${((performance.now() - t) / 1000).toFixed(1)} s\n`);
}

function imageMissing(): string | undefined {
  try {
    execFileSync("docker", ["image", "inspect", SANDBOX_IMAGE], { stdio: "ignore", timeout: 30_000 });
    return undefined;
  } catch {
    return `the Docker engine or the image ${SANDBOX_IMAGE} is not available (build it with bash scripts/build-images.sh)`;
  }
}

/** The server running now, if any: the signal handler closes it. */
let server: BenchServer | undefined;
/** The fleet row's two servers, while it runs (closing one twice is a no-op). */
const fleetServers = new Set<BenchServer>();
let cleaned: Promise<void> | undefined;
const cleanup = () => {
  cleaned ??= (async () => {
    killAll();
    await server?.close();
    for (const s of fleetServers) await s.close();
  })();
  return cleaned;
};
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    process.stderr.write(`bench: ${signal}: cleaning up\n`);
    void cleanup().finally(() => process.exit(130));
  });
}

/**
 * The rows measured on a server whose sandboxes run under `runtime`: the runtime rows (ids from runtimeRowId), and
 * under runc also throughput and custom-container ingress. The server is closed before this returns.
 */
async function measureOnServer(runtime: BenchRuntime, p: Plan): Promise<void> {
  let startError: string | undefined;
  try {
    server = await BenchServer.start(runtime);
  } catch (err) {
    startError = (err as Error).message;
    process.stderr.write(`bench: the ${runtime} server did not start: ${startError}\n`);
  }
  const s = server;
  const id = (row: RuntimeRowId) => runtimeRowId(row, runtime);
  const need = (ids: RowId[], label: string, fn: (s: BenchServer) => Promise<Row | Row[] | undefined>) =>
    step(ids, `${label} (${runtime})`, () =>
      s ? fn(s) : Promise.reject(new Error(`the ${runtime} server did not start: ${startError}`)),
    );
  const runc = runtime === "runc";
  try {
    await need(
      [
        id("warm-claim"),
        id("existing-exec"),
        ...(runc ? (["throughput-1", "throughput-8", "throughput-32"] as const) : []),
      ],
      runc ? "warm claims, existing session, throughput" : "warm claims, existing session",
      (x) => measureHotPath(x, p, record, { throughput: runc }),
    );
    if (runc) {
      await need(["mcp-tools-call"], "MCP tools/call", (x) => measureMcpToolsCall(x, p));
      await need(["streamed-exec"], "streamed executions", (x) => measureStreamedExec(x, p));
      await need(["personalised-claim"], "personalised claims", (x) => measurePersonalisedClaim(x, p));
    }
    await need([id("cold-allocation")], "cold allocation", (x) => measureColdAllocation(x, p));
    await need([id("warm-pool-fill")], `warming ${p.warmPoolSize} sessions`, (x) =>
      measureWarmPoolFill(x, p),
    );
    await need([id("idle-memory")], "idle memory", (x) => measureIdleMemory(x, p));
    if (runc) {
      await need(["custom-ingress-proxy", "custom-ingress-direct"], "custom-container ingress", (x) =>
        measureCustomIngress(x, p),
      );
    }
  } finally {
    await s?.close();
    server = undefined;
  }
}

const started = performance.now();
const date = new Date().toISOString();
const machine = machineInfo();
try {
  await step(["floor-python-pipe"], "floor: Python pipe", () => measurePythonPipe(plan));
  await step(["floor-http-keepalive"], "floor: loopback HTTP", () => measureHttpLoopback(plan));
  await step(
    ["jupyter-kernel-start", "jupyter-start-first-result", "jupyter-execute"],
    "Jupyter kernel",
    () => measureJupyter(plan),
  );
  const missing = imageMissing();
  if (missing) {
    for (const id of ROW_IDS) {
      if (!rows.some((r) => r.id === id)) record(unavailableRow(id, missing));
    }
  } else {
    await step(["naive-docker-run"], "naive docker run", () => measureNaiveDockerRun(plan));
    await measureOnServer("runc", plan);
    // Two servers of a fleet, after the runc server closed (every plan: about 7 s); under runc only: the hop it
    // adds is HTTP between servers, the same whatever runtime the session's sandbox has.
    await step(["fleet-forwarded-exec"], "a request forwarded within a fleet (runc)", () =>
      measureForwardedExec(plan, "runc", (s) => fleetServers.add(s)),
    );
    const gvisorMissing = await BenchServer.runtimeUnavailable("runsc");
    if (gvisorMissing === undefined) await measureOnServer("runsc", plan);
    else {
      for (const id of RUNTIME_ROWS)
        record(unavailableRow(runtimeRowId(id, "runsc"), `gVisor: ${gvisorMissing}`));
    }
  }
} finally {
  await cleanup();
}

const ordered = ROW_IDS.map(
  (id) => rows.find((r) => r.id === id) ?? unavailableRow(id, "not measured in this run"),
);
const report: BenchReport = {
  mode,
  date,
  durationMs: performance.now() - started,
  machine: { ...machine, loadAverage1mAtEnd: loadavg()[0] ?? 0 },
  rows: ordered,
  targets: evaluateTargets(ordered),
  ratios: computeRatios(ordered),
  gvisorPrice: computeGvisorPrice(ordered),
};
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, "latest.json"), `${JSON.stringify(report, null, 2)}\n`);
writeFileSync(join(outDir, "latest.svg"), renderChart(report));
process.stdout.write(
  `${renderTable(report)}\n\nWrote ${join(outDir, "latest.json")} and ${join(outDir, "latest.svg")}\n`,
);
