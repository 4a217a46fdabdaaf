// `npm run load [-- --duration 180 --clients 200 --pools 3 ...]`: the bounded load test. Runs the real server as a
// child process (`bin/sessionpool serve`) on loopback with the Docker engine, creates several pools, and drives N
// concurrent clients for the duration through a mix of first use of identifiers, executions, uploads, downloads,
// file and session lists and session ends. Passes when there is no 5xx, no request past its deadline, no
// transport error, no unexpected answer, the server's memory stays flat and the engine agrees with the server
// afterwards. Prints a table, writes OUT/load-latest.json (OUT defaults to bench/results), exits 1 on a failed
// check. Cleans up what it made, even on failure or Ctrl-C.
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { BenchClient } from "./bench-client.ts";
import { type BenchPool, BenchServer } from "./bench-server.ts";
import { LoadRecorder } from "./load-recorder.ts";
import {
  evaluateChecks,
  type LoadOptions,
  type LoadReport,
  type PoolAfterRun,
  renderLoadTable,
} from "./load-report.ts";
import { identifiersFor, type LoadContainerType, type LoadPool, runWorkload } from "./load-workload.ts";
import { machineInfo } from "./machine.ts";
import { machineCpu, memoryVerdict, ProcSampler } from "./proc-sampler.ts";

const TYPES: LoadContainerType[] = ["PythonLTS", "NodeLTS", "Shell"];
const MiB = 1024 * 1024;
const POOL_READY_TIMEOUT_MS = 300_000;
const SETTLE_TIMEOUT_MS = 60_000;
const MEMORY_WINDOW_S = 10;

const { values: flags } = parseArgs({
  options: {
    duration: { type: "string", default: "180" },
    clients: { type: "string", default: "200" },
    pools: { type: "string", default: "3" },
    types: { type: "string", default: TYPES.join(",") },
    "max-sessions": { type: "string", default: "10" },
    "ready-sessions": { type: "string", default: "3" },
    identifiers: { type: "string" },
    churn: { type: "string", default: "0.3" },
    think: { type: "string", default: "0" },
    deadline: { type: "string", default: "60" },
    warmup: { type: "string" },
    "memory-bound": { type: "string", default: "64" },
    "min-ok": { type: "string", default: "10" },
    "log-level": { type: "string", default: "warn" },
    out: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
  strict: true,
});

if (flags.help) {
  process.stdout.write(`Usage: node bench/load.ts [options]

  --duration S        seconds of load (default 180)
  --clients N         concurrent clients, each one request at a time (default 200)
  --pools N           pools; clients are spread over them (default 3)
  --types LIST        container types, cycled over the pools (default ${TYPES.join(",")})
  --max-sessions N    maxConcurrentSessions of each pool (default 10)
  --ready-sessions N  readySessionInstances of each pool (default 3)
  --identifiers N     identifiers per pool (default max-sessions + 2, so the limit is reached: 429s)
  --churn R           sessions ended per second across the pools (default 0.3; each costs a sandbox start)
  --think MS          random pause of up to MS between one client's requests (default 0)
  --deadline S        every request's deadline; one past it fails the run (default 60)
  --warmup S          seconds before the memory baseline (default half the run, 20 to 60)
  --memory-bound MiB  allowed growth of the server's RSS after the warm-up (default 64)
  --min-ok N          ok answers each kind of request needs (default 10)
  --log-level LEVEL   the server's log level (default warn: info logs two lines per request)
  --out DIR           where load-latest.json goes (default bench/results)
`);
  process.exit(0);
}

function num(name: string, text: string | undefined, min: number): number {
  const v = Number(text);
  if (!Number.isFinite(v) || v < min) {
    process.stderr.write(`load: --${name} must be a number >= ${min} (got ${text})\n`);
    process.exit(2);
  }
  return v;
}

const durationS = num("duration", flags.duration, 1);
const maxSessions = Math.floor(num("max-sessions", flags["max-sessions"], 1));
const types = flags.types.split(",").map((t) => t.trim()) as LoadContainerType[];
for (const t of types) {
  if (!TYPES.includes(t)) {
    process.stderr.write(`load: --types takes ${TYPES.join(", ")} (got ${t})\n`);
    process.exit(2);
  }
}
const options: LoadOptions = {
  durationS,
  clients: Math.floor(num("clients", flags.clients, 1)),
  pools: Math.floor(num("pools", flags.pools, 1)),
  types,
  maxSessions,
  readySessions: Math.floor(num("ready-sessions", flags["ready-sessions"], 0)),
  identifiersPerPool: Math.floor(num("identifiers", flags.identifiers ?? String(maxSessions + 2), 1)),
  churnPerS: num("churn", flags.churn, 0),
  thinkMs: num("think", flags.think, 0),
  requestTimeoutS: num("deadline", flags.deadline, 1),
  warmupS: num("warmup", flags.warmup ?? String(Math.min(60, Math.max(20, Math.round(durationS / 2)))), 0),
  memoryBoundMiB: num("memory-bound", flags["memory-bound"], 0),
  minOkPerKind: num("min-ok", flags["min-ok"], 0),
  serverLogLevel: flags["log-level"],
};
const outDir = resolve(flags.out ?? join(import.meta.dirname, "results"));

let server: BenchServer | undefined;
const clients: BenchClient[] = [];
let cleaned: Promise<void> | undefined;
const cleanup = () => {
  cleaned ??= (async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    await server?.close();
  })();
  return cleaned;
};
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    process.stderr.write(`load: ${signal}: cleaning up\n`);
    void cleanup().finally(() => process.exit(130));
  });
}

