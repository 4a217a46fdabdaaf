// From rows to what a person reads: DESIGN.md's targets with PASS/MISS, the ratios against the naive way, the
// peer and the floor, what gVisor costs next to runc, and the plain-text table printed on stdout.
import type { MachineInfo } from "./machine.ts";
import { type Mode, type Row, type RuntimeRowId, runtimeRowId } from "./plan.ts";
import { formatMiB, formatMs } from "./stats.ts";

export interface TargetResult {
  target: string;
  limit: string;
  measured: string;
  /** N/A when the run did not measure it at the target's size or the row is unavailable. */
  verdict: "PASS" | "MISS" | "N/A";
  why?: string;
}

export interface Ratio {
  what: string;
  value: number | undefined;
  text: string;
}

/** One runtime row under runc and under gVisor, measured in the same run. */
export interface RuntimePrice {
  row: RuntimeRowId;
  what: string;
  runc: string;
  gvisor: string;
  /** gVisor / runc; undefined when either row is unavailable. */
  ratio: number | undefined;
  note?: string;
}

export interface BenchReport {
  mode: Mode;
  date: string;
  durationMs: number;
  machine: MachineInfo;
  rows: Row[];
  targets: TargetResult[];
  ratios: Ratio[];
  /** The price of the stronger boundary: each runtime row under gVisor against runc. */
  gvisorPrice: RuntimePrice[];
}

const MiB = 1024 * 1024;

function byId(rows: Row[], id: string): Row | undefined {
  return rows.find((r) => r.id === id);
}

function latency(rows: Row[], id: string, stat: "p50Ms" | "p99Ms"): number | undefined {
  const v = byId(rows, id)?.latency?.[stat];
  return v !== undefined && Number.isFinite(v) ? v : undefined;
}

function value(rows: Row[], id: string, name: string): number | undefined {
  const v = byId(rows, id)?.values?.[name];
  return v !== undefined && Number.isFinite(v) ? v : undefined;
}

/**
 * The targets (issue 18: as ratios where the machine's speed cancels out): the hot path against the physical
 * floor measured in the same run, cold starts against `docker run`, and the absolute ones DESIGN.md sets for
 * this 2-core machine.
 */
