// Claims: the session for an identifier, allocated on first use (a warm sandbox when there is one, else a cold
// start, 429 at the pool's limit), single-flight per identifier; the idle clock; ending a session on request.
import { isSessionPoolError } from "../../errors.ts";
import { storageFailure } from "../../store/storage-errors.ts";
import { PoolNotReadyError, SessionLimitError, SessionStartError } from "../errors.ts";
import { type PoolDoc, poolDocOf } from "../pools/pool-doc.ts";
import type { SandboxFactory } from "./sandbox-factory.ts";
import type { EndSession, LiveSandbox, SessionContext } from "./session-context.ts";
import { sessionExpiry } from "./session-lifecycle.ts";
import type { WarmPoolReconciler } from "./warm-pool-reconciler.ts";

export interface Acquired {
  live: LiveSandbox;
  /** The session was allocated by this request (warm claim or cold start). */
  fresh: boolean;
  /** A previous session of this identifier ended unexpectedly (its sandbox died). */
  replaced: boolean;
  allocationMs: number;
}

/**
 * The idle clock is written to the store at most this often per session: every write is a durable commit, and
 * after a restart a clock up to this much behind only ends an idle session that much earlier.
 */
const TOUCH_PERSIST_MS = 5_000;

export class SessionAllocator {
  readonly #ctx: SessionContext;
  readonly #factory: SandboxFactory;
  readonly #reconciler: WarmPoolReconciler;
  readonly #end: EndSession;
  readonly #inflight = new Map<string, Promise<Acquired>>();

  constructor(ctx: SessionContext, factory: SandboxFactory, reconciler: WarmPoolReconciler, end: EndSession) {
    this.#ctx = ctx;
    this.#factory = factory;
    this.#reconciler = reconciler;
    this.#end = end;
  }

