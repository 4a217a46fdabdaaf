// What the load test's clients saw: per kind of request, every latency, the count of each status, and how each
// answer was judged (ok, 429 at the limit, unexpected, 5xx, past its deadline, transport error), plus a few
// samples of each failure and a per-second series.
import type { TimedReply } from "./bench-client.ts";
import { type Summary, summarize } from "./stats.ts";

export const OP_KINDS = [
  "create",
  "execute",
  "upload",
  "download",
  "listFiles",
  "deleteFile",
  "listSessions",
  "endSession",
] as const;
export type OpKind = (typeof OP_KINDS)[number];

/**
 * limited = a documented 429 (a pool at maxConcurrentSessions, a session's full execution queue): not a failure;
 * hung = the request's deadline passed.
 */
export const OUTCOMES = ["ok", "limited", "unexpected", "server-error", "hung", "transport"] as const;
export type Outcome = (typeof OUTCOMES)[number];

export interface OpSummary {
  kind: OpKind;
  requests: number;
  outcomes: Record<Outcome, number>;
  /** HTTP status (or "hung" / "transport") -> count. */
  statuses: Record<string, number>;
  /** Client wall time, request sent to body read, of the ok answers of this kind. */
  latency: Summary;
  /** The slowest request of this kind whatever its outcome (a hung one counts its deadline). */
  slowestMs: number;
}

export interface FailureSample {
  kind: OpKind;
  outcome: Outcome;
  atS: number;
  detail: string;
}

export interface SecondSample {
  second: number;
  requests: number;
  /** Answers that are failures (neither ok nor a 429). */
  failures: number;
}

const SAMPLES_PER_OUTCOME = 10;

export class LoadRecorder {
  readonly #t0 = performance.now();
  readonly #latencies = new Map<OpKind, number[]>();
  readonly #slowest = new Map<OpKind, number>();
  readonly #statuses = new Map<OpKind, Map<string, number>>();
  readonly #outcomes = new Map<OpKind, Record<Outcome, number>>();
  readonly #samples: FailureSample[] = [];
  readonly #seconds: SecondSample[] = [];
  #inFlight = 0;
  #maxInFlight = 0;

  /** A request starts; call the returned function when it ends. */
  begin(): () => void {
    this.#inFlight++;
    this.#maxInFlight = Math.max(this.#maxInFlight, this.#inFlight);
    let ended = false;
    return () => {
      if (!ended) this.#inFlight--;
      ended = true;
    };
  }

  answered(kind: OpKind, reply: TimedReply, outcome: Outcome, detail?: string): void {
    this.#count(kind, String(reply.status), outcome, reply.ms, detail);
  }

  failed(kind: OpKind, outcome: "hung" | "transport", ms: number, detail: string): void {
    this.#count(kind, outcome, outcome, ms, detail);
  }

  get maxInFlight(): number {
    return this.#maxInFlight;
  }

  get samples(): FailureSample[] {
    return [...this.#samples];
  }

  get seconds(): SecondSample[] {
    return this.#seconds.filter((s) => s !== undefined);
  }

  summaries(): OpSummary[] {
    return OP_KINDS.map((kind) => {
      const outcomes = this.#outcomes.get(kind) ?? emptyOutcomes();
      return {
        kind,
        requests: Object.values(outcomes).reduce((a, b) => a + b, 0),
        outcomes,
        statuses: Object.fromEntries([...(this.#statuses.get(kind) ?? new Map())].sort()),
        latency: summarize(this.#latencies.get(kind) ?? []),
        slowestMs: this.#slowest.get(kind) ?? Number.NaN,
      };
    });
  }

  #count(kind: OpKind, status: string, outcome: Outcome, ms: number, detail?: string): void {
    if (outcome === "ok") getOrSet(this.#latencies, kind, () => []).push(ms);
    this.#slowest.set(kind, Math.max(ms, this.#slowest.get(kind) ?? 0));
    const statuses = getOrSet(this.#statuses, kind, () => new Map<string, number>());
    statuses.set(status, (statuses.get(status) ?? 0) + 1);
    const outcomes = getOrSet(this.#outcomes, kind, emptyOutcomes);
    outcomes[outcome]++;
    const atS = (performance.now() - this.#t0) / 1000;
    const second = Math.floor(atS);
    this.#seconds[second] ??= { second, requests: 0, failures: 0 };
    this.#seconds[second].requests++;
    const failure = outcome !== "ok" && outcome !== "limited";
    if (failure) this.#seconds[second].failures++;
    if (failure && this.#samples.filter((s) => s.outcome === outcome).length < SAMPLES_PER_OUTCOME) {
      this.#samples.push({ kind, outcome, atS: Math.round(atS * 10) / 10, detail: detail ?? "" });
    }
  }
}

function getOrSet<K, V>(map: Map<K, V>, key: K, make: () => V): V {
  let v = map.get(key);
  if (v === undefined) {
    v = make();
    map.set(key, v);
  }
  return v;
}

function emptyOutcomes(): Record<Outcome, number> {
  return Object.fromEntries(OUTCOMES.map((o) => [o, 0])) as Record<Outcome, number>;
}