export function evaluateTargets(rows: Row[]): TargetResult[] {
  const ms = (target: string, id: string, stat: "p50Ms" | "p99Ms", limitMs: number): TargetResult => {
    const v = latency(rows, id, stat);
    const row = byId(rows, id);
    const small = row?.latency && row.latency.n < 100 && stat === "p99Ms";
    return {
      target,
      limit: `<= ${formatMs(limitMs)}`,
      measured: formatMs(v),
      verdict: v === undefined ? "N/A" : v <= limitMs ? "PASS" : "MISS",
      ...(v === undefined
        ? { why: row?.unavailable ?? "not measured" }
        : small
          ? { why: `p99 of ${row!.latency!.n} samples is their maximum` }
          : {}),
    };
  };
  /** `id`'s p50 over `over` (a number from the same run), at most `limit` times. */
  const times = (
    target: string,
    id: string,
    over: number | undefined,
    limit: number,
    why?: string,
  ): TargetResult => {
    const v = latency(rows, id, "p50Ms");
    const r = v !== undefined && over !== undefined && over > 0 ? v / over : undefined;
    return {
      target,
      limit: `<= ${limit}x`,
      measured: r === undefined ? "-" : `${r.toFixed(2)}x (${formatMs(v)})`,
      verdict: r === undefined ? "N/A" : r <= limit ? "PASS" : "MISS",
      ...(r === undefined ? { why: byId(rows, id)?.unavailable ?? why ?? "not measured" } : {}),
    };
  };
  const http = latency(rows, "floor-http-keepalive", "p50Ms");
  const pipe = latency(rows, "floor-python-pipe", "p50Ms");
  const floor = http !== undefined && pipe !== undefined ? http + pipe : undefined;
  const httpPaused = value(rows, "floor-http-keepalive", "afterPauseP50Ms");
  const pipePaused = value(rows, "floor-python-pipe", "afterPauseP50Ms");
  const floorPaused =
    httpPaused !== undefined && pipePaused !== undefined ? httpPaused + pipePaused : undefined;
  const fill = byId(rows, "warm-pool-fill");
  const fillMs = value(rows, "warm-pool-fill", "fillMs");
  const fillSessions = value(rows, "warm-pool-fill", "sessions");
  const memoryHost = value(rows, "idle-memory", "hostBytesPerSession");
  const memory = idleMemoryBytes(rows, "idle-memory");
  const tput = value(rows, "throughput-32", "executionsPerSecond");
  const tputSessions = value(rows, "throughput-32", "sessions");
  const cpuPerExec = value(rows, "throughput-32", "serverCpuMsPerExecution");
  return [
    times(
      "1+1 in an existing session p50 / floor (HTTP keep-alive + Python pipe)",
      "existing-exec",
      floor,
      1.5,
    ),
    times(
      "Warm claim -> first result p50 / the same floor after the same pause",
      "warm-claim",
      floorPaused,
      3,
    ),
    ms("Warm claim -> first result, p99", "warm-claim", "p99Ms", 10),
    times(
      "Cold session (pool drained) p50 / one docker run p50",
      "cold-allocation",
      latency(rows, "naive-docker-run", "p50Ms"),
      0.5,
    ),
    {
      target: "100 ready sessions warmed from an empty pool",
      limit: "<= 10 s",
      measured:
        fillMs === undefined
          ? "-"
          : `${formatMs(fillMs)}${fillSessions !== 100 ? ` for ${fillSessions}` : ""}`,
      verdict: fillMs === undefined || fillSessions !== 100 ? "N/A" : fillMs <= 10_000 ? "PASS" : "MISS",
      ...(fillMs === undefined
        ? { why: fill?.unavailable ?? "not measured" }
        : fillSessions !== 100
          ? { why: `this run warmed ${fillSessions}, not 100 (the full run measures 100)` }
          : {}),
    },
    {
      target: "Host memory per idle PythonLTS session, all included",
      limit: "<= 10.0 MiB",
      measured: formatMiB(memory),
      verdict: memory === undefined ? "N/A" : memory <= 10 * MiB ? "PASS" : "MISS",
      ...(memory === undefined
        ? { why: byId(rows, "idle-memory")?.unavailable ?? "not measured" }
        : memoryHost !== undefined && memory !== memoryHost
          ? { why: `MemAvailable said ${formatMiB(memoryHost)}, below the parts: the accounted sum is used` }
          : {}),
    },
    {
      target: "Throughput, 1+1 with 32 sessions in parallel",
      limit: ">= 5000/s",
      measured:
        tput === undefined
          ? "-"
          : `${tput.toFixed(0)}/s${cpuPerExec === undefined ? "" : `, server CPU ${(cpuPerExec * 1000).toFixed(0)} us/exec`}`,
      verdict: tput === undefined || tputSessions !== 32 ? "N/A" : tput >= 5000 ? "PASS" : "MISS",
      ...(tput === undefined
        ? { why: byId(rows, "throughput-32")?.unavailable ?? "not measured" }
        : tputSessions !== 32
          ? { why: `this run used ${tputSessions} sessions, not 32` }
          : {}),
    },
    mcpTarget(rows),
    ratioTarget(rows, "Streamed 1+1 p50 / existing-session 1+1 p50", "streamed-exec", "sameSessionRatioP50"),
    ratioTarget(
      rows,
      "Personalised claim -> first result p50 / plain warm claim p50",
      "personalised-claim",
      "ratioToPlainP50",
    ),
  ];
}

/** An extension within 1.5x of the path it extends, both measured alternately in the same run (the row's ratio). */
function ratioTarget(rows: Row[], target: string, id: string, ratioKey: string): TargetResult {
  const row = byId(rows, id);
  const ratio = value(rows, id, ratioKey);
  return {
    target,
    limit: `<= ${MCP_RATIO_LIMIT}x`,
    measured: ratio === undefined ? "-" : `${ratio.toFixed(2)}x (${formatMs(row?.latency?.p50Ms)})`,
    verdict: ratio === undefined ? "N/A" : ratio <= MCP_RATIO_LIMIT ? "PASS" : "MISS",
    ...(ratio === undefined ? { why: row?.unavailable ?? "not measured" } : {}),
  };
}

/** DESIGN.md: an MCP call within 1.5x of the plain execution (existing-exec), both p50 of the same run. */
const MCP_RATIO_LIMIT = 1.5;

function mcpTarget(rows: Row[]): TargetResult {
  const mcp = latency(rows, "mcp-tools-call", "p50Ms");
  const plain = latency(rows, "existing-exec", "p50Ms");
  const ratio = mcp !== undefined && plain !== undefined && plain > 0 ? mcp / plain : undefined;
  const missing = ["mcp-tools-call", "existing-exec"].map((id) => byId(rows, id)).find((r) => r?.unavailable);
  return {
    target: "MCP tools/call 1+1 p50 / existing-session 1+1 p50",
    limit: `<= ${MCP_RATIO_LIMIT}x`,
    measured: ratio === undefined ? "-" : `${ratio.toFixed(2)}x (${formatMs(mcp)})`,
    verdict: ratio === undefined ? "N/A" : ratio <= MCP_RATIO_LIMIT ? "PASS" : "MISS",
    ...(ratio === undefined
      ? { why: missing ? `${missing.id}: ${missing.unavailable}` : "not measured" }
      : {}),
  };
}