const say = (text: string) => process.stderr.write(`load: ${text}\n`);
const date = new Date().toISOString();
const machine = machineInfo();
let report: LoadReport;
try {
  say(`starting the server (bin/sessionpool serve --log-level ${options.serverLogLevel})`);
  const s = await BenchServer.spawn(["--log-level", options.serverLogLevel]);
  server = s;
  const child = s.child!;
  let errorLogLines = 0;
  let partial = "";
  child.process.stdout!.on("data", (d: Buffer) => {
    const lines = (partial + d.toString()).split("\n");
    partial = lines.pop() ?? "";
    errorLogLines += lines.filter((l) => /"level":(50|60)\b/.test(l)).length;
  });
  let exitedDuringRun = false;
  void child.exited.then(() => {
    if (!cleaned) exitedDuringRun = true;
  });

  say(`creating ${options.pools} pools`);
  const pools: LoadPool[] = await Promise.all(
    Array.from({ length: options.pools }, async (_, i) => {
      const type = types[i % types.length]!;
      const { pool, operationUrl } = await s.putPool(
        `load${type.toLowerCase().replace("lts", "")}${i}`,
        { ready: options.readySessions, max: maxSessions },
        {
          containerType: type,
          // Longer than any run: sessions end by the clients' choice (churn), never by cooldown.
          dynamicPoolConfiguration: {
            lifecycleConfiguration: { lifecycleType: "Timed", cooldownPeriodInSeconds: 3600 },
          },
        },
      );
      await s.waitOperation(operationUrl, POOL_READY_TIMEOUT_MS, 200);
      const client = new BenchClient(await s.poolToken(pool), Math.ceil(options.clients / options.pools) + 4);
      clients.push(client);
      return { pool, type, client, maxSessions, identifiers: identifiersFor(i, options.identifiersPerPool) };
    }),
  );

  say(`${options.clients} clients for ${durationS} s`);
  const recorder = new LoadRecorder();
  const sampler = new ProcSampler(child.pid);
  const cpuAtStart = { machine: machineCpu(), driver: process.cpuUsage() };
  const started = performance.now();
  const progress = setInterval(() => {
    const recent = recorder.seconds.slice(-16, -1);
    const perS = recent.reduce((a, x) => a + x.requests, 0) / Math.max(recent.length, 1);
    const rss = sampler.samples.at(-1)?.rssBytes ?? 0;
    say(
      `${((performance.now() - started) / 1000).toFixed(0)} s: ${perS.toFixed(0)} requests/s, RSS ${(rss / MiB).toFixed(0)} MiB`,
    );
  }, 15_000);
  try {
    await runWorkload(
      pools,
      {
        clients: options.clients,
        durationMs: durationS * 1000,
        requestTimeoutMs: options.requestTimeoutS * 1000,
        churnPerS: options.churnPerS,
        thinkMs: options.thinkMs,
      },
      recorder,
    );
  } finally {
    clearInterval(progress);
    sampler.stop();
  }
  const loadS = (performance.now() - started) / 1000;
  const machineAtEnd = machineCpu();
  const driverUs = process.cpuUsage(cpuAtStart.driver);

  say("load done; waiting for the pools to settle");
  const after = await Promise.all(pools.map((lp) => settle(s, lp)));
  const ops = recorder.summaries();
  const totals = Object.fromEntries(
    (["ok", "limited", "unexpected", "server-error", "hung", "transport"] as const).map((o) => [
      o,
      ops.reduce((a, op) => a + op.outcomes[o], 0),
    ]),
  ) as LoadReport["totals"];
  const requests = ops.reduce((a, op) => a + op.requests, 0);
  const procs = sampler.samples;
  // The memory verdict covers the load phase only; the samples are relative to the sampler's start.
  const memory = memoryVerdict(
    procs.filter((p) => p.atS <= loadS + 1),
    { warmupS: options.warmupS, windowS: MEMORY_WINDOW_S, boundBytes: options.memoryBoundMiB * MiB },
  );
  const base: Omit<LoadReport, "checks" | "passed"> = {
    date,
    machine,
    options,
    loadS,
    requests,
    requestsPerS: requests / loadS,
    maxInFlight: recorder.maxInFlight,
    totals,
    ops,
    memory,
    cpu: {
      serverS: (procs.at(-1)?.cpuS ?? 0) - (procs[0]?.cpuS ?? 0),
      driverS: (driverUs.user + driverUs.system) / 1e6,
      machineBusyS: machineAtEnd.busyS - cpuAtStart.machine.busyS,
      machineTotalS: machineAtEnd.totalS - cpuAtStart.machine.totalS,
    },
    server: {
      pid: child.pid,
      fdsAtStart: procs[0]?.fds ?? 0,
      fdsPeak: Math.max(0, ...procs.map((p) => p.fds)),
      fdsAtEnd: procs.at(-1)?.fds ?? 0,
      errorLogLines,
      exitedDuringRun,
    },
    pools: after,
    samples: recorder.samples,
    rss: procs.map((p) => ({
      atS: Math.round(p.atS * 10) / 10,
      rssMiB: Math.round((p.rssBytes / MiB) * 10) / 10,
      fds: p.fds,
    })),
    seconds: recorder.seconds,
  };
  const checks = evaluateChecks(base);
  report = { ...base, checks, passed: checks.every((c) => c.passed) };
} catch (err) {
  say(`the run could not complete: ${(err as Error).stack ?? err}`);
  if (server?.child)
    say(`server output (last lines):\n${server.child.output().split("\n").slice(-40).join("\n")}`);
  await cleanup();
  process.exit(1);
} finally {
  await cleanup();
}

