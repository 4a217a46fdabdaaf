// What one benchmark run measures and how much: the three sizes (smoke for the test, quick, full) and the shape
// of a result row, shared by every measuring module, the report and the chart.
import type { Summary } from "./stats.ts";

export type Mode = "smoke" | "quick" | "full";

export interface Plan {
  mode: Mode;
  /** New identifiers claimed from the warm pool, one at a time, with the pool refilled in between. */
  warmClaimSamples: number;
  /** readySessionInstances of the pool the hot-path rows use. */
  warmPoolReady: number;
  existingExecSamples: number;
  /** Concurrent sessions per throughput row; the row ids keep the nominal 1, 8 and 32. */
  throughputSessions: [number, number, number];
  throughputDurationMs: number;
  coldSamples: number;
  /** readySessionInstances (and maxConcurrentSessions) of the time-to-warm row. */
  warmPoolSize: number;
  idleSessions: number;
  /** Quiet time after the idle sessions ran their 1+1, before memory is read. */
  idleSettleMs: number;
  naiveSamples: number;
  jupyterStarts: number;
  jupyterExecs: number;
  floorSamples: number;
  /** Install Debian's Jupyter packages when absent (smoke never does). */
  installJupyter: boolean;
}

export const PLANS: Record<Mode, Plan> = {
  smoke: {
    mode: "smoke",
    warmClaimSamples: 3,
    warmPoolReady: 2,
    existingExecSamples: 3,
    throughputSessions: [1, 2, 3],
    throughputDurationMs: 300,
    coldSamples: 3,
    warmPoolSize: 3,
    idleSessions: 2,
    idleSettleMs: 500,
    naiveSamples: 3,
    jupyterStarts: 1,
    jupyterExecs: 3,
    floorSamples: 100,
    installJupyter: false,
  },
  quick: {
    mode: "quick",
    warmClaimSamples: 30,
    warmPoolReady: 4,
    existingExecSamples: 300,
    throughputSessions: [1, 8, 32],
    throughputDurationMs: 3_000,
    coldSamples: 5,
    warmPoolSize: 20,
    idleSessions: 10,
    idleSettleMs: 3_000,
    naiveSamples: 5,
    jupyterStarts: 3,
    jupyterExecs: 200,
    floorSamples: 2_000,
    installJupyter: true,
  },
  full: {
    mode: "full",
    warmClaimSamples: 200,
    warmPoolReady: 8,
    existingExecSamples: 1_000,
    throughputSessions: [1, 8, 32],
    throughputDurationMs: 10_000,
    coldSamples: 20,
    warmPoolSize: 100,
    idleSessions: 50,
    idleSettleMs: 5_000,
    naiveSamples: 20,
    jupyterStarts: 5,
    jupyterExecs: 1_000,
    floorSamples: 10_000,
    installJupyter: true,
  },
};

export type Group = "sessionpool" | "naive" | "peer" | "floor";

export interface Row {
  id: string;
  group: Group;
  label: string;
  /** Client-side latencies in milliseconds, summarised. */
  latency?: Summary;
  /** Other measured values; the unit is in the name (…Ms, …Bytes, …PerSecond, count). */
  values?: Record<string, number>;
  /** Why there is no number: the row could not be measured on this run. */
  unavailable?: string;
  note?: string;
}

/** The sandbox runtimes the benchmark compares: runc (the engine's default) and gVisor. */
export type BenchRuntime = "runc" | "runsc";

/**
 * The rows measured under both runtimes. Their plain ids are the runc rows (DESIGN.md's targets judge those); the
 * gVisor twin of each is the id with "-gvisor", measured on a second server after the first one closed, at the
 * same sizes as the runc row so each pair compares like with like. That fits the budget: on the 2-core
 * development machine (runsc 2022-12, ptrace platform) a gVisor sandbox starts in about 2.5x runc's time
 * (20 warmed in 6 s), and an existing session's 1+1 costs about the same, so the gVisor rows add about five
 * minutes to the full run.
 */
export const RUNTIME_ROWS = [
  "warm-claim",
  "existing-exec",
  "cold-allocation",
  "warm-pool-fill",
  "idle-memory",
] as const;

export type RuntimeRowId = (typeof RUNTIME_ROWS)[number];

/** Every row a complete run reports, in report order (each gVisor row after its runc row); the smoke test checks
 * the JSON against it. */
