// The load test's report: what ran, what every kind of request saw, the server's memory, the engine's view after
// the run, the pass/fail checks, and the plain-text table printed on stdout.

import type { FailureSample, OpSummary, Outcome, SecondSample } from "./load-recorder.ts";
import type { LoadContainerType } from "./load-workload.ts";
import type { MachineInfo } from "./machine.ts";
import type { MemoryVerdict } from "./proc-sampler.ts";
import { formatMiB, formatMs } from "./stats.ts";

export interface LoadOptions {
  durationS: number;
  clients: number;
  pools: number;
  types: LoadContainerType[];
  maxSessions: number;
  readySessions: number;
  identifiersPerPool: number;
  churnPerS: number;
  thinkMs: number;
  requestTimeoutS: number;
  warmupS: number;
  memoryBoundMiB: number;
  /** Every kind of request needs at least this many ok answers for the run to count. */
  minOkPerKind: number;
  serverLogLevel: string;
}

export interface PoolAfterRun {
  name: string;
  type: LoadContainerType;
  /** Sandboxes the engine has with the pool's label, once the server has settled. */
  sandboxes: number;
  ready: number;
  allocated: number;
  pending: number;
  /** Sessions the clients believe live (their own bookkeeping). */
  liveByClients: number;
  /** Identifiers retired after an answer that left the server's state unknown. */
  retired: number;
  claims: { hit: number; miss: number; limit: number };
}

export interface LoadCheck {
  name: string;
  passed: boolean;
  detail: string;
}

export interface LoadReport {
  date: string;
  machine: MachineInfo;
  options: LoadOptions;
  /** Seconds the clients ran (the last requests included). */
  loadS: number;
  requests: number;
  requestsPerS: number;
  maxInFlight: number;
  totals: Record<Outcome, number>;
  ops: OpSummary[];
  memory: MemoryVerdict;
  /** Where the machine's CPU went during the load (every core counts: 2 cores = 2 CPU-seconds per second). */
  cpu: { serverS: number; driverS: number; machineBusyS: number; machineTotalS: number };
  server: {
    pid: number;
    fdsAtStart: number;
    fdsPeak: number;
    fdsAtEnd: number;
    /** Lines the server logged at error level or above during the run. */
    errorLogLines: number;
    exitedDuringRun: boolean;
  };
  pools: PoolAfterRun[];
  samples: FailureSample[];
  rss: { atS: number; rssMiB: number; fds: number }[];
  seconds: SecondSample[];
  checks: LoadCheck[];
  passed: boolean;
}

export function evaluateChecks(r: Omit<LoadReport, "checks" | "passed">): LoadCheck[] {
  const t = r.totals;
  const weak = r.ops.filter((o) => o.outcomes.ok < r.options.minOkPerKind);
  const disagree = r.pools.filter(
    (p) => p.sandboxes !== p.ready + p.allocated || p.allocated !== p.liveByClients || p.pending !== 0,
  );
  return [
    { name: "no 5xx", passed: t["server-error"] === 0, detail: `${t["server-error"]} answers >= 500` },
    {
      name: "no hung request",
      passed: t.hung === 0,
      detail: `${t.hung} requests past their ${r.options.requestTimeoutS} s deadline`,
    },
    { name: "no transport error", passed: t.transport === 0, detail: `${t.transport} connection failures` },
    {
      name: "every answer as expected",
      passed: t.unexpected === 0,
      detail: `${t.unexpected} unexpected statuses or bodies (429s at the limit: ${t.limited}, not failures)`,
    },
    {
      name: "server memory flat",
      passed: r.memory.held,
      detail: `RSS ${formatMiB(r.memory.baselineBytes)} after ${r.memory.warmupS} s warm-up -> ${formatMiB(r.memory.endBytes)} at the end (${signedMiB(r.memory.growthBytes)}; bound +${formatMiB(r.memory.boundBytes)})`,
    },
    {
      name: "server alive",
      passed: !r.server.exitedDuringRun,
      detail: r.server.exitedDuringRun ? "the server exited during the run" : "still serving",
    },
    {
      name: "every kind of request exercised",
      passed: weak.length === 0,
      detail:
        weak.length === 0
          ? `each kind has >= ${r.options.minOkPerKind} ok answers`
          : `too few ok answers: ${weak.map((o) => `${o.kind} ${o.outcomes.ok}`).join(", ")}`,
    },
    {
      name: "engine and server agree",
      passed: disagree.length === 0,
      detail:
        disagree.length === 0
          ? "after the run, each pool's sandboxes = ready + allocated, allocated = sessions the clients hold"
          : disagree
              .map(
                (p) =>
                  `${p.name}: ${p.sandboxes} sandboxes, ${p.ready} ready + ${p.allocated} allocated (${p.pending} pending), clients hold ${p.liveByClients}`,
              )
              .join("; "),
    },
  ];
}

