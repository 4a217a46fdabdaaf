// Health: the engine (from /healthz), ready vs allocated sessions per pool over the last minutes (sampled from
// /metrics while the console is open), claim hit rate and latency percentiles from the server's own metrics.
import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import type { Api } from "./api.ts";
import { formatSeconds, parseMetrics, poolGauges, quantile, type Sample, total } from "./metrics.ts";
import { ErrorBanner } from "./ui.tsx";
import { errorText, usePolled } from "./util.ts";

const SAMPLE_EVERY_MS = 5000;
const KEEP_MS = 10 * 60_000;

interface Point {
  atMs: number;
  ready: number;
  allocated: number;
}

/** Samples /metrics while signed in, keeping the last minutes per pool; views subscribe to its changes. */
export class MetricsHistory {
  readonly series = new Map<string, Point[]>();
  latest: Sample[] | undefined;
  error: string | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #listeners = new Set<() => void>();

  start(api: Api): void {
    this.stop();
    const tick = async () => {
      await this.sample(api);
      this.#timer = setTimeout(tick, SAMPLE_EVERY_MS);
    };
    void tick();
  }

  /** Reads /metrics now (the health view does on opening, so its figures are current). */
  async sample(api: Api): Promise<void> {
    try {
      const text = await api.metrics();
      this.error = text === undefined ? "This server runs without an engine: it has no metrics." : undefined;
      if (text !== undefined) this.#add(parseMetrics(text));
    } catch (err) {
      this.error = errorText(err);
    }
    for (const l of this.#listeners) l();
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  clear(): void {
    this.stop();
    this.series.clear();
    this.latest = undefined;
  }

  subscribe(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #add(samples: Sample[]): void {
    const now = Date.now();
    this.latest = samples;
    for (const [pool, g] of poolGauges(samples)) {
      const points = (this.series.get(pool) ?? []).filter((p) => now - p.atMs <= KEEP_MS);
      points.push({ atMs: now, ready: g.ready, allocated: g.allocated });
      this.series.set(pool, points);
    }
  }
}

const W = 360;
const H = 120;
const PAD = 24;

function Chart({ pool, points }: { pool: string; points: Point[] }) {
  const now = Date.now();
  const max = Math.max(1, ...points.flatMap((p) => [p.ready, p.allocated]));
  // The span drawn: what has been sampled, at least a minute, at most the minutes kept.
  const spanMs = Math.min(KEEP_MS, Math.max(60_000, now - (points[0]?.atMs ?? now)));
  const x = (atMs: number) => PAD + ((W - 2 * PAD) * (spanMs - (now - atMs))) / spanMs;
  const y = (v: number) => H - PAD - ((H - 2 * PAD) * v) / max;
  const line = (pick: (p: Point) => number) =>
    points.map((p) => `${x(p.atMs).toFixed(1)},${y(pick(p)).toFixed(1)}`).join(" ");
  const last = points.at(-1);
  const name = pool.split("/").slice(1).join("/");
  return (
    <figure class="chart">
      <figcaption>{name}</figcaption>
      <svg
        viewBox={`0 0 ${W} ${H}`}
        role="img"
        aria-label={`${name}: ${last?.ready ?? 0} ready and ${last?.allocated ?? 0} allocated sessions now, over the last ${Math.round(spanMs / 60_000)} minutes`}
      >
        <line class="axis" x1={PAD} y1={H - PAD} x2={W - PAD} y2={H - PAD} />
        <line class="axis" x1={PAD} y1={PAD} x2={PAD} y2={H - PAD} />
        <text x={PAD - 4} y={PAD + 4} class="tick" text-anchor="end">
          {max}
        </text>
        <text x={PAD - 4} y={H - PAD + 4} class="tick" text-anchor="end">
          0
        </text>
        <text x={PAD} y={H - 6} class="tick">
          −{Math.round(spanMs / 60_000)} min
        </text>
        <text x={W - PAD} y={H - 6} class="tick" text-anchor="end">
          now
        </text>
        <polyline class="ready" points={line((p) => p.ready)} />
        <polyline class="allocated" points={line((p) => p.allocated)} />
      </svg>
      <p class="legend">
        <span class="key ready">ready {last?.ready ?? 0}</span>{" "}
        <span class="key allocated">allocated {last?.allocated ?? 0}</span>
      </p>
    </figure>
  );
}

/** A figure of the health view: its name, the value (a `<strong>`), a note below it. */
function Card(props: { name: string; heading?: string; note: string; children: ComponentChildren }) {
  return (
    <section class="card" aria-label={props.name}>
      <span class="hint">{props.heading ?? props.name}</span>
      {props.children}
      <span class="hint">{props.note}</span>
    </section>
  );
}

/** The p50 / p90 / p99 of one of the server's latency histograms, since it started. */
function LatencyCard({ name, samples, metric }: { name: string; samples: Sample[]; metric: string }) {
  return (
    <Card name={`${name} latency`} heading={`${name} p50 / p90 / p99`} note="since the server started">
      <strong>{[0.5, 0.9, 0.99].map((q) => formatSeconds(quantile(samples, metric, q))).join(" / ")}</strong>
    </Card>
  );
}

function sandboxRuntime(health: Record<string, unknown> | undefined): string {
  return health?.["sandboxRuntime"] === "runsc" ? "gVisor (runsc)" : String(health?.["sandboxRuntime"] ?? "");
}

export function HealthView({ api, history }: { api: Api; history: MetricsHistory }) {
  const [health, setHealth] = useState<Record<string, unknown>>();
  const [, setVersion] = useState(0);
  useEffect(() => history.subscribe(() => setVersion((v) => v + 1)), [history]);
  const { error: healthError } = usePolled(
    async () => {
      const [h] = await Promise.all([api.health(), history.sample(api)]);
      setHealth(h);
    },
    SAMPLE_EVERY_MS,
    [api, history],
  );

  const s = history.latest ?? [];
  const hits = total(s, "sessionpool_session_claims_total", { result: "hit" });
  const claims = total(s, "sessionpool_session_claims_total");
  const engineUp = health?.["engine"] === "up";
  return (
    <section aria-labelledby="health-title">
      <h1 id="health-title">Health</h1>
      <ErrorBanner error={healthError} />
      <ErrorBanner error={history.error} />
      <div class="cards">
        <Card name="Engine" note={sandboxRuntime(health)}>
          <strong class={engineUp ? "up" : "down"}>
            {health === undefined ? "–" : engineUp ? "up" : "down"}
          </strong>
        </Card>
        <Card name="Claim hit rate" note={`${hits} warm of ${claims} new identifiers`}>
          <strong>{claims === 0 ? "–" : `${Math.round((100 * hits) / claims)} %`}</strong>
        </Card>
        <LatencyCard name="Allocation" samples={s} metric="sessionpool_allocation_seconds" />
        <LatencyCard name="Execution" samples={s} metric="sessionpool_execution_seconds" />
      </div>
      <h2>Ready and allocated sessions, last 10 minutes</h2>
      {history.series.size === 0 ? (
        <p class="hint">No pool has reported yet.</p>
      ) : (
        <div class="charts">
          {[...history.series.entries()].map(([pool, points]) => (
            <Chart key={pool} pool={pool} points={points} />
          ))}
        </div>
      )}
    </section>
  );
}