/**
 * The idle-memory figure a row is judged by. On a shared host the MemAvailable reading can come out below what the
 * parts visibly use (others freed memory meanwhile): the larger of the two.
 */
function idleMemoryBytes(rows: Row[], id: string): number | undefined {
  const host = value(rows, id, "hostBytesPerSession");
  const accounted = value(rows, id, "accountedBytesPerSession");
  return host === undefined ? accounted : Math.max(host, accounted ?? host);
}

/**
 * Each runtime row under gVisor against runc. The pool-fill rows may warm different numbers of sessions (the
 * gVisor plan is smaller), so they compare time per session.
 */
export function computeGvisorPrice(rows: Row[]): RuntimePrice[] {
  const price = (
    row: RuntimeRowId,
    what: string,
    read: (id: string) => number | undefined,
    format: (v: number | undefined, id: string) => string,
  ): RuntimePrice => {
    const gvisorId = runtimeRowId(row, "runsc");
    const a = read(row);
    const b = read(gvisorId);
    const ratio = a !== undefined && b !== undefined && a > 0 ? b / a : undefined;
    const missing = [row, gvisorId].map((id) => byId(rows, id)).find((r) => r?.unavailable);
    return {
      row,
      what,
      runc: format(a, row),
      gvisor: format(b, gvisorId),
      ratio,
      ...(ratio === undefined && missing ? { note: `${missing.id}: ${missing.unavailable}` } : {}),
    };
  };
  const p50 = (id: string) => latency(rows, id, "p50Ms");
  const ms = (v: number | undefined) => formatMs(v);
  const perSession = (v: number | undefined, id: string) => {
    const n = value(rows, id, "sessions");
    const fill = value(rows, id, "fillMs");
    return v === undefined ? "-" : `${formatMs(v)} (${n} in ${formatMs(fill)})`;
  };
  return [
    price("warm-claim", "New identifier -> first result (warm pool), p50", p50, ms),
    price("existing-exec", "1+1 in an existing session, p50", p50, ms),
    price("cold-allocation", "New identifier -> first result (no ready session), p50", p50, ms),
    price(
      "warm-pool-fill",
      "Warming ready sessions, time per session",
      (id) => value(rows, id, "perSessionMs"),
      perSession,
    ),
    price(
      "idle-memory",
      "Host memory per idle PythonLTS session",
      (id) => idleMemoryBytes(rows, id),
      (v) => formatMiB(v),
    ),
  ];
}

export function computeRatios(rows: Row[]): Ratio[] {
  const ratio = (
    what: string,
    a: number | undefined,
    b: number | undefined,
    phrase: (x: number) => string,
  ) => {
    const v = a !== undefined && b !== undefined && b > 0 ? a / b : undefined;
    return { what, value: v, text: v === undefined ? "n/a (a row is unavailable)" : phrase(v) };
  };
  const x = (v: number) => (v >= 10 ? v.toFixed(0) : v.toFixed(1));
  const warm = latency(rows, "warm-claim", "p50Ms");
  const existing = latency(rows, "existing-exec", "p50Ms");
  const cold = latency(rows, "cold-allocation", "p50Ms");
  const naive = latency(rows, "naive-docker-run", "p50Ms");
  const mcp = latency(rows, "mcp-tools-call", "p50Ms");
  const jStartFirst = latency(rows, "jupyter-start-first-result", "p50Ms");
  const jExec = latency(rows, "jupyter-execute", "p50Ms");
  const http = latency(rows, "floor-http-keepalive", "p50Ms");
  const pipe = latency(rows, "floor-python-pipe", "p50Ms");
  const floor = http !== undefined && pipe !== undefined ? http + pipe : undefined;
  const forwarded = latency(rows, "fleet-forwarded-exec", "p50Ms");
  const local = value(rows, "fleet-forwarded-exec", "localP50Ms");
  return [
    ratio(
      "naive docker run p50 / warm claim p50",
      naive,
      warm,
      (v) => `warm claim is ${x(v)}x faster than docker run per request`,
    ),
    ratio(
      "Jupyter kernel start + first result p50 / warm claim p50",
      jStartFirst,
      warm,
      (v) => `warm claim is ${x(v)}x faster than starting a Jupyter kernel`,
    ),
    ratio("Jupyter warm execute p50 / existing-session execute p50", jExec, existing, (v) =>
      v >= 1
        ? `existing session is ${x(v)}x faster than a warm Jupyter kernel`
        : `a warm Jupyter kernel is ${x(1 / v)}x faster than an existing session`,
    ),
    ratio(
      "cold allocation p50 / naive docker run p50",
      cold,
      naive,
      (v) => `a cold session costs ${x(v)}x one docker run`,
    ),
    ratio(
      "existing-session execute p50 / floor (HTTP keep-alive + Python pipe) p50",
      existing,
      floor,
      (v) => `${x(v)}x the physical floor`,
    ),
    ratio(
      "MCP tools/call p50 / existing-session execute p50",
      mcp,
      existing,
      (v) => `an MCP call costs ${x(v)}x the plain execution (target <= ${MCP_RATIO_LIMIT}x)`,
    ),
    ratio(
      "warm claim p50 / floor (HTTP keep-alive + Python pipe) p50",
      warm,
      floor,
      (v) => `${x(v)}x the physical floor`,
    ),
    // Informational (no target): the same session reached through another server of a fleet, alternated with it.
    ratio(
      "fleet: forwarded 1+1 p50 / the same session served locally p50",
      forwarded,
      local,
      (v) =>
        `the hop between servers costs ${v.toFixed(2)}x a local request (+${formatMs(forwarded! - local!)})`,
    ),
  ];
}