function signedMiB(bytes: number): string {
  return `${bytes >= 0 ? "+" : "-"}${formatMiB(Math.abs(bytes))}`;
}

function pad(cells: string[], widths: number[]): string {
  return cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [pad(header, widths), ...rows.map((r) => pad(r, widths))].join("\n");
}

export function renderLoadTable(r: LoadReport): string {
  const o = r.options;
  const lines: string[] = [];
  lines.push(
    `sessionpool load test, ${r.date}: ${o.clients} clients for ${o.durationS} s over ${o.pools} pools (${o.types.join(", ")}), maxConcurrentSessions ${o.maxSessions}, ${o.identifiersPerPool} identifiers per pool, ${o.churnPerS} session ends/s, deadline ${o.requestTimeoutS} s`,
  );
  lines.push(
    `machine: ${r.machine.cores} cores ${r.machine.cpuModel}, Docker ${r.machine.dockerVersion}, Node ${r.machine.nodeVersion}, commit ${r.machine.gitCommit}`,
  );
  lines.push("");
  const rows = r.ops.map((op) => [
    op.kind,
    String(op.requests),
    String(op.outcomes.ok),
    String(op.outcomes.limited),
    String(op.requests - op.outcomes.ok - op.outcomes.limited),
    formatMs(op.latency.p50Ms),
    formatMs(op.latency.p95Ms),
    formatMs(op.latency.p99Ms),
    formatMs(op.slowestMs),
    Object.entries(op.statuses)
      .map(([s, n]) => `${s}:${n}`)
      .join(" "),
  ]);
  const all = r.ops.reduce((a, op) => a + op.requests, 0);
  rows.push([
    "all",
    String(all),
    String(r.totals.ok),
    String(r.totals.limited),
    String(all - r.totals.ok - r.totals.limited),
    "",
    "",
    "",
    "",
    "",
  ]);
  lines.push(
    table(["request", "n", "ok", "429", "failed", "p50", "p95", "p99", "slowest", "statuses"], rows),
  );
  lines.push("(p50, p95, p99: client wall time of the ok answers; slowest: of any answer)");
  lines.push("");
  lines.push(
    `throughput: ${r.requestsPerS.toFixed(0)} requests/s over ${r.loadS.toFixed(1)} s (${r.requests} requests, at most ${r.maxInFlight} in flight)`,
  );
  lines.push(
    `CPU: machine ${((100 * r.cpu.machineBusyS) / r.cpu.machineTotalS).toFixed(0)}% busy (${r.cpu.machineBusyS.toFixed(0)} of ${r.cpu.machineTotalS.toFixed(0)} CPU-s): server ${r.cpu.serverS.toFixed(0)} s, this driver ${r.cpu.driverS.toFixed(0)} s, the rest the engine, sandboxes and others`,
  );
  const m = r.memory;
  lines.push(
    `server RSS: ${formatMiB(m.baselineBytes)} after warm-up, ${formatMiB(m.endBytes)} at the end (${signedMiB(m.growthBytes)}, slope ${signedMiB(m.slopeBytesPerMin)}/min), peak ${formatMiB(m.peakBytes)}; open fds ${r.server.fdsAtStart} -> peak ${r.server.fdsPeak} -> ${r.server.fdsAtEnd}; error log lines ${r.server.errorLogLines}`,
  );
  for (const p of r.pools) {
    lines.push(
      `pool ${p.name} (${p.type}): claims ${p.claims.hit} warm, ${p.claims.miss} cold, ${p.claims.limit} at the limit; after the run ${p.sandboxes} sandboxes = ${p.ready} ready + ${p.allocated} allocated, clients hold ${p.liveByClients}${p.retired > 0 ? `, ${p.retired} identifiers retired` : ""}`,
    );
  }
  lines.push("");
  for (const c of r.checks) lines.push(`${c.passed ? "PASS" : "FAIL"}  ${c.name}: ${c.detail}`);
  if (r.samples.length > 0) {
    lines.push("", "failure samples:");
    for (const s of r.samples) lines.push(`  ${s.atS} s ${s.kind} ${s.outcome}: ${s.detail}`);
  }
  lines.push("", r.passed ? "load test: PASSED" : "load test: FAILED");
  return lines.join("\n");
}
