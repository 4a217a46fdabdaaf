// Reads the server's own Prometheus metrics (/metrics): pool gauges, claim counters and latency histograms.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    }
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

/** The sum of a metric's samples whose labels include `where`. */
export function total(samples: Sample[], name: string, where: Record<string, string> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(where).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
}

/** Per pool (the metrics' pool label, sub/rg/name in lower case): ready and allocated sessions now. */
export function poolGauges(samples: Sample[]): Map<string, { ready: number; allocated: number }> {
  const pools = new Map<string, { ready: number; allocated: number }>();
  for (const s of samples) {
    const pool = s.labels["pool"];
    if (pool === undefined) continue;
    const entry = pools.get(pool) ?? { ready: 0, allocated: 0 };
    if (s.name === "sessionpool_pool_ready_sessions") entry.ready = s.value;
    else if (s.name === "sessionpool_pool_allocated_sessions") entry.allocated = s.value;
    else continue;
    pools.set(pool, entry);
  }
  return pools;
}

/**
 * The q-quantile (0..1) of a histogram summed over all its label sets, in the histogram's unit, interpolated
 * within the bucket it falls in (as Prometheus' histogram_quantile does); undefined without observations.
 */
export function quantile(samples: Sample[], histogram: string, q: number): number | undefined {
  const buckets = new Map<number, number>();
  for (const s of samples) {
    if (s.name !== `${histogram}_bucket`) continue;
    const le = s.labels["le"] === "+Inf" ? Number.POSITIVE_INFINITY : Number(s.labels["le"]);
    buckets.set(le, (buckets.get(le) ?? 0) + s.value);
  }
  const sorted = [...buckets.entries()].sort((a, b) => a[0] - b[0]);
  const count = sorted.at(-1)?.[1] ?? 0;
  if (count === 0) return undefined;
  const rank = q * count;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const [le, cumulative] of sorted) {
    if (cumulative >= rank) {
      if (le === Number.POSITIVE_INFINITY) return lowerBound;
      const inBucket = cumulative - lowerCount;
      return inBucket === 0 ? le : lowerBound + ((le - lowerBound) * (rank - lowerCount)) / inBucket;
    }
    lowerBound = le;
    lowerCount = cumulative;
  }
  return lowerBound;
}

export function formatSeconds(s: number | undefined): string {
  if (s === undefined) return "–";
  return s < 1 ? `${(s * 1000).toFixed(s < 0.01 ? 2 : 1)} ms` : `${s.toFixed(2)} s`;
}