export const ROW_IDS = [
  "warm-claim",
  "warm-claim-gvisor",
  "existing-exec",
  "existing-exec-gvisor",
  "fleet-forwarded-exec",
  "mcp-tools-call",
  "streamed-exec",
  "personalised-claim",
  "throughput-1",
  "throughput-8",
  "throughput-32",
  "cold-allocation",
  "cold-allocation-gvisor",
  "warm-pool-fill",
  "warm-pool-fill-gvisor",
  "idle-memory",
  "idle-memory-gvisor",
  "custom-ingress-proxy",
  "custom-ingress-direct",
  "naive-docker-run",
  "jupyter-kernel-start",
  "jupyter-start-first-result",
  "jupyter-execute",
  "floor-python-pipe",
  "floor-http-keepalive",
] as const;

export type RowId = (typeof ROW_IDS)[number];

/** The id of `id` measured under `runtime`: the plain id under runc, its "-gvisor" twin under runsc. */
export function runtimeRowId(id: RuntimeRowId, runtime: BenchRuntime): RowId {
  return runtime === "runsc" ? (`${id}-gvisor` satisfies RowId) : id;
}

const RUNC_ROW_LABELS: Record<RuntimeRowId, string> = {
  "warm-claim": "New identifier -> first result of 1+1 (warm pool)",
  "existing-exec": "1+1 in an existing session",
  "cold-allocation": "New identifier -> first result of 1+1 (no ready session)",
  "warm-pool-fill": "Time to warm 100 ready sessions from an empty pool",
  "idle-memory": "Host memory per idle PythonLTS session (all included)",
};

/** A row's label under `runtime`: the runc label, or the same words marked gVisor. */
export function runtimeRowLabel(
  id: RuntimeRowId,
  runtime: BenchRuntime,
  label = RUNC_ROW_LABELS[id],
): string {
  return runtime === "runsc" ? `${label}, gVisor` : label;
}

const runtimeLabels = (runtime: BenchRuntime) =>
  Object.fromEntries(
    RUNTIME_ROWS.map((id) => [
      runtimeRowId(id, runtime),
      { group: "sessionpool", label: runtimeRowLabel(id, runtime) },
    ]),
  ) as Record<RowId, { group: Group; label: string }>;

/** The group and label of every row, for rows that could not be measured. */
export const ROW_LABELS: Record<RowId, { group: Group; label: string }> = {
  ...runtimeLabels("runc"),
  ...runtimeLabels("runsc"),
  "fleet-forwarded-exec": {
    group: "sessionpool",
    label: "1+1 in an existing session, forwarded by another fleet server",
  },
  "mcp-tools-call": {
    group: "sessionpool",
    label: "MCP tools/call: Python 1+1 in an existing environment",
  },
  "streamed-exec": {
    group: "sessionpool",
    label: "Streamed 1+1 (Accept: text/event-stream) in an existing session, to the result event",
  },
  "personalised-claim": {
    group: "sessionpool",
    label: "New identifier personalised (PUT /session, 2 variables) -> first result (warm pool)",
  },
  "throughput-1": { group: "sessionpool", label: "Throughput, 1 session" },
  "throughput-8": { group: "sessionpool", label: "Throughput, 8 sessions in parallel" },
  "throughput-32": { group: "sessionpool", label: "Throughput, 32 sessions in parallel" },
  "custom-ingress-proxy": { group: "sessionpool", label: "Custom container: request through the proxy" },
  "custom-ingress-direct": {
    group: "sessionpool",
    label: "Custom container: request straight to the container",
  },
  "naive-docker-run": { group: "naive", label: "Naive: docker run --rm per request" },
  "jupyter-kernel-start": { group: "peer", label: "Jupyter: kernel start (start_kernel + wait_for_ready)" },
  "jupyter-start-first-result": { group: "peer", label: "Jupyter: kernel start -> first result of 1+1" },
  "jupyter-execute": { group: "peer", label: "Jupyter: 1+1 on a warm kernel (jupyter_client, ZMQ)" },
  "floor-python-pipe": { group: "floor", label: "Floor: warm Python process, 1+1 over a pipe" },
  "floor-http-keepalive": { group: "floor", label: "Floor: loopback HTTP keep-alive round trip (Node)" },
};

export function unavailableRow(id: RowId, reason: string): Row {
  return { id, ...ROW_LABELS[id], unavailable: reason };
}