mkdirSync(outDir, { recursive: true });
const file = join(outDir, "load-latest.json");
writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
process.stdout.write(`${renderLoadTable(report)}\n\nWrote ${file}\n`);
process.exit(report.passed ? 0 : 1);

/**
 * After the load: waits (bounded) until nothing is being created and the engine's sandboxes for the pool are
 * exactly its ready and allocated sessions, then reads both views and the claim counters.
 */
async function settle(s: BenchServer, lp: LoadPool): Promise<PoolAfterRun> {
  const deadline = performance.now() + SETTLE_TIMEOUT_MS;
  let g = await s.gauges(lp.pool);
  let sandboxes = (await s.sandboxes(lp.pool)).length;
  while (performance.now() < deadline && (g.pending > 0 || sandboxes !== g.ready + g.allocated)) {
    await sleep(250);
    g = await s.gauges(lp.pool);
    sandboxes = (await s.sandboxes(lp.pool)).length;
  }
  return {
    name: lp.pool.name,
    type: lp.type,
    sandboxes,
    ready: g.ready,
    allocated: g.allocated,
    pending: g.pending,
    liveByClients: lp.identifiers.filter((i) => i.state === "live").length,
    retired: lp.identifiers.filter((i) => i.state === "retired").length,
    claims: await claims(s, lp.pool),
  };
}

async function claims(s: BenchServer, pool: BenchPool): Promise<PoolAfterRun["claims"]> {
  const r = await s.client.send("GET", `${s.url}/metrics`);
  const read = (result: string) => {
    const line = r.text
      .split("\n")
      .find(
        (l) =>
          l.startsWith("sessionpool_session_claims_total{") &&
          l.includes(`pool="${pool.key}"`) &&
          l.includes(`result="${result}"`),
      );
    return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : 0;
  };
  return { hit: read("hit"), miss: read("miss"), limit: read("limit") };
}
