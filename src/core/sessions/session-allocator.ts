// Claims: the session for an identifier, allocated on first use (a warm sandbox when there is one, else a cold
// start, 429 at the pool's limit), single-flight per identifier; the idle clock; ending a session on request.
import { isSessionPoolError } from "../../errors.ts";
import { storageFailure } from "../../store/storage-errors.ts";
import {
  PoolNotReadyError,
  SessionEnvironmentConflictError,
  SessionLimitError,
  SessionStartError,
  ValidationError,
} from "../errors.ts";
import type { PoolDoc } from "../pools/pool-doc.ts";
import type { SandboxFactory } from "./sandbox-factory.ts";
import { agentOf, type EndSession, type LiveSandbox, type SessionContext } from "./session-context.ts";
import {
  checkResolvedSize,
  NO_ENVIRONMENT,
  type RequestedEnvironment,
  resolveEnvironment,
  serializeEnvironment,
} from "./session-environment.ts";
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
    if (existing) return this.#reuse(existing);
    // Concurrent first requests share one allocation, and its answer.
    const key = flightKey(poolKey, identifier);
    return this.#inflight.get(key) ?? this.#fly(key, () => this.#allocate(poolKey, identifier, signal));
  }

  /**
   * `PUT /session`: the session for `identifier`, claimed now with `env` applied before anyone can use it, or the
   * existing one when it runs with the same variables (`fresh` says which); 409 when it runs with others.
   */
  async claim(
    poolKey: string,
    identifier: string,
    env: RequestedEnvironment,
    signal?: AbortSignal,
  ): Promise<Acquired> {
    this.#ctx.requireAdopted();
    const key = flightKey(poolKey, identifier);
    // Whoever is allocating this identifier finishes first; then it either exists or this request allocates it.
    for (let flight = this.#inflight.get(key); flight; flight = this.#inflight.get(key))
      await flight.catch(() => undefined);
    const existing = this.#ctx.state(poolKey).allocated.get(identifier);
    if (existing) {
      if ((existing.environment ?? NO_ENVIRONMENT).digest !== env.applied.digest)
        throw new SessionEnvironmentConflictError(identifier);
      return this.#reuse(existing);
    }
    return this.#fly(key, () => this.#allocate(poolKey, identifier, signal, env));
  }

  /** An existing session handed to another request: its idle clock restarts. */
  #reuse(live: LiveSandbox): Acquired {
    this.touch(live);
    return { live, fresh: false, replaced: false, allocationMs: 0 };
  }

  /** Runs an allocation that later requests for the same identifier join until it settles. */
  #fly(key: string, allocate: () => Promise<Acquired>): Promise<Acquired> {
    const flight = allocate().finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, flight);
    return flight;
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
    const now = this.#ctx.d.now();
    // At once, from the pool's document as last read: the reaper must never see the clock before this request.
    const doc = this.#ctx.pools.get(live.rec.poolKey)?.doc;
    if (doc) {
      void this.#touch(live, doc, now);
      return;
    }
    void this.#ctx.docOf(live.rec.poolKey).then(
      (read) => (read ? this.#touch(live, read, now) : undefined),
      (err: unknown) =>
        this.#ctx.d.logger.warn(
          { session: live.rec.id, err },
          "could not read a session's pool to reset its idle clock",
        ),
    );
  }

  async #touch(live: LiveSandbox, doc: PoolDoc, now: Date): Promise<void> {
    live.rec.lastAccessedAt = now.toISOString();
    live.rec.expiresAt = sessionExpiry(doc, {
      allocatedAt: new Date(live.rec.allocatedAt ?? live.rec.createdAt),
      lastAccessedAt: now,
    }).toISOString();
    // The idle clock lives in memory (the reaper reads it there); the store only carries it across a restart,
    // so a data dir that cannot be written (disk full) costs that, not the request.
    if (now.getTime() - live.persistedAccessMs < TOUCH_PERSIST_MS) return;
    live.persistedAccessMs = now.getTime();
    try {
      await this.#ctx.d.store.putSession(live.rec);
    } catch (err) {
      this.#ctx.d.logger.warn({ session: live.rec.id, err }, "could not record a session's last access");
    }
  }

  /** Ends the identifier's session now; false when there was none. */
  async stop(poolKey: string, identifier: string, reason = "stopped"): Promise<boolean> {
    this.#ctx.requireAdopted();
    const live = this.#ctx.pools.get(poolKey)?.allocated.get(identifier);
    if (!live) {
      const flight = this.#inflight.get(flightKey(poolKey, identifier));
      if (!flight) return false;
      const acquired = await flight.catch(() => undefined);
      if (!acquired) return false;
      await this.#end(acquired.live, reason);
      return true;
    }
    await this.#end(live, reason);
    return true;
  }

  async #allocate(
    poolKey: string,
    identifier: string,
    signal?: AbortSignal,
    env?: RequestedEnvironment,
  ): Promise<Acquired> {
    const started = performance.now();
    const { pool, doc } = await this.#ctx.poolDoc(poolKey);
    const personalised = env !== undefined && env.entries.length > 0;
    // Read (a secret's value from the pool) and checked before any sandbox is taken for it.
    const values = personalised ? resolveEnvironment(env.entries, await this.#ctx.d.secrets(poolKey)) : {};
    checkResolvedSize(values);
    if (personalised && doc.properties.containerType === "CustomContainer")
      throw new ValidationError(
        "InvalidEnvironmentVariable",
        "A custom container session takes its environment from the pool's template; environment variables at claim time need a PythonLTS, NodeLTS or Shell pool.",
        "environmentVariables",
      );
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
    if (st.allocated.size + st.coldPending + this.#ctx.allocatedElsewhere(poolKey) >= max) {
      this.#ctx.d.metrics.claims.inc({ pool: metricsPool, result: "limit" });
      throw new SessionLimitError(pool.name, max, 5);
    }
    // Warm claim: no engine call on this path.
    const index = st.ready.findIndex((m) => st.template !== undefined && m.templateHash === st.template.hash);
    if (index >= 0) {
      const live = st.ready.splice(index, 1)[0]!;
      const warm = { ...live.rec };
      const sent = personalised ? this.#personalise(live, env, values) : undefined;
      // Counted against the limit while its record is written.
      st.coldPending++;
      try {
        await this.#assign(live, identifier, doc);
      } catch (err) {
        Object.assign(live.rec, warm);
        if (personalised) {
          await this.#factory.remove(live);
          this.#reconciler.refillSoon(st);
          throw err;
        }
        // Not recorded as allocated: it stays warm, untouched, rather than be handed out unrecorded (a restart
        // would offer a sandbox someone used to the next identifier).
        st.ready.splice(Math.min(index, st.ready.length), 0, live);
        throw err;
      } finally {
        st.coldPending--;
      }
      st.allocated.set(identifier, live);
      st.replaced.delete(identifier);
      if (sent) this.#endIfRefused(live, sent);
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
      const sent = personalised ? this.#personalise(live, env, values) : undefined;
      try {
        await this.#assign(live, identifier, doc);
      } catch (err) {
        await this.#factory.remove(live);
        throw err;
      }
      st.allocated.set(identifier, live);
      st.replaced.delete(identifier);
      if (sent) this.#endIfRefused(live, sent);
      const ms = performance.now() - started;
      this.#ctx.d.metrics.claims.inc({ pool: metricsPool, result: "miss" });
      this.#ctx.d.metrics.allocationSeconds.observe({ pool: metricsPool, result: "miss" }, ms / 1000);
      return { live, fresh: true, replaced, allocationMs: ms };
    } catch (err) {
      throw startError(err);
    } finally {
      st.coldPending--;
      this.#ctx.publish(st);
    }
  }

  /**
   * Sends the requested variables to the sandbox's agent (no engine call, no interpreter restart) and records them,
   * sealed, in the session record the claim then writes. The claim does not wait for the agent's answer: requests
   * on the agent's connection are taken in order, so whatever the session is asked next finds them set, and the
   * agent refuses nothing the server has checked. Should it fail all the same (the sandbox gone under it), the
   * session ends and its next request says it was replaced (#endIfRefused). Resolves with the agent's error, if any.
   */
  #personalise(
    live: LiveSandbox,
    env: RequestedEnvironment,
    values: Record<string, string>,
  ): Promise<unknown> {
    const sent = agentOf(live)
      .setEnvironment(values)
      .then(
        () => undefined,
        (err: unknown) => err ?? new Error("the agent refused the variables"),
      );
    live.environment = env.applied;
    live.rec.environment = this.#ctx.d.sealer.seal(serializeEnvironment(env.entries));
    return sent;
  }

  /**
   * Ends the session if its agent refused the variables. Only once the session is allocated: the refusal may
   * arrive while the claim's record is still being written, and ending it then would leave it allocated.
   */
  #endIfRefused(live: LiveSandbox, sent: Promise<unknown>): void {
    void sent.then((err) => {
      if (err === undefined) return;
      this.#ctx.d.logger.warn(
        { pool: live.rec.poolKey, session: live.rec.id, err },
        "a session's variables could not be set; ending it",
      );
      const { identifier, poolKey } = live.rec;
      if (identifier !== undefined) this.#ctx.pools.get(poolKey)?.replaced.add(identifier);
      void this.#end(live, "failed");
    });
  }

  async #assign(live: LiveSandbox, identifier: string, doc: PoolDoc): Promise<void> {
    const now = this.#ctx.d.now();
    live.rec.identifier = identifier;
    live.rec.state = "allocated";
    live.rec.allocatedAt = now.toISOString();
    live.rec.lastAccessedAt = now.toISOString();
    live.rec.expiresAt = sessionExpiry(doc, { allocatedAt: now, lastAccessedAt: now }).toISOString();
    // A custom container has no agent to say at adoption whether it was used: its claim is made durable.
    await this.#ctx.d.store.putSession(live.rec, { durable: live.kind === "custom" });
    live.persistedAccessMs = now.getTime();
  }
}

/** A failure to start a session, as the client sees it: coded errors as they are, storage failures typed. */
function startError(err: unknown): Error {
  if (isSessionPoolError(err)) return err;
  return (
    storageFailure(err) ??
    new SessionStartError(`A session could not be started: ${(err as Error).message}`, err)
  );
}

/** One allocation at a time per identifier of a pool: the key of its flight. */
function flightKey(poolKey: string, identifier: string): string {
  return `${poolKey}\n${identifier}`;
}
