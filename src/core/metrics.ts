// Prometheus metrics: pool gauges named after Azure's PoolReadyPodCount / PoolExecutingPodCount /
// PoolPendingPodCount, claim hits and misses, latency histograms. Labels are bounded: pool and result only,
// never an identifier or session id.
import { Counter, Gauge, Histogram, Registry } from "prom-client";

const LATENCY_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 220,
];

export class Metrics {
  readonly registry = new Registry();
  readonly readySessions: Gauge<"pool">;
  readonly allocatedSessions: Gauge<"pool">;
  readonly pendingSessions: Gauge<"pool">;
  readonly claims: Counter<"pool" | "result">;
  readonly sessionsEnded: Counter<"pool" | "reason">;
  readonly sandboxFailures: Counter<"pool" | "reason">;
  readonly allocationSeconds: Histogram<"pool" | "result">;
  readonly executionSeconds: Histogram<"pool" | "status">;
  readonly engineUp: Gauge;
  readonly sandboxRuntime: Gauge;
  #uploadsHeld: () => number = () => 0;

  /** Where the upload gauge reads from, at each scrape. */
  observeUploads(held: () => number): void {
    this.#uploadsHeld = held;
  }

  constructor() {
    const registers = [this.registry];
    this.readySessions = new Gauge({
      name: "sessionpool_pool_ready_sessions",
      help: "Warm sessions ready to be claimed (Azure: PoolReadyPodCount).",
      labelNames: ["pool"],
      registers,
    });
    this.allocatedSessions = new Gauge({
      name: "sessionpool_pool_allocated_sessions",
      help: "Sessions allocated to an identifier (Azure: PoolExecutingPodCount).",
      labelNames: ["pool"],
      registers,
    });
    this.pendingSessions = new Gauge({
      name: "sessionpool_pool_pending_sessions",
      help: "Sessions being created (Azure: PoolPendingPodCount).",
      labelNames: ["pool"],
      registers,
    });
    this.claims = new Counter({
      name: "sessionpool_session_claims_total",
      help: "New identifiers served: result=hit (warm sandbox claimed), miss (cold start), limit (429).",
      labelNames: ["pool", "result"],
      registers,
    });
    this.sessionsEnded = new Counter({
      name: "sessionpool_sessions_ended_total",
      help: "Sessions ended, by reason (cooldown, stopped, deleted, died, max-alive).",
      labelNames: ["pool", "reason"],
      registers,
    });
    this.sandboxFailures = new Counter({
      name: "sessionpool_sandbox_failures_total",
      help: "Sandboxes that failed to start or died unexpectedly.",
      labelNames: ["pool", "reason"],
      registers,
    });
    this.allocationSeconds = new Histogram({
      name: "sessionpool_allocation_seconds",
      help: "Time to hand a session to a new identifier.",
      labelNames: ["pool", "result"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.sandboxRuntime = new Gauge({
      name: "sessionpool_sandbox_runtime",
      help: "1 for the runtime sandboxes run under (runsc is gVisor), once the engine has answered.",
      labelNames: ["runtime"],
      registers,
    });
    const held = () => this.#uploadsHeld();
    new Gauge({
      name: "sessionpool_upload_buffered_bytes",
      help: "Bytes of uploads in flight the server holds in memory (all uploads together are bounded).",
      registers,
      collect() {
        this.set(held());
      },
    });
    this.engineUp = new Gauge({
      name: "sessionpool_engine_up",
      help: "1 when the container engine answered the last check, 0 while it does not.",
      registers,
    });
    this.executionSeconds = new Histogram({
      name: "sessionpool_execution_seconds",
      help: "Code execution time inside sessions.",
      labelNames: ["pool", "status"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
  }
}