/** Long reasons (an engine error, a 400 body) cut to one readable line. */
function short(text: string, n = 110): string {
  const one = text.replace(/\s+/g, " ");
  return one.length <= n ? one : `${one.slice(0, n - 1)}…`;
}

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + " ".repeat(n - s.length);
}

function lpad(s: string, n: number): string {
  return s.length >= n ? s : " ".repeat(n - s.length) + s;
}

export function renderTable(report: BenchReport): string {
  const m = report.machine;
  const out: string[] = [];
  out.push(`sessionpool benchmark (${report.mode}) ${report.date}, took ${formatMs(report.durationMs)}`);
  out.push(
    `${m.cpuModel}, ${m.cores} cores, ${(m.memoryBytes / 1024 ** 3).toFixed(1)} GiB, Linux ${m.kernel}, Docker ${m.dockerVersion} (cgroup v${m.cgroupVersion}), Node ${m.nodeVersion}, commit ${m.gitCommit}`,
  );
  out.push(`gVisor: ${m.gvisor}`);
  out.push(
    `Other containers running at start: ${m.otherContainersAtStart}; 1-minute load average ${m.loadAverage1mAtStart.toFixed(2)} at start, ${(m.loadAverage1mAtEnd ?? Number.NaN).toFixed(2)} at the end (${m.cores} cores)`,
  );
  if (report.mode !== "full")
    out.push(`Mode ${report.mode}: fewer samples; the pool-fill row warms fewer than 100 sessions.`);
  out.push("");
  const W = 68;
  out.push(
    `${pad("Latency (client wall time)", W)}${lpad("p50", 10)}${lpad("p95", 10)}${lpad("p99", 10)}${lpad("n", 6)}`,
  );
  for (const r of report.rows) {
    if (!r.latency || r.id.startsWith("throughput-")) continue;
    const l = r.latency;
    out.push(
      `  ${pad(r.label, W - 2)}${lpad(formatMs(l.p50Ms), 10)}${lpad(formatMs(l.p95Ms), 10)}${lpad(formatMs(l.p99Ms), 10)}${lpad(String(l.n), 6)}`,
    );
  }
  const server = (id: string) => {
    const r = byId(report.rows, id);
    return r?.values?.["serverOverallP50Ms"] === undefined
      ? undefined
      : `server ${formatMs(r.values["serverOverallP50Ms"])} (allocation ${formatMs(r.values["serverAllocationP50Ms"])}, agent ${formatMs(r.values["agentExecutionP50Ms"])})`;
  };
  const serverLines = (
    [
      ["warm claim", "warm-claim"],
      ["existing session", "existing-exec"],
      ["cold allocation", "cold-allocation"],
    ] as const
  )
    .flatMap(([what, id]) => [
      [what, server(id)],
      [`${what}, gVisor`, server(runtimeRowId(id, "runsc"))],
    ])
    .filter((x): x is [string, string] => x[1] !== undefined);
  if (serverLines.length > 0) {
    out.push(
      "  Server-side p50 from the response headers (x-ms-overall-execution-time, -preparation-time, -container-execution-duration):",
    );
    for (const [what, text] of serverLines) out.push(`    ${pad(what, 26)}${text}`);
  }
  out.push("");
  out.push(
    `${pad("Throughput (1+1, each session sequential)", W)}${lpad("exec/s", 10)}${lpad("p50", 10)}${lpad("p99", 10)}`,
  );
  for (const r of report.rows.filter((x) => x.id.startsWith("throughput-"))) {
    if (r.unavailable) {
      out.push(`  ${pad(r.label, W - 2)}  unavailable: ${short(r.unavailable)}`);
      continue;
    }
    const label = `${r.label}${r.note ? ` [${r.note}]` : ""}`;
    out.push(
      `  ${pad(label, W - 2)}${lpad((r.values?.["executionsPerSecond"] ?? Number.NaN).toFixed(0), 10)}${lpad(formatMs(r.latency?.p50Ms), 10)}${lpad(formatMs(r.latency?.p99Ms), 10)}`,
    );
  }
  out.push("");
  out.push("Capacity");
  for (const fill of [byId(report.rows, "warm-pool-fill"), byId(report.rows, "warm-pool-fill-gvisor")]) {
    if (!fill?.values) continue;
    const v = fill.values;
    out.push(
      `  ${fill.label}: ${formatMs(v["fillMs"])} (${formatMs(v["perSessionMs"])} per session; deleting the pool took ${formatMs(v["deleteMs"])})`,
    );
  }
  for (const mem of [byId(report.rows, "idle-memory"), byId(report.rows, "idle-memory-gvisor")]) {
    if (!mem?.values) continue;
    const v = mem.values;
    out.push(
      `  ${mem.label}, N=${v["sessions"]}: ${formatMiB(v["hostBytesPerSession"])} (MemAvailable, drift-corrected)`,
    );
    out.push(
      `    raw MemAvailable delta ${formatMiB(v["hostRawDeltaBytesPerSession"])} per session; host drift over the row ${formatMiB(v["hostDriftBytes"])}; accounted parts ${formatMiB(v["accountedBytesPerSession"])}`,
    );
    out.push(
      `    container cgroup ${formatMiB(v["cgroupUsageBytesPerSession"])} (anon ${formatMiB(v["cgroupAnonBytesPerSession"])}, page cache+tmpfs ${formatMiB(v["cgroupCacheBytesPerSession"])}, kernel ${formatMiB(v["cgroupKernelBytesPerSession"])}); docker stats ${formatMiB(v["dockerStatsBytesPerSession"])}`,
    );
    out.push(
      `    containerd-shim RSS ${formatMiB(v["shimRssBytesPerSession"])} (PSS ${formatMiB(v["shimPssBytesPerSession"])}); dockerd+containerd growth ${formatMiB(v["daemonsRssGrowthBytesPerSession"])} per session`,
    );
    if (v["runscRssBytesPerSession"] !== undefined) {
      out.push(
        `    of the cgroup, gVisor's Sentry + gofer RSS ${formatMiB(v["runscRssBytesPerSession"])} (PSS ${formatMiB(v["runscPssBytesPerSession"])})`,
      );
    }
  }
  const missing = report.rows.filter((r) => r.unavailable && !r.id.startsWith("throughput-"));
  if (missing.length > 0) {
    out.push("");
    out.push("Unavailable");
    for (const r of missing) out.push(`  ${pad(r.label, W - 2)}${short(r.unavailable!)}`);
  }
  out.push("");
  out.push("Ratios (p50)");
  for (const r of report.ratios)
    out.push(`  ${pad(r.what, 76)}${r.value === undefined ? "" : `${r.value.toPrecision(3)}  `}${r.text}`);
  out.push("");
  out.push("Price of the stronger boundary: gVisor (runsc) next to runc, same run");
  out.push(`  ${pad("", 56)}${lpad("runc", 12)}${lpad("gVisor", 28)}${lpad("gVisor/runc", 13)}`);
  for (const p of report.gvisorPrice) {
    out.push(
      `  ${pad(p.what, 56)}${lpad(p.runc, 12)}${lpad(p.gvisor, 28)}${lpad(p.ratio === undefined ? "n/a" : `${p.ratio.toPrecision(3)}x`, 13)}${p.note ? `  (${short(p.note, 80)})` : ""}`,
    );
  }
  out.push("");
  out.push("Targets");
  for (const t of report.targets) {
    out.push(
      `  ${pad(t.target, 72)}${pad(t.limit, 12)}${lpad(t.measured, 34)}  ${t.verdict}${t.why ? `  (${short(t.why, 80)})` : ""}`,
    );
  }
  return out.join("\n");
}
