// The line of executions waiting for a session: one runs at a time per session (the interpreter runs them in
// order anyway), and what waits is held in the server's memory, so it is bounded per session, per pool and in all.
import { ExecutionQueueFullError, ServerBusyError } from "../errors.ts";

/**
 * How much may wait behind a session's running execution. An execution waits from the moment it is accepted until
 * it is handed to the session's agent; it holds its code all that time (an asynchronous one after its 202 too).
 */
export interface ExecutionQueueLimits {
  /** Executions waiting for one session. */
  maxWaitingExecutionsPerSession: number;
  /** Bytes of code (UTF-8) waiting for one session. */
  maxWaitingBytesPerSession: number;
  /** Executions waiting for any of a pool's sessions. */
  maxWaitingExecutionsPerPool: number;
  /** Bytes of code waiting for any of a pool's sessions. */
  maxWaitingBytesPerPool: number;
  /** Bytes of code waiting on the whole server, all pools together: past it the server is busy (503). */
  maxWaitingBytesTotal: number;
}

const MiB = 1024 * 1024;

/**
 * A request body is at most 4 MiB, so 16 full ones fill a session's share; a pool's sessions together may hold
 * 256 MiB, and the server 512 MiB, which is what a handful of pools filling their queues at once may take.
 */
export const DEFAULT_EXECUTION_QUEUE_LIMITS: Readonly<ExecutionQueueLimits> = Object.freeze({
  maxWaitingExecutionsPerSession: 16,
  maxWaitingBytesPerSession: 64 * MiB,
  maxWaitingExecutionsPerPool: 256,
  maxWaitingBytesPerPool: 256 * MiB,
  maxWaitingBytesTotal: 512 * MiB,
});

/** Executions finish within their timeout (220 s at most) but usually in well under a second: retry soon. */
const QUEUE_FULL_RETRY_AFTER_SECONDS = 2;
const SERVER_BUSY_RETRY_AFTER_SECONDS = 5;

interface Tally {
  count: number;
  bytes: number;
}

interface Lane extends Tally {
  poolKey: string;
  /** Whose turn comes next, in arrival order; each entry starts its execution and says how many bytes it held. */
  waiting: { bytes: number; go: () => void }[];
}

/** Who may use a session's interpreter now, who waits, and how much waits; keyed by the session's sandbox. */
export class ExecutionQueue<S extends object> {
  readonly #limits: ExecutionQueueLimits;
  /** A lane exists while its session has an execution running; it goes when the last one ends. */
  readonly #lanes = new Map<S, Lane>();
  readonly #pools = new Map<string, Tally>();
  #totalBytes = 0;

  constructor(limits: Partial<ExecutionQueueLimits> = {}) {
    const merged = { ...DEFAULT_EXECUTION_QUEUE_LIMITS, ...limits };
    for (const [name, value] of Object.entries(merged)) {
      if (!Number.isSafeInteger(value) || value < 0) {
        throw new RangeError(`${name} must be a whole number of at least 0 (got ${String(value)})`);
      }
    }
    this.#limits = merged;
  }

  /**
   * Claims the session for one execution holding `bytes` of code. Returns undefined when it may run at once, or a
   * promise that resolves when its turn comes; throws, holding nothing, when that would pass a limit. Every claim
   * must be followed by exactly one `leave(session)` once the execution has ended.
   */
  enter(session: S, poolKey: string, identifier: string, bytes: number): Promise<void> | undefined {
    const lane = this.#lanes.get(session);
    if (lane === undefined) {
      this.#lanes.set(session, { poolKey, count: 0, bytes: 0, waiting: [] });
      return undefined;
    }
    this.#admit(lane, identifier, bytes);
    const pool = this.#pools.get(poolKey) ?? { count: 0, bytes: 0 };
    this.#pools.set(poolKey, pool);
    lane.count++;
    lane.bytes += bytes;
    pool.count++;
    pool.bytes += bytes;
    this.#totalBytes += bytes;
    return new Promise<void>((resolve) => lane.waiting.push({ bytes, go: resolve }));
  }

  /** The session's execution ended: the next one waiting starts (and no longer counts as waiting). */
  leave(session: S): void {
    const lane = this.#lanes.get(session);
    if (lane === undefined) return;
    const next = lane.waiting.shift();
    if (next === undefined) {
      this.#lanes.delete(session);
      return;
    }
    lane.count--;
    lane.bytes -= next.bytes;
    const pool = this.#pools.get(lane.poolKey);
    if (pool !== undefined) {
      pool.count--;
      pool.bytes -= next.bytes;
      if (pool.count === 0) this.#pools.delete(lane.poolKey);
    }
    this.#totalBytes -= next.bytes;
    next.go();
  }

  /** What waits now, in all (for tests and metrics). */
  get waiting(): { executions: number; bytes: number } {
    let executions = 0;
    for (const pool of this.#pools.values()) executions += pool.count;
    return { executions, bytes: this.#totalBytes };
  }

  #admit(lane: Lane, identifier: string, bytes: number): void {
    const l = this.#limits;
    const pool = this.#pools.get(lane.poolKey) ?? { count: 0, bytes: 0 };
    const retry = "retry once the ones ahead have finished (GET /executions/{id} shows their status)";
    if (lane.count + 1 > l.maxWaitingExecutionsPerSession) {
      throw new ExecutionQueueFullError(
        `Session '${identifier}' already has ${lane.count} executions waiting behind the one running, the most one session may have (maxWaitingExecutionsPerSession ${l.maxWaitingExecutionsPerSession}); ${retry}.`,
        QUEUE_FULL_RETRY_AFTER_SECONDS,
      );
    }
    if (lane.bytes + bytes > l.maxWaitingBytesPerSession) {
      throw new ExecutionQueueFullError(
        `The executions waiting for session '${identifier}' would hold ${lane.bytes + bytes} bytes of code, over maxWaitingBytesPerSession (${l.maxWaitingBytesPerSession} bytes); ${retry}.`,
        QUEUE_FULL_RETRY_AFTER_SECONDS,
      );
    }
    if (pool.count + 1 > l.maxWaitingExecutionsPerPool) {
      throw new ExecutionQueueFullError(
        `The session pool already has ${pool.count} executions waiting across its sessions, the most one pool may have (maxWaitingExecutionsPerPool ${l.maxWaitingExecutionsPerPool}); ${retry}.`,
        QUEUE_FULL_RETRY_AFTER_SECONDS,
      );
    }
    if (pool.bytes + bytes > l.maxWaitingBytesPerPool) {
      throw new ExecutionQueueFullError(
        `The executions waiting in this session pool would hold ${pool.bytes + bytes} bytes of code, over maxWaitingBytesPerPool (${l.maxWaitingBytesPerPool} bytes); ${retry}.`,
        QUEUE_FULL_RETRY_AFTER_SECONDS,
      );
    }
    if (this.#totalBytes + bytes > l.maxWaitingBytesTotal) {
      throw new ServerBusyError(
        `Executions waiting on this server already hold ${this.#totalBytes} bytes of code; one more of ${bytes} bytes would pass the server's maxWaitingBytesTotal (${l.maxWaitingBytesTotal} bytes). Retry in a few seconds.`,
        SERVER_BUSY_RETRY_AFTER_SECONDS,
      );
    }
  }
}