  /** Allocations under way (shutdown waits for them). */
  get pending(): Promise<Acquired>[] {
    return [...this.#inflight.values()];
  }

  /** The session for `identifier`, allocating one on first use. */
  async acquire(poolKey: string, identifier: string, signal?: AbortSignal): Promise<Acquired> {
    this.#ctx.requireAdopted();
    const st = this.#ctx.state(poolKey);
    const existing = st.allocated.get(identifier);
    if (existing) {
      this.touch(existing);
      return { live: existing, fresh: false, replaced: false, allocationMs: 0 };
    }
    const flightKey = `${poolKey}\n${identifier}`;
    let flight = this.#inflight.get(flightKey);
    if (!flight) {
      flight = this.#allocate(poolKey, identifier, signal).finally(() => this.#inflight.delete(flightKey));
      this.#inflight.set(flightKey, flight);
    }
    const acquired = await flight;
    // Concurrent first requests share one allocation; only one of them is "fresh" for metrics' sake.
    return acquired;
  }

  /** The allocated session for `identifier`, or undefined; never allocates. */
  find(poolKey: string, identifier: string): LiveSandbox | undefined {
    this.#ctx.requireAdopted();
    return this.#ctx.pools.get(poolKey)?.allocated.get(identifier);
  }

  list(poolKey: string): LiveSandbox[] {
    this.#ctx.requireAdopted();
    return [...(this.#ctx.pools.get(poolKey)?.allocated.values() ?? [])];
  }

  /**
   * A request that stays open (a proxied stream, a WebSocket) begins: a Timed session is not idle while any is.
   * Pair with endRequest.
   */
  beginRequest(live: LiveSandbox): void {
    live.inFlight++;
  }

  /** The request ended: one fewer in flight, and the idle clock restarts from now if the session is still current. */
  endRequest(live: LiveSandbox): void {
    live.inFlight = Math.max(0, live.inFlight - 1);
    const { identifier, poolKey } = live.rec;
    if (identifier !== undefined && this.#ctx.pools.get(poolKey)?.allocated.get(identifier) === live)
      this.touch(live);
  }

  /** Every request resets the idle clock (Timed pools). */
  touch(live: LiveSandbox): void {
    const pool = this.#ctx.d.store.getPool(live.rec.poolKey);
    if (!pool) return;
    const now = this.#ctx.d.now();
    live.rec.lastAccessedAt = now.toISOString();
    live.rec.expiresAt = sessionExpiry(poolDocOf(pool), {
      allocatedAt: new Date(live.rec.allocatedAt ?? live.rec.createdAt),
      lastAccessedAt: now,
    }).toISOString();
    // The idle clock lives in memory (the reaper reads it there); the store only carries it across a restart,
    // so a data dir that cannot be written (disk full) costs that, not the request.
    if (now.getTime() - live.persistedAccessMs < TOUCH_PERSIST_MS) return;
    live.persistedAccessMs = now.getTime();
    try {
      this.#ctx.d.store.putSession(live.rec);
    } catch (err) {
      this.#ctx.d.logger.warn({ session: live.rec.id, err }, "could not record a session's last access");
    }
  }

  /** Ends the identifier's session now; false when there was none. */
  async stop(poolKey: string, identifier: string, reason = "stopped"): Promise<boolean> {
    this.#ctx.requireAdopted();
    const live = this.#ctx.pools.get(poolKey)?.allocated.get(identifier);
    if (!live) {
      const flight = this.#inflight.get(`${poolKey}\n${identifier}`);
      if (!flight) return false;
      const acquired = await flight.catch(() => undefined);
      if (!acquired) return false;
      await this.#end(acquired.live, reason);
      return true;
    }
    await this.#end(live, reason);
    return true;
  }

  async #allocate(poolKey: string, identifier: string, signal?: AbortSignal): Promise<Acquired> {
    const started = performance.now();
    const { pool, doc } = this.#ctx.poolDoc(poolKey);
    const st = this.#ctx.state(poolKey);
    if (doc.properties.provisioningState === "Failed") {
      throw new PoolNotReadyError(
        pool.name,
        doc.properties.provisioningError?.message ?? "its provisioning failed.",
      );
    }
    // Said on the first session that is really handed out (an attempt that fails keeps it for the next).
    const replaced = st.replaced.has(identifier);
    const metricsPool = poolKey;
    // The limit holds for warm claims too: a refill that finished after cold starts filled the pool is surplus.
    const max = doc.properties.scaleConfiguration.maxConcurrentSessions;
    if (st.allocated.size + st.coldPending >= max) {
      this.#ctx.d.metrics.claims.inc({ pool: metricsPool, result: "limit" });
      throw new SessionLimitError(pool.name, max, 5);
    }
    // Warm claim: no engine call on this path.
    const index = st.ready.findIndex((m) => st.template !== undefined && m.templateHash === st.template.hash);
    if (index >= 0) {
      const live = st.ready.splice(index, 1)[0]!;
      const warm = { ...live.rec };
      try {
        this.#assign(live, identifier, doc);
      } catch (err) {
        // Not recorded as allocated: it stays warm, untouched, rather than be handed out unrecorded (a restart
        // would offer a sandbox someone used to the next identifier).
        Object.assign(live.rec, warm);
        st.ready.splice(index, 0, live);
        throw err;
      }
      st.allocated.set(identifier, live);
      st.replaced.delete(identifier);
      const ms = performance.now() - started;
      this.#ctx.d.metrics.claims.inc({ pool: metricsPool, result: "hit" });
      this.#ctx.d.metrics.allocationSeconds.observe({ pool: metricsPool, result: "hit" }, ms / 1000);
      this.#ctx.publish(st);
      this.#reconciler.refillSoon(st);
      return { live, fresh: true, replaced, allocationMs: ms };
    }
    // Cold start. Make room first if warm sandboxes hold the capacity (e.g. they run an outdated template).
    st.coldPending++;
    this.#ctx.publish(st);
    try {
      while (st.allocated.size + st.coldPending + st.ready.length > max && st.ready.length > 0) {
        await this.#end(st.ready.shift()!, "replaced");
      }
      const template = st.template ?? (await this.#factory.resolveTemplate(doc, pool, signal));
      st.template = template;
      const live = await this.#factory.create(pool, template, signal);
      try {
        this.#assign(live, identifier, doc);
      } catch (err) {
        await this.#factory.remove(live);
        throw err;
      }
      st.allocated.set(identifier, live);
      st.replaced.delete(identifier);
      const ms = performance.now() - started;
      this.#ctx.d.metrics.claims.inc({ pool: metricsPool, result: "miss" });
      this.#ctx.d.metrics.allocationSeconds.observe({ pool: metricsPool, result: "miss" }, ms / 1000);
      return { live, fresh: true, replaced, allocationMs: ms };
    } catch (err) {
      if (isSessionPoolError(err)) throw err;
      const storage = storageFailure(err);
      if (storage) throw storage;
      throw new SessionStartError(`A session could not be started: ${(err as Error).message}`, err);
    } finally {
      st.coldPending--;
      this.#ctx.publish(st);
    }
  }

  #assign(live: LiveSandbox, identifier: string, doc: PoolDoc): void {
    const now = this.#ctx.d.now();
    live.rec.identifier = identifier;
    live.rec.state = "allocated";
    live.rec.allocatedAt = now.toISOString();
    live.rec.lastAccessedAt = now.toISOString();
    live.rec.expiresAt = sessionExpiry(doc, { allocatedAt: now, lastAccessedAt: now }).toISOString();
    this.#ctx.d.store.putSession(live.rec);
    live.persistedAccessMs = now.getTime();
  }
}
