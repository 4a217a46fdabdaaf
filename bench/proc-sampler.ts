// One process's resident memory, open descriptors and CPU time, read from /proc at a fixed interval (Linux), and
// the load test's reading of the series: is memory flat once the run has warmed up?
import { readdirSync, readFileSync } from "node:fs";
import { percentile } from "./stats.ts";

export interface ProcSample {
  /** Seconds since the sampler started. */
  atS: number;
  rssBytes: number;
  fds: number;
  /** User + system CPU time of the process so far. */
  cpuS: number;
}

/** Linux reports utime/stime in clock ticks; USER_HZ is 100 on every architecture Node.js runs on. */
const TICKS_PER_S = 100;

export function readProc(pid: number): Omit<ProcSample, "atS"> | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = Number(/^VmRSS:\s+(\d+)\s+kB$/m.exec(status)?.[1] ?? Number.NaN);
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may hold spaces, hence the last ')'): utime and stime are 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]);
    return { rssBytes: kb * 1024, fds: readdirSync(`/proc/${pid}/fd`).length, cpuS: ticks / TICKS_PER_S };
  } catch {
    return undefined; // the process is gone
  }
}

/** Busy and total CPU time of the whole machine so far (all cores), from /proc/stat. */
export function machineCpu(): { busyS: number; totalS: number } {
  try {
    const first = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
    const ticks = first.trim().split(/\s+/).slice(1).map(Number);
    const total = ticks.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0);
    return { busyS: (total - idle) / TICKS_PER_S, totalS: total / TICKS_PER_S };
  } catch {
    return { busyS: Number.NaN, totalS: Number.NaN };
  }
}

export class ProcSampler {
  readonly samples: ProcSample[] = [];
  readonly #pid: number;
  readonly #t0 = performance.now();
  readonly #timer: NodeJS.Timeout;
  #stopped = false;

  constructor(pid: number, intervalMs = 1000) {
    this.#pid = pid;
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), intervalMs);
  }

  /** Takes a last sample and stops; safe to call twice. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#sample();
    clearInterval(this.#timer);
  }

  #sample(): void {
    const s = readProc(this.#pid);
    if (s) this.samples.push({ atS: (performance.now() - this.#t0) / 1000, ...s });
  }
}

export interface MemoryVerdict {
  warmupS: number;
  windowS: number;
  /** Median RSS over the window right after the warm-up. */
  baselineBytes: number;
  /** Median RSS over the last window of the run. */
  endBytes: number;
  growthBytes: number;
  boundBytes: number;
  peakBytes: number;
  /** Least-squares slope of RSS after the warm-up. */
  slopeBytesPerMin: number;
  held: boolean;
}

/**
 * Memory is flat when the median RSS of the last `windowS` seconds is at most `boundBytes` above the median of
 * the `windowS` seconds right after `warmupS`. Medians over windows, not single readings: the V8 heap grows and
 * shrinks by tens of MiB between collections, which a single sample would mistake for a trend.
 */
export function memoryVerdict(
  samples: ProcSample[],
  o: { warmupS: number; windowS: number; boundBytes: number },
): MemoryVerdict {
  const last = samples.at(-1)?.atS ?? 0;
  const median = (from: number, to: number) =>
    percentile(
      samples
        .filter((s) => s.atS >= from && s.atS <= to)
        .map((s) => s.rssBytes)
        .sort((a, b) => a - b),
      50,
    );
  const baselineBytes = median(o.warmupS, o.warmupS + o.windowS);
  const endBytes = median(last - o.windowS, last);
  const after = samples.filter((s) => s.atS >= o.warmupS);
  const growthBytes = endBytes - baselineBytes;
  return {
    warmupS: o.warmupS,
    windowS: o.windowS,
    baselineBytes,
    endBytes,
    growthBytes,
    boundBytes: o.boundBytes,
    peakBytes: Math.max(...samples.map((s) => s.rssBytes)),
    slopeBytesPerMin: slope(after.map((s) => [s.atS / 60, s.rssBytes])),
    held: Number.isFinite(growthBytes) && growthBytes <= o.boundBytes,
  };
}

function slope(points: [number, number][]): number {
  const n = points.length;
  if (n < 2) return Number.NaN;
  const mx = points.reduce((a, [x]) => a + x, 0) / n;
  const my = points.reduce((a, [, y]) => a + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? Number.NaN : num / den;
}
